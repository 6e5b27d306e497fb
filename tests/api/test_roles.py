"""Token roles: read < certify < admin; a token used beyond its role gets 403 problem+json."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from certq.api.auth import Role, required_role
from tests.conftest import api_settings
from tests.support.servers import serve_app

BASE = "/api/certification-queue"


@dataclass
class RoleServer:
    url: str
    tokens: dict[str, str]  # role name ("read", "certify", "admin", "bare") -> bearer secret

    def client(self, role: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {self.tokens[role]}"}
        )


@pytest.fixture
async def roles_server(
    migrated_database_url: str, redis_url: str, key_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[RoleServer]:
    from certq.api import create_app

    tokens = {role: f"test-{role}-{uuid.uuid4().hex}" for role in ("read", "certify", "admin", "bare")}
    entries = ",".join(secret if role == "bare" else f"{secret}:{role}" for role, secret in tokens.items())
    app = create_app(api_settings(migrated_database_url, redis_url, key_prefix, entries))
    async with serve_app(app) as url:
        yield RoleServer(url=url, tokens=tokens)


async def _new_model(server: RoleServer) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    async with server.client("admin") as http:
        response = await http.post(
            "/api/models",
            json={
                "name": f"model-{suffix}",
                "provider": "openai",
                "apiModelId": f"tiny-{suffix}",
                "baseUrl": "http://127.0.0.1:9/v1",
                "regions": ["local"],
            },
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _assert_forbidden(response: httpx.Response, needed: str, held: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/forbidden" and problem["field"] == "Authorization"
    assert f"role {needed}" in problem["detail"] and f"role is {held}" in problem["detail"]


@pytest.mark.parametrize("role", ["read", "certify", "admin", "bare"])
async def test_every_role_may_read_standing_and_models(roles_server: RoleServer, role: str) -> None:
    async with roles_server.client(role) as http:
        assert (await http.get(f"{BASE}/stats")).status_code == 200
        assert (await http.get("/api/models")).status_code == 200
        assert (await http.get(f"{BASE}/standing")).status_code == 200


@pytest.mark.parametrize(("role", "allowed"), [("read", False), ("certify", True), ("admin", True), ("bare", True)])
async def test_starting_a_certification_needs_certify(roles_server: RoleServer, role: str, allowed: bool) -> None:
    model = await _new_model(roles_server)
    async with roles_server.client(role) as http:
        response = await http.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})
        if allowed:
            assert response.status_code == 201, response.text
            cancelled = await http.delete(f"{BASE}/jobs/{response.json()['jobId']}")
            assert cancelled.status_code == 200, cancelled.text
        else:
            _assert_forbidden(response, "certify", "read")
            _assert_forbidden(await http.delete(f"{BASE}/jobs/{uuid.uuid4()}"), "certify", "read")


@pytest.mark.parametrize(("role", "allowed"), [("read", False), ("certify", False), ("admin", True), ("bare", True)])
async def test_writing_models_needs_admin(roles_server: RoleServer, role: str, allowed: bool) -> None:
    model = await _new_model(roles_server)
    async with roles_server.client(role) as http:
        response = await http.patch(f"/api/models/{model['id']}", json={"name": f"renamed-{uuid.uuid4().hex[:8]}"})
    if allowed:
        assert response.status_code == 200, response.text
    else:
        _assert_forbidden(response, "admin", role)


async def test_a_wrong_token_is_still_401_not_403(roles_server: RoleServer) -> None:
    async with httpx.AsyncClient(base_url=roles_server.url) as http:
        response = await http.post("/api/models", json={}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", f"{BASE}/jobs/{{job_id}}", Role.READ),
        ("HEAD", "/api/models", Role.READ),
        ("POST", f"{BASE}/certify", Role.CERTIFY),
        ("POST", f"{BASE}/certify-all/", Role.CERTIFY),
        ("DELETE", f"{BASE}/jobs/{uuid.uuid4()}", Role.CERTIFY),
        ("POST", "/api/models", Role.ADMIN),
        ("DELETE", "/api/models/x", Role.ADMIN),
        ("POST", f"{BASE}/pause", Role.ADMIN),
        ("DELETE", f"{BASE}/jobs/a/b", Role.ADMIN),
    ],
)
def test_required_role_reads_are_read_certify_routes_certify_other_writes_admin(
    method: str, path: str, role: Role
) -> None:
    assert required_role(method, path) is role


async def test_openapi_names_the_role_of_every_operation(roles_server: RoleServer) -> None:
    async with httpx.AsyncClient(base_url=roles_server.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert paths[f"{BASE}/certify-model"]["post"]["x-certq-role"] == "certify"
    assert paths["/api/models"]["get"]["x-certq-role"] == "read"
    assert paths["/api/models/{model_id}"]["patch"]["x-certq-role"] == "admin"
    assert all("x-certq-role" in op and "403" in op["responses"] for ops in paths.values() for op in ops.values())


def test_the_development_token_is_admin_and_written_to_a_private_file_not_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import stat

    from certq.api.services import token_set
    from certq.settings import load_settings

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with caplog.at_level("WARNING", logger="certq.api"):
        tokens = token_set(load_settings(api_tokens="", api_port=3999))
    path = tmp_path / "certq" / "api-3999.token"
    generated = path.read_text().strip()
    assert tokens.role_of(generated) is Role.ADMIN
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert str(path) in caplog.text and generated not in caplog.text
