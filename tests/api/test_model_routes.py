"""/api/models: create, read, list, change, deactivate; bad input is a 4xx problem naming the field."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import CreateModel


async def test_created_model_reads_back_with_one_identity(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model(apiKeyEnv="LLAMA_KEY", regions=["local", "edge"])
    uuid.UUID(model["id"])
    response = await client.get(f"/api/models/{model['id']}")
    assert response.status_code == 200 and response.json() == model
    assert model["apiKeyEnv"] == "LLAMA_KEY" and model["isActive"] is True


async def test_bedrock_model_takes_aws_regions(create_model: CreateModel) -> None:
    model = await create_model(
        provider="bedrock", apiModelId="anthropic.claude-3-haiku", baseUrl=None, regions=["us-east-1", "eu-west-1"]
    )
    assert model["provider"] == "bedrock" and model["baseUrl"] is None


async def test_patch_changes_fields_and_delete_deactivates(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    model = await create_model()
    response = await client.patch(f"/api/models/{model['id']}", json={"name": "renamed", "regions": ["a", "b"]})
    assert response.status_code == 200
    assert response.json()["name"] == "renamed" and response.json()["regions"] == ["a", "b"]
    response = await client.delete(f"/api/models/{model['id']}")
    assert response.status_code == 200 and response.json()["isActive"] is False
    assert (await client.get(f"/api/models/{model['id']}")).json()["isActive"] is False


async def test_list_pages_and_filters(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    active = await create_model()
    inactive = await create_model(isActive=False)
    response = await client.get("/api/models", params={"active": "true", "limit": "100"})
    assert response.status_code == 200
    ids = {m["id"] for m in response.json()["models"]}
    assert active["id"] in ids and inactive["id"] not in ids
    assert response.json()["pagination"]["limit"] == 100


async def test_idempotency_key_returns_the_first_model(client: httpx.AsyncClient) -> None:
    body = {"name": "idem", "provider": "openai", "apiModelId": "x", "baseUrl": "http://h:1/v1", "regions": ["l"]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/api/models", json=body, headers=key)
    second = await client.post("/api/models", json=body, headers=key)
    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    changed = await client.post("/api/models", json={**body, "name": "other"}, headers=key)
    assert changed.status_code == 422 and changed.json()["field"] == "Idempotency-Key"


VALID = {"name": "m", "provider": "openai", "apiModelId": "x", "baseUrl": "http://h:1/v1", "regions": ["local"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "baseUrl": None}, "baseUrl"),
        ({**VALID, "baseUrl": "http://h:1/api"}, "baseUrl"),
        ({**VALID, "baseUrl": "ftp://h/v1"}, "baseUrl"),
        ({**VALID, "provider": "bedrock", "regions": ["local"]}, "regions[0]"),
        ({**VALID, "provider": "groq"}, "provider"),
        ({**VALID, "regions": []}, "regions"),
        ({**VALID, "regions": ["a", "a"]}, "regions"),
        ({**VALID, "regions": ["has space"]}, "regions[0]"),
        ({**VALID, "regions": "local"}, "regions"),
        ({**VALID, "name": ""}, "name"),
        ({**VALID, "name": 5}, "name"),
        ({**VALID, "name": "nul\u0000inside"}, "name"),
        ({**VALID, "apiModelId": "tab\tinside"}, "apiModelId"),
        ({**VALID, "isActive": "yes"}, "isActive"),
        ({**VALID, "apiKeyEnv": "sk-secret value"}, "apiKeyEnv"),
        ({**VALID, "apiKey": "sk-123"}, "apiKey"),
        ({**VALID, "api_model_id": "snake"}, "api_model_id"),
        ({k: v for k, v in VALID.items() if k != "apiModelId"}, "apiModelId"),
    ],
)
async def test_invalid_model_bodies_name_the_field(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    response = await client.post("/api/models", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


async def test_patch_rejects_null_required_fields_and_cross_field_breakage(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    model = await create_model()
    response = await client.patch(f"/api/models/{model['id']}", json={"name": None})
    assert response.status_code == 400 and response.json()["field"] == "name"
    response = await client.patch(f"/api/models/{model['id']}", json={"provider": "bedrock"})
    assert response.status_code == 400 and response.json()["field"] == "regions[0]"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_model_ids_must_be_uuids_and_exist(client: httpx.AsyncClient, method: str) -> None:
    bad = await client.request(method, "/api/models/not-a-uuid", json={})
    assert bad.status_code == 400 and bad.json()["field"] == "modelId"
    missing = await client.request(method, f"/api/models/{uuid.uuid4()}", json={})
    assert missing.status_code == 404 and missing.json()["field"] == "modelId"


@pytest.mark.parametrize("name", ["DATABASE_URL", "API_TOKENS", "BULL_BOARD_PASSWORD", "REDIS_URL", "UNDECLARED"])
async def test_api_key_env_must_name_a_declared_credential(
    client: httpx.AsyncClient, create_model: CreateModel, name: str
) -> None:
    body = {
        "name": f"m-{uuid.uuid4().hex[:6]}",
        "provider": "openai",
        "apiModelId": "x",
        "baseUrl": "http://127.0.0.1:9/v1",
        "apiKeyEnv": name,
        "regions": ["local"],
    }
    response = await client.post("/api/models", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "apiKeyEnv" and "MODEL_CREDENTIALS" in response.json()["detail"]
    model = await create_model()
    response = await client.patch(f"/api/models/{model['id']}", json={"apiKeyEnv": name})
    assert response.status_code == 422 and response.json()["field"] == "apiKeyEnv"


async def test_a_model_with_a_credential_cannot_move_it_to_another_host(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    model = await create_model(apiKeyEnv="LLAMA_KEY", baseUrl="http://127.0.0.1:8080/v1")
    response = await client.patch(f"/api/models/{model['id']}", json={"baseUrl": "http://127.0.0.2:8080/v1"})
    assert response.status_code == 422 and response.json()["field"] == "baseUrl"
    assert "127.0.0.2" in response.json()["detail"]
    assert (await client.get(f"/api/models/{model['id']}")).json()["baseUrl"] == "http://127.0.0.1:8080/v1"
    keyless = await create_model(baseUrl="http://127.0.0.2:8080/v1")
    response = await client.patch(f"/api/models/{keyless['id']}", json={"apiKeyEnv": "LLAMA_KEY"})
    assert response.status_code == 422 and response.json()["field"] == "baseUrl"


@pytest.mark.parametrize("base_url", ["http://user:pw-7f3k@127.0.0.1:9/v1", "http://pw-7f3k@127.0.0.1:9/v1"])
async def test_a_base_url_with_a_password_is_refused_and_not_stored(
    client: httpx.AsyncClient, create_model: CreateModel, base_url: str
) -> None:
    body = {
        "name": f"m-{uuid.uuid4().hex[:6]}",
        "provider": "openai",
        "apiModelId": "x",
        "baseUrl": base_url,
        "regions": ["local"],
    }
    response = await client.post("/api/models", json=body)
    assert response.status_code == 400 and response.json()["field"] == "baseUrl"
    assert "pw-7f3k" not in response.text
    model = await create_model()
    response = await client.patch(f"/api/models/{model['id']}", json={"baseUrl": base_url})
    assert response.status_code == 400 and response.json()["field"] == "baseUrl"
    listed = await client.get("/api/models", params={"limit": 100})
    assert "pw-7f3k" not in listed.text


_CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
_DEFAULTS = {
    "tools": False,
    "structuredOutput": False,
    "contextWindow": None,
    "maxOutputTokens": None,
    "tokenAccounting": True,
}


async def test_capabilities_default_to_chat_only_and_round_trip_through_get_patch_and_list(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    plain = await create_model()
    assert plain["capabilities"] == _DEFAULTS
    declared = {"tools": True, "structuredOutput": _CITY_SCHEMA, "contextWindow": 8192, "maxOutputTokens": 1024}
    model = await create_model(capabilities=declared)
    assert model["capabilities"] == {**_DEFAULTS, **declared}
    assert (await client.get(f"/api/models/{model['id']}")).json()["capabilities"] == model["capabilities"]
    listed = (await client.get("/api/models", params={"limit": 100})).json()["models"]
    assert next(m for m in listed if m["id"] == model["id"])["capabilities"] == model["capabilities"]
    # PATCH replaces the whole object: what it does not name goes back to its default.
    patched = await client.patch(f"/api/models/{model['id']}", json={"capabilities": {"structuredOutput": True}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["capabilities"] == {**_DEFAULTS, "structuredOutput": True}
    renamed = await client.patch(f"/api/models/{model['id']}", json={"name": f"renamed-{uuid.uuid4().hex[:6]}"})
    assert renamed.json()["capabilities"] == {**_DEFAULTS, "structuredOutput": True}
    cleared = await client.patch(f"/api/models/{model['id']}", json={"capabilities": None})
    assert cleared.status_code == 200 and cleared.json()["capabilities"] == _DEFAULTS


async def test_declared_capabilities_are_stored_for_the_worker_to_read(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    from certq.certification.capabilities import Capabilities

    model = await create_model(capabilities={"tools": True, "tokenAccounting": False, "contextWindow": 4096})
    record = await store.get_model(model["id"])
    capabilities = Capabilities.from_json(record.capabilities)
    assert capabilities.declared() == ("tools", "contextWindow")
    assert not capabilities.token_accounting and capabilities.context_window == 4096


def _nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return {"structuredOutput": schema}


def _fan_out_schema(levels: int) -> dict[str, Any]:
    """Few nodes as written, 2**levels once each level's two $refs to the next are expanded."""
    defs: dict[str, Any] = {f"d{n}": {"anyOf": [{"$ref": f"#/$defs/d{n + 1}"}] * 2} for n in range(levels)}
    defs[f"d{levels}"] = {"type": "string"}
    return {"structuredOutput": {"type": "object", "$defs": defs, "$ref": "#/$defs/d0"}}


