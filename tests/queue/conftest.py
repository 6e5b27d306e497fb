"""Queue fixtures: the contract suite runs on fakeredis (with Lua) and on the real Redis; a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aioredis

from certq.queue import Consumer, Queue, QueueConfig
from tests.support.queue_helpers import FakeClock
from tests.support.script_trace import ScriptTrace


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["fake", "real"])
async def backend(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[aioredis.Redis]:
    """A Redis client: fakeredis (own server per test) or the real server (keys under the test's
    key_prefix are removed afterwards, by SCAN+UNLINK of that prefix only). On fakeredis every script
    run is also checked for Cluster safety (script_trace: no key first reached after the first write)."""
    if request.param == "fake":
        trace = ScriptTrace()
        trace.install(monkeypatch)
        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield client
        await client.aclose()
        assert trace.violations == []
        return
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.unlink(*keys[start : start + 500])
        await client.aclose()


@pytest.fixture
def config(key_prefix: str) -> QueueConfig:
    return QueueConfig(prefix=key_prefix, name="jobs", backoff_base_ms=1_000, backoff_cap_ms=60_000)


@pytest.fixture
def queue(backend: aioredis.Redis, config: QueueConfig, clock: FakeClock) -> Queue:
    return Queue(backend, config, clock=clock)


@pytest.fixture
def consumer(backend: aioredis.Redis, config: QueueConfig, clock: FakeClock) -> Consumer:
    return Consumer(backend, config, consumer_id="c1", clock=clock)
