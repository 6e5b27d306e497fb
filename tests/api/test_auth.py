"""Bearer tokens on /api/*; health, metrics and the OpenAPI document stay open."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PATHS = ["/api/models", "/api/certification-queue/stats", "/api/certification-queue/regions"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "bearer  a b"])
async def test_api_routes_refuse_missing_or_wrong_tokens(api_server: Any, path: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "Authorization"


async def test_a_valid_token_is_accepted_whatever_the_scheme_case(api_server: Any) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        response = await http.get("/api/models", headers={"Authorization": f"bearer {api_server.token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/live", "/metrics", "/openapi.json"])
async def test_operational_routes_need_no_token(api_server: Any, path: str) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text


async def test_wrong_tokens_are_logged_and_throttled_per_client(
    api_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from certq.api.auth import FAILED_TOKENS_PER_MINUTE

    wrong = "Bearer wrong-token-that-must-never-be-logged"
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        statuses = [
            (await http.get("/api/models", headers={"Authorization": wrong})).status_code
            for _ in range(FAILED_TOKENS_PER_MINUTE)
        ]
        refused = await http.get("/api/models", headers={"Authorization": f"Bearer {api_server.token}"})
        open_route = await http.get("/health")
    assert statuses == [401] * FAILED_TOKENS_PER_MINUTE
    assert refused.status_code == 429, refused.text  # even a right token: the client may not try for now
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.json()["field"] == "Authorization"
    assert open_route.status_code == 200
    failures = [r for r in caplog.records if r.getMessage() == "wrong bearer token"]
    assert len(failures) == FAILED_TOKENS_PER_MINUTE
    assert failures[-1].__dict__["failures_in_window"] == FAILED_TOKENS_PER_MINUTE
    assert "never-be-logged" not in caplog.text