_BAD_CAPABILITIES: list[tuple[Any, str, str]] = [
    ("tools", "capabilities", "must be a JSON object"),
    ([True], "capabilities", "must be a JSON object"),
    ({"tools": "yes"}, "capabilities.tools", "true or false"),
    ({"tools": 1}, "capabilities.tools", "true or false"),
    ({"tokenAccounting": None}, "capabilities.tokenAccounting", "true or false"),
    ({"structuredOutput": "json"}, "capabilities.structuredOutput", "a JSON schema"),
    ({"structuredOutput": {"type": "array"}}, "capabilities.structuredOutput", '"type" must be "object"'),
    (
        {"structuredOutput": {"type": "object", "properties": {"a": {"type": "nope"}}}},
        "capabilities.structuredOutput",
        "not a valid JSON schema",
    ),
    (
        {"structuredOutput": {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}},
        "capabilities.structuredOutput",
        "not local",
    ),
    (
        {"structuredOutput": {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}},
        "capabilities.structuredOutput",
        '"pattern" is not accepted',
    ),
    (
        {"structuredOutput": {"type": "object", "patternProperties": {"^x": {"type": "string"}}}},
        "capabilities.structuredOutput",
        '"patternProperties" is not accepted',
    ),
    (_nested_schema(20), "capabilities.structuredOutput", "too large"),
    (
        {"structuredOutput": {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}},
        "capabilities.structuredOutput",
        '"uniqueItems" is not accepted',
    ),
    ({"structuredOutput": {"type": "object", "$ref": "#"}}, "capabilities.structuredOutput", "refers to itself"),
    (
        {"structuredOutput": {"type": "object", "$ref": "#/$defs/nowhere"}},
        "capabilities.structuredOutput",
        "to nothing in the schema",
    ),
    (_fan_out_schema(16), "capabilities.structuredOutput", "once its $refs are expanded"),
    ({"structuredOutput": {"type": "object", "$schema": []}}, "capabilities.structuredOutput", "must be a string"),
    ({"structuredOutput": {"type": "object", "$schema": {}}}, "capabilities.structuredOutput", "must be a string"),
    ({"structuredOutput": {"type": "object", "\u0000": 1}}, "capabilities.structuredOutput", "NUL characters"),
    (
        {"structuredOutput": {"type": "object", "enum": [{"k": n} for n in range(1500)]}},
        "capabilities.structuredOutput",
        "too large",
    ),
    ({"contextWindow": 100}, "capabilities.contextWindow", "from 256 to 2000000"),
    ({"contextWindow": 3_000_000}, "capabilities.contextWindow", "from 256 to 2000000"),
    ({"contextWindow": 4096.0}, "capabilities.contextWindow", "an integer"),
    ({"contextWindow": "4096"}, "capabilities.contextWindow", "an integer"),
    ({"contextWindow": True}, "capabilities.contextWindow", "an integer"),
    ({"maxOutputTokens": 0}, "capabilities.maxOutputTokens", "from 1 to 1000000"),
    ({"maxOutputTokens": 2_000_000}, "capabilities.maxOutputTokens", "from 1 to 1000000"),
    ({"contextWindow": 4096, "maxOutputTokens": 4096}, "capabilities.maxOutputTokens", "below contextWindow (4096)"),
    ({"vision": True}, "capabilities.vision", "unknown capability"),
    ({"streaming": True}, "capabilities.streaming", "baseline"),
]


