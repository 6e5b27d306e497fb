"""Redis or PostgreSQL going away and coming back: the worker turns unready, reconnects, and carries on."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from certq.embedded import EmbeddedServer, free_port, start_redis
from certq.queue import Queue, QueueConfig
from tests.worker.helpers import QUEUE_NAME, SpawnWorker, http_get, wait_finished, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# Persisted on every write, so a restart keeps the queue (as a production Redis with AOF would).
AOF = ["--appendonly", "yes", "--appendfsync", "always"]


class PrivateRedis:
    """A Redis of this test alone, restartable on the same port with the same data directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.server: EmbeddedServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = start_redis(workdir=self.workdir, port=self.port, extra_args=AOF)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_redis_restart_mid_run_loses_no_job_and_the_worker_takes_jobs_again(
    spawn_worker: SpawnWorker, private_redis: PrivateRedis, key_prefix: str
) -> None:
    worker = spawn_worker("--concurrency", "2", env={"REDIS_URL": private_redis.url})
    port = await worker.started()
    await wait_status(port, "/ready", 200)
    config = QueueConfig(prefix=key_prefix, name=QUEUE_NAME)
    client = aioredis.from_url(private_redis.url)
    queue = Queue(client, config)
    before = [await queue.enqueue({"sleep": 0}) for _ in range(4)]
    await wait_finished(queue, [job.id for job in before])
    in_flight = await queue.enqueue({"sleep": 1.0})
    await worker.wait_log("job started", count=5)
    await client.aclose()

    private_redis.stop()
    unready = await wait_status(port, "/ready", 503)
    assert "redis" in unready.json()["reason"]
    assert (await http_get(port, "/health")).status_code == 503
    assert (await http_get(port, "/live")).status_code == 200
    private_redis.start()

    await wait_status(port, "/ready", 200, within=30)
    client = aioredis.from_url(private_redis.url)
    try:
        queue = Queue(client, config)
        after = [await queue.enqueue({"sleep": 0}) for _ in range(4)]
        done = await wait_finished(queue, [job.id for job in [*before, in_flight, *after]], within=30)
        assert {job.state.value for job in done} == {"completed"}
        assert worker.process.poll() is None
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    finally:
        await client.aclose()


class TcpProxy:
    """127.0.0.1:<port> forwarded to `target`; `cut()` drops every connection and stops listening."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.accepting = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.accepting = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if not self.accepting:  # accepted just before a cut: it must not outlive it
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self.writers |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.close()
            self.writers.discard(writer)

    async def cut(self) -> None:
        self.accepting = False
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()


async def test_postgresql_going_away_and_back_fails_no_job_and_the_worker_carries_on(
    spawn_worker: SpawnWorker, queue: Queue, migrated_database_url: str
) -> None:
    parts = urlsplit(migrated_database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    try:
        worker = spawn_worker("--concurrency", "1", env={"DATABASE_URL": proxied})
        port = await worker.started()
        await wait_status(port, "/ready", 200)
        first = await queue.enqueue({"sleep": 0})
        await wait_finished(queue, [first.id])

        await proxy.cut()
        unready = await wait_status(port, "/ready", 503)
        assert "postgresql" in unready.json()["reason"]
        during = await queue.enqueue({"sleep": 0})
        await worker.wait_log("job started", count=2)  # claimed, and held until PostgreSQL is back
        restored_at = time.time()
        await proxy.start()

        await wait_status(port, "/ready", 200, within=30)
        [done] = await wait_finished(queue, [during.id])
        assert done.state.value == "completed" and done.errors == []
        assert done.result["started"] >= restored_at  # held while PostgreSQL was away, not failed
        assert len(worker.events("postgresql unreachable")) == 1 and len(worker.events("postgresql reachable")) == 2
        assert worker.process.poll() is None
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    finally:
        await proxy.cut()


async def test_a_job_claimed_while_postgresql_stays_away_goes_back_to_wait_unburnt(
    redis_url: str, key_prefix: str, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry

    from certq.settings import load_settings
    from certq.worker import daemon
    from certq.worker.daemon import Worker

    monkeypatch.setattr(daemon, "DATABASE_WAIT_S", 0.2)
    monkeypatch.setattr(daemon, "STARTUP_DATABASE_WAIT_S", 0.0)
    ran: list[str] = []

    async def handle(active: Any) -> None:
        ran.append(active.job.id)

    settings = load_settings(redis_url=redis_url, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                             queue_prefix=key_prefix, queue_name=QUEUE_NAME, worker_health_host="127.0.0.1",
                             worker_health_port=0, concurrency=1)
    worker = Worker(settings, handler=handle, registry=CollectorRegistry())
    running = asyncio.create_task(worker.run())
    job = await queue.enqueue({"n": 1}, max_attempts=1)
    released, last = 0, "0"
    async with asyncio.timeout(20):
        while released < 2:  # held, handed back, claimed again, handed back again
            entries = await queue.events(last, 100, block_ms=500)
            released += sum(1 for _, e in entries if e["event"] == "released" and e["jobId"] == job.id)
            last = entries[-1][0] if entries else last
    worker.request_stop("test")
    assert await running == 0
    after = await queue.get(job.id)
    assert after is not None and after.state.value == "waiting" and after.attempts_counted == 0
    assert ran == []


async def test_a_worker_started_without_redis_stays_up_unready_and_stops_cleanly(spawn_worker: SpawnWorker) -> None:
    worker = spawn_worker("--concurrency", "1", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    port = await worker.started()
    health = await wait_status(port, "/health", 503)
    assert health.json()["status"] == "unhealthy" and "redis" in health.json()["reason"]
    assert "redis" in (await http_get(port, "/ready")).json()["reason"]
    assert (await http_get(port, "/live")).status_code == 200
    metrics = await http_get(port, "/metrics")
    assert metrics.status_code == 200 and "certq_redis_up 0.0" in metrics.text
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


async def test_a_worker_whose_redis_cluster_is_unreachable_stays_up_unready_without_tracebacks(
        spawn_worker: SpawnWorker) -> None:
    worker = spawn_worker("--concurrency", "1", env={"REDIS_CLUSTER_NODES": f"127.0.0.1:{free_port()}"})
    port = await worker.started()
    health = await wait_status(port, "/health", 503)
    assert "redis" in health.json()["reason"]
    deadline = time.monotonic() + 20
    while sum("redis error in claim" in line for line in worker.raw) < 2:  # the claim loop retried
        assert time.monotonic() < deadline, "".join(worker.raw)
        await asyncio.sleep(0.1)
    assert len(worker.events("redis unreachable")) == 1
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert not [line for line in worker.raw if "Traceback" in line]
