"""/api/models: model deployments (DELETE deactivates: runs keep pointing at their model)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from certq.api.certify import idempotency_key, replayed
from certq.api.openapi import Endpoint
from certq.api.present import model_out, pagination
from certq.api.problems import Problem, parse_body, parse_query, parse_uuid
from certq.api.responses import answer, services_of
from certq.api.schemas import ModelCreate, ModelList, ModelOut, ModelsQuery, ModelUpdate, check_deployment
from certq.certification import ModelEndpoint
from certq.certification.capabilities import Capabilities, check_capabilities
from certq.credentials import CredentialPolicy, url_target
from certq.egress import EgressPolicy
from certq.store import ModelRecord, Replay

_COLUMNS = {
    "name": "name",
    "provider": "provider",
    "apiModelId": "api_model_id",
    "baseUrl": "base_url",
    "apiKeyEnv": "api_key_env",
    "regions": "regions",
    "isActive": "is_active",
    "servedModel": "served_model",
    "validitySeconds": "validity_s",
    "capabilities": "capabilities",
}


def _check(provider: str, base_url: str | None, regions: list[str]) -> None:
    problems = check_deployment(provider, base_url, regions)
    if problems:
        errors = [{"field": f, "message": m} for f, m in problems]
        raise Problem(
            400, f"{problems[0][0]}: {problems[0][1]}", field=problems[0][0], kind="invalid-input", errors=errors
        )


def _capabilities(value: Any) -> dict[str, Any]:
    """A declaration as stored: {} for none (absent or null), else every key, defaults filled in; 422 naming the key."""
    if value is None:
        return {}
    problems = check_capabilities(value)
    if problems:
        errors = [{"field": f"capabilities.{key}" if key else "capabilities", "message": m} for key, m in problems]
        detail = f"{errors[0]['field']}: {errors[0]['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        raise Problem(422, detail, field=errors[0]["field"], kind="invalid-capabilities", errors=errors)
    return Capabilities.from_json(value).to_json()


def _targets(merged: dict[str, Any]) -> list[str]:
    return [
        ModelEndpoint(
            provider=merged["provider"], api_model_id="", region=region, base_url=merged["base_url"]
        ).target_url
        for region in merged["regions"]
    ]


def _check_egress(policy: EgressPolicy, merged: dict[str, Any]) -> None:
    """What the URL alone shows to be out of MODEL_EGRESS_ALLOW; the worker checks the resolved address too."""
    for url in _targets(merged):
        target = url_target(url)
        if target is None:
            raise Problem(
                400,
                "baseUrl: not an http(s) URL with a valid host and port (an IPv6 address goes in "
                "brackets: http://[::1]:8080/v1)",
                field="baseUrl",
                kind="invalid-input",
            )
        refusal = policy.host_refusal(target[0])
        if refusal is not None:
            raise Problem(
                422, f"baseUrl: {refusal}; ask the operator to allow it", field="baseUrl", kind="egress-refused"
            )


def _check_credential(policy: CredentialPolicy, merged: dict[str, Any]) -> None:
    """A model may only name a declared credential, and only for hosts in that credential's scope."""
    name = merged.get("api_key_env")
    if not name:
        return
    if not policy.declares(name):
        declared = ", ".join(policy.names) or "none"
        raise Problem(
            422,
            f"apiKeyEnv: {name} is not a credential declared in MODEL_CREDENTIALS (declared: "
            f"{declared}); ask the operator to declare it with the hosts it may be sent to",
            field="apiKeyEnv",
            kind="undeclared-credential",
        )
    for url in _targets(merged):
        refusal = policy.refusal(name, url)
        if refusal is not None:
            raise Problem(422, f"baseUrl: {refusal}", field="baseUrl", kind="credential-out-of-scope")


