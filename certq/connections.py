"""Redis clients for every process, built from Settings in one place: single server, Sentinel or Cluster."""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from certq.settings import Settings, Topology, redis_nodes

AnyRedis = aioredis.Redis | RedisCluster

CONNECT_TIMEOUT_S = 2.0
"""A dead or unreachable server is noticed within this; loopback refusals are immediate anyway."""

SOCKET_TIMEOUT_S = 15.0
"""Longest wait for one reply. Must exceed the longest blocking command the queue sends (its claim block)."""

RETRY_ATTEMPTS = 2
"""Retries per command on a connection error, backing off 50 ms -> 500 ms with jitter. redis-py applies the
same policy again to each reconnect inside a retry, so one call gives up within about 3 s; a failover that
takes longer surfaces as ConnectionError to the caller's own loop (the Runner's), which backs off and
tries again, instead of freezing that loop for tens of seconds."""


def topology(settings: Settings) -> Topology:
    return settings.topology


def check_redis_settings(settings: Settings) -> Topology:
    """The topology of valid settings (Settings validate the rules themselves when they are built)."""
    return settings.topology


def reconnect_retry(attempts: int = RETRY_ATTEMPTS) -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(base=0.05, cap=0.5),
        attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _common(decode_responses: bool) -> dict[str, Any]:
    return {
        "decode_responses": decode_responses,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }


class SentinelRedis(aioredis.Redis):
    """A master client that follows Sentinel's promotions; closing it closes the Sentinel connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def connect_redis(settings: Settings, *, decode_responses: bool = False) -> AnyRedis:
    """A client for the configured Redis topology; connections open lazily on first use.

    Raises SettingsError for an unusable topology (e.g. a Cluster prefix without a hash tag).
    """
    kind = check_redis_settings(settings)
    common = _common(decode_responses)
    if kind == "cluster":
        listed = redis_nodes(settings.redis_cluster_nodes or "", "REDIS_CLUSTER_NODES")
        nodes = [ClusterNode(host, port) for host, port in listed]
        return RedisCluster(
            startup_nodes=nodes, password=settings.redis_password, retry=reconnect_retry(RETRY_ATTEMPTS + 4), **common
        )
    if kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": 2.0}
        if settings.redis_sentinel_password:
            sentinel_kwargs["password"] = settings.redis_sentinel_password
        sentinels = redis_nodes(settings.redis_sentinels or "", "REDIS_SENTINELS")
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(
            settings.redis_sentinel_master,
            redis_class=SentinelRedis,
            password=settings.redis_password,
            db=settings.redis_db,
            retry=reconnect_retry(),
            retry_on_error=[RedisConnectionError, OSError],
            **common,
        )
        assert isinstance(client, SentinelRedis)
        client.sentinel_manager = sentinel
        return client
    if settings.redis_dsn.startswith("unix://"):
        common.pop("socket_keepalive")  # a TCP option: a unix socket connection refuses it
    return aioredis.from_url(
        settings.redis_dsn, retry=reconnect_retry(), retry_on_error=[RedisConnectionError, OSError], **common
    )


def describe(settings: Settings) -> str:
    """Where the configured Redis is, without passwords, for logs and error messages."""
    kind = topology(settings)
    if kind == "cluster":
        return f"Redis Cluster {settings.redis_cluster_nodes}"
    if kind == "sentinel":
        return f"Redis Sentinel {settings.redis_sentinels} (master {settings.redis_sentinel_master!r})"
    return "Redis " + re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", settings.redis_dsn)
