"""Registration and PATCH refuse a baseUrl outside MODEL_EGRESS_ALLOW, in every spelling of an address."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import api_settings
from tests.support.servers import serve_app
from tests.test_egress import INTERNAL_HOSTS


@pytest.fixture
async def client(migrated_database_url: str, redis_url: str, key_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    from certq.api import create_app

    token = f"test-{uuid.uuid4().hex}"
    settings = api_settings(
        migrated_database_url, redis_url, key_prefix, token, MODEL_EGRESS_ALLOW="public,127.0.0.1/32"
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http,
    ):
        yield http


def _model(base_url: str) -> dict[str, object]:
    return {
        "name": f"m-{uuid.uuid4().hex[:8]}",
        "provider": "openai",
        "apiModelId": "x",
        "baseUrl": base_url,
        "regions": ["local"],
    }


ALLOWED_LOOPBACK = ("127.0.0.1", "0x7f000001", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]")


@pytest.mark.parametrize("host", [h for h in INTERNAL_HOSTS if h not in (*ALLOWED_LOOPBACK, "fd00:ec2::254")])
async def test_an_internal_base_url_is_refused_naming_base_url(client: httpx.AsyncClient, host: str) -> None:
    response = await client.post("/api/models", json=_model(f"http://{host}:8080/v1"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "baseUrl" and problem["type"].endswith("egress-refused")
    assert "MODEL_EGRESS_ALLOW" in problem["detail"]


async def test_an_unbracketed_ipv6_address_is_a_bad_url(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/models", json=_model("http://fd00:ec2::254:8080/v1"))
    assert response.status_code == 400 and response.json()["field"] == "baseUrl", response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "[::ffff:127.0.0.1]"])
async def test_the_allowed_network_is_allowed_in_any_spelling(client: httpx.AsyncClient, host: str) -> None:
    response = await client.post("/api/models", json=_model(f"http://{host}:8080/v1"))
    assert response.status_code == 201, response.text


async def test_patch_cannot_move_a_model_into_a_refused_network(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/models", json=_model("http://127.0.0.1:8080/v1"))
    assert created.status_code == 201, created.text
    for url in ("http://169.254.169.254/v1", "http://10.0.0.1/v1", "http://[::1]:8080/v1"):
        response = await client.patch(f"/api/models/{created.json()['id']}", json={"baseUrl": url})
        assert response.status_code == 422 and response.json()["field"] == "baseUrl", response.text
    current = await client.get(f"/api/models/{created.json()['id']}")
    assert current.json()["baseUrl"] == "http://127.0.0.1:8080/v1"
