"""A real HTTP server hosting the dashboard over the test's own queue (real Redis) and the run's database."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from certq.dashboard import StaticDeps, create_board
from certq.health import HealthServer
from certq.queue import Queue, QueueConfig
from certq.settings import Settings, load_settings
from certq.store import Store
from tests.support.servers import serve_app

USER = "operator"
PASSWORD = "correct horse battery"
BOARD_PATH = "/admin/queues"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Board:
    """A served dashboard: `client` is signed in and sends the CSRF header on POSTs."""

    url: str
    user: str
    queue: Queue
    store: Store
    deps: StaticDeps
    client: httpx.AsyncClient
    settings: Settings

    async def post(self, path: str, json: Any = None) -> httpx.Response:
        return await self.client.post(path, json=json if json is not None else {}, headers={"X-Certq-Board": "1"})


@pytest.fixture
def queue_config(key_prefix: str) -> QueueConfig:
    return QueueConfig(
        prefix=key_prefix,
        name="model-certification",
        lease_ms=2_000,
        heartbeat_ms=200,
        stalled_check_ms=200,
        backoff_base_ms=50,
        backoff_cap_ms=200,
        promote_ms=50,
        retention_ms=500,
        block_ms=100,
    )


@pytest.fixture
def board_user() -> str:
    """A user name of this test only, so its audit entries are told apart from other tests' ones."""
    return f"{USER}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def board_settings(key_prefix: str, board_user: str) -> Settings:
    return load_settings(
        board_username=board_user, board_password=PASSWORD, queue_prefix=key_prefix, board_path=BOARD_PATH
    )


async def serve_board(settings: Settings, deps: StaticDeps) -> tuple[HealthServer, str]:
    host = Starlette()
    host.mount(settings.board_path, create_board(settings, deps))
    server = HealthServer(host, "127.0.0.1", 0)
    await server.start()
    return server, f"http://127.0.0.1:{server.port}"


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` (lifespan on, as `python -m certq.api` does) on a free loopback port; yields its URL."""
    async with serve_app(app) as url:
        yield url


@dataclass
class Api:
    """The real API (create_app) with its dashboard; `board` is a signed-in client of /admin/queues/."""

    url: str
    user: str
    token: str
    settings: Settings
    queue: Queue
    store: Store
    board: httpx.AsyncClient


@pytest.fixture
async def api(
    redis_client: aioredis.Redis,
    store: Store,
    queue_config: QueueConfig,
    key_prefix: str,
    migrated_database_url: str,
    redis_url: str,
    board_user: str,
) -> AsyncIterator[Api]:
    from certq.api import create_app

    token = f"test-{uuid.uuid4().hex}"
    settings = Settings.model_validate(
        {
            "DATABASE_URL": migrated_database_url,
            "REDIS_URL": redis_url,
            "BULL_QUEUE_PREFIX": key_prefix,
            "API_TOKENS": token,
            "BULL_BOARD_USERNAME": board_user,
            "BULL_BOARD_PASSWORD": PASSWORD,
        }
    )
    queue = Queue(redis_client, queue_config)
    app = create_app(settings, store=store, queue=queue)
    async with serving(app) as url:
        client = httpx.AsyncClient(
            base_url=url + BOARD_PATH + "/",
            timeout=10,
            headers={"Authorization": basic(board_user, PASSWORD), "X-Certq-Board": "1"},
        )
        try:
            yield Api(url=url, user=board_user, token=token, settings=settings, queue=queue, store=store, board=client)
        finally:
            await client.aclose()


@pytest.fixture
async def board(
    redis_client: aioredis.Redis, store: Store, queue_config: QueueConfig, board_settings: Settings, board_user: str
) -> AsyncIterator[Board]:
    queue = Queue(redis_client, queue_config)
    deps = StaticDeps(queue=queue, store=store)
    server, url = await serve_board(board_settings, deps)
    client = httpx.AsyncClient(
        base_url=url + BOARD_PATH + "/", headers={"Authorization": basic(board_user, PASSWORD)}, timeout=10
    )
    try:
        yield Board(
            url=url, user=board_user, queue=queue, store=store, deps=deps, client=client, settings=board_settings
        )
    finally:
        await client.aclose()
        await server.stop()


VerdictMaker = Callable[..., Awaitable[UUID]]


@pytest.fixture
def finished_run(store: Store) -> VerdictMaker:
    """`await finished_run(model, region, status=..., score=...)`: a run recorded and finished as the worker does."""

    async def make(
        model: Any,
        region: str,
        *,
        status: str = "CERTIFIED",
        score: float = 92.0,
        latency_ms: float = 120.0,
        category: str | None = None,
        capabilities: dict[str, list[str]] | None = None,
    ) -> UUID:
        created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, region)])
        run = created.certifications[0]  # type: ignore[union-attr]
        assert await store.begin_attempt(run.id, 1)
        rating = "A" if score >= 90 else "B" if score >= 80 else "C" if score >= 70 else "D" if score >= 60 else "F"
        verdict = {
            "status": status,
            "passed": status == "CERTIFIED",
            "score": score,
            "rating": rating,
            "testResults": [
                {"name": "basic-chat", "passed": True, "score": 100, "latencyMs": latency_ms, "detail": "ok"},
                {
                    "name": "json-output",
                    "passed": status == "CERTIFIED",
                    "score": score,
                    "latencyMs": latency_ms,
                    "detail": "schema checked",
                },
            ],
            "metrics": {"latencyMs": {"p50": latency_ms, "p95": latency_ms * 2}},
            "errorCategory": category,
            "errorMessage": None if category is None else "too slow",
            "durationMs": 900,
        }
        if capabilities is not None:
            verdict["capabilities"] = capabilities
        assert await store.finish_certification(run.id, 1, verdict)
        return run.id

    return make
