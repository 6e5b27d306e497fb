"""What only a real Redis shows: blocking pickup, TTL expiry, big Lua batches, the BLMOVE->lease gap."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from certq.queue import Consumer, JobSpec, JobState, Lease, Priority, Queue, QueueConfig
from certq.queue.keys import PRIORITIES
from certq.queue.protocol import LeaseStatus, StartCall
from tests.support.queue_helpers import assert_each_in_one_place

pytestmark = pytest.mark.real_redis


@pytest.fixture
def config(key_prefix: str) -> QueueConfig:
    return QueueConfig(prefix=key_prefix, name="real")


async def test_blocked_claim_wakes_when_a_job_arrives(redis_client: aioredis.Redis, config: QueueConfig) -> None:
    consumer, queue = Consumer(redis_client, config), Queue(redis_client, config)
    claim = asyncio.create_task(consumer.claim_blocking(5_000))
    await asyncio.sleep(0.05)  # let the BLMOVE block first
    assert not claim.done()
    await queue.enqueue({"hello": 1}, job_id="b")
    async with asyncio.timeout(2):
        lease = await claim
    assert isinstance(lease, Lease) and lease.job.id == "b" and lease.attempt == 1
    await assert_each_in_one_place(redis_client, config.keys, {"b"})


async def test_blocked_claim_times_out_empty(redis_client: aioredis.Redis, config: QueueConfig) -> None:
    assert await Consumer(redis_client, config).claim_blocking(50) is None


async def test_lease_expires_by_redis_ttl_and_is_then_lost(redis_client: aioredis.Redis, key_prefix: str) -> None:
    config = QueueConfig(prefix=key_prefix, name="ttl", lease_ms=150, heartbeat_ms=50)
    consumer = Consumer(redis_client, config)
    await Queue(redis_client, config).enqueue({}, job_id="t")
    [lease] = (await consumer.claim(1)).leases
    ttl = await redis_client.pttl(config.keys.lock("t"))
    assert 0 < ttl <= 150
    await asyncio.sleep(ttl / 1000 + 0.05)  # the TTL itself is what is under test
    assert await redis_client.exists(config.keys.lock("t")) == 0
    assert await consumer.heartbeat([lease]) == [LeaseStatus.LOST]


@pytest.mark.parametrize("priority", PRIORITIES)
async def test_paused_while_blocked_puts_the_job_back_first_in_line(
    redis_client: aioredis.Redis, config: QueueConfig, priority: Priority
) -> None:
    consumer, queue = Consumer(redis_client, config), Queue(redis_client, config)
    claim = asyncio.create_task(consumer.claim_blocking(5_000, priority))
    await asyncio.sleep(0.05)
    await queue.pause()
    await queue.enqueue({}, job_id="p1", priority=priority)
    async with asyncio.timeout(2):
        assert await claim == "paused"
    assert await redis_client.lrange(config.keys.wait_for(priority), 0, -1) == [b"p1"]  # type: ignore[misc]
    assert await queue.ids("waiting") == ["p1"]
    await assert_each_in_one_place(redis_client, config.keys, {"p1"})


async def test_cancel_in_the_blmove_gap_fails_the_job_at_lease_time(
    redis_client: aioredis.Redis, config: QueueConfig
) -> None:
    consumer, queue = Consumer(redis_client, config), Queue(redis_client, config)
    await queue.enqueue({}, job_id="gap")
    await redis_client.lmove(config.keys.wait, config.keys.active, "RIGHT", "LEFT")
    assert await queue.cancel("gap") == "flagged"
    call = StartCall("gap", now=1, lease_ms=3000, token="tok", consumer_id=consumer.id, rate_limits="", source="normal")
    assert await consumer.scripts.start(call) == ("cancelled", None)
    job = await queue.get("gap")
    assert job is not None and job.state is JobState.FAILED and job.cancelled


async def test_large_batches_stay_under_lua_unpack_limits(redis_client: aioredis.Redis, key_prefix: str) -> None:
    config = QueueConfig(prefix=key_prefix, name="big", lease_ms=120_000)
    queue, consumer = Queue(redis_client, config), Consumer(redis_client, config)
    jobs = await queue.enqueue_many([JobSpec({}, max_attempts=1) for _ in range(9_000)], batch_size=5_000)
    claimed = (await consumer.claim(9_000)).leases
    assert len(claimed) == 9_000
    await redis_client.delete(config.keys.stalled_check)
    await consumer.recover_stalled()  # marks 9,000 active ids (SADD in chunks)
    assert await redis_client.scard(config.keys.stalled) == 9_000  # type: ignore[misc]
    pipe = redis_client.pipeline(transaction=False)
    for lease in claimed:
        pipe.delete(config.keys.lock(lease.job.id))
    await pipe.execute()
    await redis_client.delete(config.keys.stalled_check)
    recovered, failed = await consumer.recover_stalled() or ([], [])
    assert len(recovered) == 9_000 and failed == []
    ids = [job.id for job in jobs]
    pipe = redis_client.pipeline(transaction=True)  # make them all dead letters in one go
    pipe.delete(config.keys.wait)
    pipe.rpush(config.keys.failed, *ids)
    for job_id in ids:
        pipe.hset(config.keys.job(job_id), "state", "failed")
    await pipe.execute()
    assert await queue.retry_all_failed() == 9_000
    await assert_each_in_one_place(redis_client, config.keys, {job.id for job in jobs})


async def test_brpoplpush_fallback_claims_like_blmove(redis_client: aioredis.Redis, config: QueueConfig) -> None:
    consumer = Consumer(redis_client, config)
    consumer._blmove = False  # as on a Redis older than 6.2
    await Queue(redis_client, config).enqueue({}, job_id="old")
    lease = await consumer.claim_blocking(1_000)
    assert isinstance(lease, Lease) and lease.job.id == "old"
    assert await redis_client.hget(config.keys.job("old"), "token") == lease.token.encode()  # type: ignore[misc]
    await consumer.complete(lease, None)
    assert await redis_client.hget(config.keys.job("old"), "token") == b""  # type: ignore[misc]
