"""Real servers for the whole suite: Redis and PostgreSQL, each test run isolated.

`REDIS_URL`/`DATABASE_URL` win when set; otherwise the default local ports are used when they answer;
otherwise the suite starts throwaway servers itself (certq.embedded). Every test gets its own key
prefix, removed with SCAN+UNLINK of that prefix only; the run gets its own database, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from certq.embedded import EmbeddedServer, start_postgres, start_redis, url_answers
from tests.support.databases import empty_database
from tests.support.servers import serve_app

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    if url_answers(DEFAULT_REDIS_URL):
        yield DEFAULT_REDIS_URL
        return
    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test (or run) uses; with a hash tag so Cluster tests can reuse the helpers."""
    return f"{{t{uuid.uuid4().hex[:12]}}}"


async def unlink_prefix(client: aioredis.Redis, prefix: str) -> None:
    async for batch in _scan_batches(client, f"{prefix}*"):
        await client.unlink(*batch)


async def _scan_batches(client: aioredis.Redis, pattern: str) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            yield batch
            batch = []
    if batch:
        yield batch


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the real Redis; everything under this test's `key_prefix` is removed afterwards."""
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await unlink_prefix(client, key_prefix)
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (not to be written to)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    if url_answers(DEFAULT_DATABASE_URL):
        yield DEFAULT_DATABASE_URL
        return
    server: EmbeddedServer = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A database created for this test run and dropped after it (empty: no schema applied)."""
    with empty_database(postgres_server_url, "run") as url:
        yield url


# --- certq's schema and store (owned by the API engineer; reusable by every part) ---


@pytest.fixture(scope="session")
def migrated_database_url(database_url: str) -> str:
    """`database_url` with schema.sql applied once for the run (tests isolate by owning their rows)."""
    from certq.store import Store

    async def run() -> None:
        store = await Store.connect(database_url, min_size=1, max_size=1)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    return database_url


@pytest.fixture
async def store(migrated_database_url: str) -> AsyncIterator[Any]:
    """A connected `certq.store.Store` on the migrated per-run database."""
    from certq.store import Store

    connected = await Store.connect(migrated_database_url, min_size=1, max_size=5)
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
def make_model(store: Any) -> Callable[..., Awaitable[Any]]:
    """`await make_model(regions=[...], provider=..., **fields)` -> a new ModelRecord with a unique name."""

    async def create(**fields: Any) -> Any:
        suffix = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "name": f"model-{suffix}",
            "provider": "openai",
            "api_model_id": f"tiny-{suffix}",
            "base_url": "http://127.0.0.1:9/v1",
            "regions": ["local"],
        }
        values.update(fields)
        return await store.create_model(**values)

    return create


@dataclass
class ApiServer:
    """A running `certq.api` app: `url`, a valid bearer `token`, and the app's own settings/services."""

    url: str
    token: str
    settings: Any
    app: Any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def services(self) -> Any:
        return self.app.state.services


def api_settings(database_url: str, redis_url: str, prefix: str, token: str, **extra: Any) -> Any:
    """certq Settings for a test API (aliases as keys: `api_settings(..., CERTIFICATION_MAX_RETRIES=0)`)."""
    from certq.settings import Settings

    return Settings.model_validate(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BULL_QUEUE_PREFIX": prefix,
            "API_TOKENS": token,
            "CERTQ_ENV": "development",
            "API_HOST": "127.0.0.1",
            "API_PORT": 0,
            "MODEL_CREDENTIALS": "LLAMA_KEY@127.0.0.1,LLAMA_KEY@localhost",
            **extra,
        }
    )


@pytest.fixture
async def api_server(
    migrated_database_url: str, redis_url: str, key_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[ApiServer]:
    """The API (`create_app`) served by uvicorn on a free loopback port; queue keys under `key_prefix`."""
    from certq.api import create_app

    token = f"test-{uuid.uuid4().hex}"
    settings = api_settings(migrated_database_url, redis_url, key_prefix, token)
    app = create_app(settings)
    async with serve_app(app) as url:
        yield ApiServer(url=url, token=token, settings=settings, app=app)
