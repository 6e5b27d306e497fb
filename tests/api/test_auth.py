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
