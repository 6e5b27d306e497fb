"""Redis clients for every process: built from Settings in one place (single server for now)."""

from __future__ import annotations

import redis.asyncio as aioredis

from certq.settings import Settings


def connect_redis(settings: Settings, *, decode_responses: bool = False) -> aioredis.Redis:
    """A client for the configured Redis; connections are opened lazily on first use."""
    return aioredis.from_url(
        settings.redis_dsn,
        decode_responses=decode_responses,
        health_check_interval=10,
        socket_keepalive=True,
    )