async def create_model(request: Request) -> Response:
    services = services_of(request)
    body, raw = await parse_body(request, ModelCreate)
    base_url = None if body.base_url is None else body.base_url.rstrip("/")
    _check(body.provider, base_url, body.regions)
    capabilities = _capabilities(body.capabilities)
    merged = {"provider": body.provider, "base_url": base_url, "regions": body.regions, "api_key_env": body.api_key_env}
    _check_egress(services.settings.egress_policy, merged)
    _check_credential(services.settings.credential_policy, merged)
    key = idempotency_key(
        request.headers.get("idempotency-key"),
        f"{request.scope.get('state', {}).get('token_id', '')}:POST /api/models",
        raw,
    )

    def render(record: ModelRecord) -> tuple[int, dict[str, Any]]:
        return 201, model_out(record).model_dump(mode="json", by_alias=True)

    result = await services.need_store().create_model(
        name=body.name,
        provider=body.provider,
        api_model_id=body.api_model_id,
        base_url=base_url,
        api_key_env=body.api_key_env,
        regions=body.regions,
        is_active=body.is_active,
        served_model=body.served_model,
        validity_s=body.validity_seconds,
        capabilities=capabilities,
        idempotency=key,
        render=render,
    )
    if isinstance(result, Replay):
        status, replay_body = replayed(result)
        return answer(status, replay_body)
    return answer(*render(result))


async def list_models(request: Request) -> Response:
    query = parse_query(request, ModelsQuery)
    page = await services_of(request).need_store().list_models(page=query.page, limit=query.limit, active=query.active)
    return answer(200, ModelList(models=[model_out(m) for m in page.items], pagination=pagination(page)))


async def _existing(request: Request) -> ModelRecord:
    model_id = parse_uuid(request.path_params["model_id"], "modelId")
    record = await services_of(request).need_store().get_model(model_id)
    if record is None:
        raise Problem(404, f"no model with id {model_id}", field="modelId", kind="model-not-found")
    return record


async def get_model(request: Request) -> Response:
    return answer(200, model_out(await _existing(request)))


async def update_model(request: Request) -> Response:
    current = await _existing(request)
    body, _ = await parse_body(request, ModelUpdate)
    changes = {_COLUMNS[name]: value for name, value in body.model_dump(by_alias=True, exclude_unset=True).items()}
    for column in ("name", "provider", "api_model_id", "regions", "is_active"):
        if column in changes and changes[column] is None:
            field = next(k for k, v in _COLUMNS.items() if v == column)
            raise Problem(400, f"{field} cannot be null", field=field, kind="invalid-input")
    if changes.get("base_url"):
        changes["base_url"] = changes["base_url"].rstrip("/")
    if "capabilities" in changes:
        changes["capabilities"] = _capabilities(changes["capabilities"])
    merged = {
        "provider": current.provider,
        "base_url": current.base_url,
        "regions": current.regions,
        "api_key_env": current.api_key_env,
    } | changes
    _check(merged["provider"], merged["base_url"], merged["regions"])
    _check_egress(services_of(request).settings.egress_policy, merged)
    _check_credential(services_of(request).settings.credential_policy, merged)
    record = await services_of(request).need_store().update_model(current.id, changes)
    if record is None:
        raise Problem(404, f"no model with id {current.id}", field="modelId", kind="model-not-found")
    return answer(200, model_out(record))


async def deactivate_model(request: Request) -> Response:
    current = await _existing(request)
    record = await services_of(request).need_store().deactivate_model(current.id)
    if record is None:
        raise Problem(404, f"no model with id {current.id}", field="modelId", kind="model-not-found")
    return answer(200, model_out(record))


_ONE = "/api/models/{model_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/models",
        create_model,
        "Register a model deployment",
        {201: ModelOut},
        body=ModelCreate,
        tags=("models",),
        idempotent_post=True,
    ),
    Endpoint(
        "GET",
        "/api/models",
        list_models,
        "List model deployments, newest first",
        {200: ModelList},
        query=ModelsQuery,
        tags=("models",),
    ),
    Endpoint(
        "GET", _ONE, get_model, "One model deployment", {200: ModelOut}, path_params=("model_id",), tags=("models",)
    ),
    Endpoint(
        "PATCH",
        _ONE,
        update_model,
        "Change fields of a model deployment (capabilities: the whole object is replaced)",
        {200: ModelOut},
        body=ModelUpdate,
        path_params=("model_id",),
        tags=("models",),
    ),
    Endpoint(
        "DELETE",
        _ONE,
        deactivate_model,
        "Deactivate a model deployment (kept for its history)",
        {200: ModelOut},
        path_params=("model_id",),
        tags=("models",),
    ),
]
