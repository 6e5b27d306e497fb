"""Run admin commands in-process against the real Redis/PostgreSQL, with this test's own key prefix."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import redis

from certq.cli import main
from certq.queue import Consumer, Queue, QueueConfig
from certq.store import ModelRecord, Store
from tests.support.databases import empty_database

T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli_env(redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point Settings at the real Redis under this test's prefix; remove the prefix's keys afterwards."""
    for variable in ("REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES", "CERTIFICATION_QUEUE_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BULL_QUEUE_PREFIX", key_prefix)
    yield key_prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}*", count=500))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        captured = capsys.readouterr()
        return Result(int(exit_info.value.code or 0), captured.out, captured.err)

    return run


@pytest.fixture
def on_queue(redis_url: str, cli_env: str) -> Callable[[Callable[[Queue, Consumer], Awaitable[T]]], T]:
    """Run `fn(queue, consumer)` on this test's queue (the same one the CLI sees) and return its result."""

    def run(fn: Callable[[Queue, Consumer], Awaitable[T]]) -> T:
        async def go() -> T:
            from redis.asyncio import Redis

            client = Redis.from_url(redis_url)
            config = QueueConfig(prefix=cli_env)
            try:
                return await fn(Queue(client, config), Consumer(client, config))
            finally:
                await client.aclose()

        return asyncio.run(go())

    return run


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """A database of this test alone, with no schema; dropped afterwards."""
    with empty_database(postgres_server_url, "cli") as url:
        yield url


@dataclass
class FakeHealth:
    """A loopback HTTP server answering /live and /ready with chosen statuses (stands in for a worker)."""

    port: int
    statuses: dict[str, tuple[int, bytes]]


@pytest.fixture
def fake_health() -> Iterator[FakeHealth]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    statuses: dict[str, tuple[int, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = statuses.get(self.path, (404, b"{}"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeHealth(server.server_address[1], statuses)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def model(migrated_database_url: str) -> ModelRecord:
    """A model registered in the run's migrated database, for commands that enqueue or look up its runs."""

    async def create() -> ModelRecord:
        store = await Store.connect(migrated_database_url, min_size=1, max_size=1)
        try:
            record = await store.create_model(
                name=f"m-{uuid.uuid4().hex[:6]}",
                provider="openai",
                api_model_id="tiny",
                base_url="http://127.0.0.1:9/v1",
                regions=["local"],
            )
            assert isinstance(record, ModelRecord)
            return record
        finally:
            await store.close()

    return asyncio.run(create())
