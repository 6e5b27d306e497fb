"""An authenticated httpx client on the `api_server` fixture, and a model factory over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

CreateModel = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def client(api_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, headers=api_server.headers, timeout=10) as http:
        yield http


@pytest.fixture
def create_model(client: httpx.AsyncClient) -> CreateModel:
    async def create(**fields: Any) -> dict[str, Any]:
        suffix = uuid.uuid4().hex[:8]
        body: dict[str, Any] = {
            "name": f"model-{suffix}",
            "provider": "openai",
            "apiModelId": f"tiny-{suffix}",
            "baseUrl": "http://127.0.0.1:9/v1",
            "regions": ["local"],
        }
        body.update(fields)
        response = await client.post("/api/models", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create
