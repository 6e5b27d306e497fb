"""The queue through redis-py's RedisCluster client, on a one-node Redis Cluster of our own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from certq.embedded import EmbeddedServer, free_port, start_redis
from certq.queue import ActiveJob, JobSpec, JobState, Queue, QueueConfig, Runner

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) exists and is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10_000 <= 65_535 and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[EmbeddedServer]:
    server = start_redis(
        port=_cluster_port(), extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def cluster(cluster_node: EmbeddedServer) -> AsyncIterator[RedisCluster]:
    admin = aioredis.from_url(cluster_node.url)
    if b"cluster_state:ok" not in await admin.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # type: ignore[no-untyped-call]
        for _ in range(200):  # the node settles its own slot table; nothing to subscribe to
            if b"cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
                break
            await asyncio.sleep(0.05)
    await admin.aclose()
    client = RedisCluster.from_url(cluster_node.url.rsplit("/", 1)[0])
    yield client
    await client.aclose()


async def test_queue_and_runner_work_through_the_cluster_client(cluster: RedisCluster) -> None:
    config = QueueConfig(prefix="{myia}", name="model-certification", events_maxlen=100)
    queue = Queue(cluster, config)
    await queue.enqueue_many(
        [
            JobSpec(
                {"n": n},
                job_id=f"c{n}",
                priority="high" if n % 3 == 0 else "normal",
                dedupe_key=f"m{n}",
                group="us-east-1",
            )
            for n in range(20)
        ]
    )
    await queue.enqueue({}, job_id="later", delay_ms=60_000)
    assert (await queue.counts())["waiting"] == 20
    assert await queue.cancel("c1") == "removed"

    async def handler(active: ActiveJob) -> int:
        await active.progress({"done": 1})
        return int(active.job.payload["n"])

    runner = Runner(cluster, config, handler, concurrency=4, burst=True)
    await runner.run()
    counts = await queue.counts()
    assert (counts["completed"], counts["failed"], counts["delayed"], counts["waiting"]) == (19, 1, 1, 0)
    job = await queue.get("c2")
    assert job is not None and (job.state, job.result, job.progress) == (JobState.COMPLETED, 2, {"done": 1})
    assert [fields["event"] for _, fields in await queue.events("0", 1)] == ["added"]
    await queue.promote("later")
    assert await queue.ids("waiting") == ["later"]