@pytest.mark.parametrize(("capabilities", "field", "message"), _BAD_CAPABILITIES)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_every_bad_capability_is_a_422_naming_its_field(
    client: httpx.AsyncClient,
    create_model: CreateModel,
    method: str,
    capabilities: Any,
    field: str,
    message: str,
) -> None:
    body: dict[str, Any] = {"capabilities": capabilities}
    if method == "POST":
        suffix = uuid.uuid4().hex[:8]
        body |= {"name": f"m-{suffix}", "provider": "openai", "apiModelId": "x", "regions": ["local"]}
        body["baseUrl"] = "http://127.0.0.1:9/v1"
        response = await client.post("/api/models", json=body)
    else:
        model = await create_model(capabilities={"tools": True})
        response = await client.patch(f"/api/models/{model['id']}", json=body)
        assert (await client.get(f"/api/models/{model['id']}")).json()["capabilities"]["tools"] is True
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == field and message in problem["detail"], problem
    assert problem["errors"][0] == {"field": field, "message": problem["errors"][0]["message"]}


async def test_several_bad_capabilities_are_all_listed(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model()
    response = await client.patch(
        f"/api/models/{model['id']}", json={"capabilities": {"tools": "y", "contextWindow": 1, "x": 1}}
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["capabilities.x", "capabilities.tools", "capabilities.contextWindow"]
    assert "(and 2 more)" in response.json()["detail"]


async def test_openapi_documents_the_capabilities_object_in_and_out(client: httpx.AsyncClient) -> None:
    from certq.certification.capabilities import DECLARABLE_KEYS

    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    declared = schemas["ModelCreate"]["properties"]["capabilities"]
    assert sorted(declared["properties"]) == sorted(DECLARABLE_KEYS) and declared["additionalProperties"] is False
    assert declared["properties"]["contextWindow"]["minimum"] == 256
    assert schemas["ModelUpdate"]["properties"]["capabilities"] == declared
    shown = schemas["ModelOut"]["properties"]["capabilities"]
    assert shown == {"$ref": "#/components/schemas/CapabilitiesOut"}
    assert sorted(schemas["CapabilitiesOut"]["properties"]) == sorted(DECLARABLE_KEYS)
    standing = document["paths"]["/api/certification-queue/standing"]["get"]["parameters"]
    assert "capability" in {p["name"] for p in standing}
