"""Redis going away and coming back: the worker turns unready, reconnects, and takes jobs again."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

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
