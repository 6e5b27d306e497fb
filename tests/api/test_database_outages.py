"""A PostgreSQL that cannot take writes is an outage: the API answers 503 problem+json, never 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import api_settings
from tests.support.databases import own_database as own_database_of
from tests.support.servers import serve_app

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[tuple[str, str]]:
    """A migrated database of this test only, since the test makes it read-only: (name, url)."""
    async with own_database_of(postgres_server_url, "ro") as made:
        yield made


async def test_a_read_only_database_answers_503_not_500(
    own_database: tuple[str, str], postgres_server_url: str, redis_url: str, key_prefix: str
) -> None:
    from certq.api import create_app

    name, url = own_database
    token = f"test-{uuid.uuid4().hex}"
    app = create_app(api_settings(url, redis_url, key_prefix, token))
    body: dict[str, Any] = {
        "provider": "openai",
        "apiModelId": "x",
        "baseUrl": "http://127.0.0.1:9/v1",
        "regions": ["local"],
    }
    async with (
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client,
    ):
        assert (await client.post("/api/models", json={**body, "name": "before"})).status_code == 201
        admin = await asyncpg.connect(postgres_server_url)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        finally:
            await admin.close()
        statuses, details = [], []
        for n in range(8):  # the pool reconnects; every new session is read-only
            response = await client.post("/api/models", json={**body, "name": f"during-{n}"})
            statuses.append(response.status_code)
            details.append(response.json().get("detail", ""))
            assert response.headers["content-type"] == "application/problem+json"
            await asyncio.sleep(0.05)
    assert set(statuses) == {503}, statuses
    assert any("cannot take writes" in detail for detail in details), details
