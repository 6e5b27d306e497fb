"""The private servers the demo and the suite fall back on really start, answer and go away."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis

from certq.embedded import port_answers, start_postgres, start_redis, url_answers


async def test_private_redis_answers_and_stops_without_leaving_its_port_open() -> None:
    server = start_redis()
    client = aioredis.from_url(server.url)
    try:
        assert await client.ping() is True  # type: ignore[misc]  # redis-py types ping() as sync or async
        assert url_answers(server.url)
    finally:
        await client.aclose()
        server.stop()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    assert not port_answers("127.0.0.1", port)
    assert not server.workdir.exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_private_postgres_accepts_queries_and_is_removed_on_stop() -> None:
    server = start_postgres()
    try:
        conn = await asyncpg.connect(server.url)
        try:
            assert await conn.fetchval("SELECT 40 + 2") == 42
        finally:
            await conn.close()
    finally:
        server.stop()
    assert not server.workdir.exists()
