"""/api/models: create, read, list, change, deactivate; bad input is a 4xx problem naming the field."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from api.conftest import CreateModel


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
