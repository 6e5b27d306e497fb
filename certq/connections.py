"""Redis clients for every process, built from Settings in one place: single server, Sentinel or Cluster."""

from __future__ import annotations

import re
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from certq.settings import Settings, SettingsError

AnyRedis = aioredis.Redis | RedisCluster
Topology = Literal["single", "sentinel", "cluster"]

CONNECT_TIMEOUT_S = 2.0
"""A dead or unreachable server is noticed within this; loopback refusals are immediate anyway."""

SOCKET_TIMEOUT_S = 15.0
"""Longest wait for one reply. Must exceed the longest blocking command the queue sends (its claim block)."""

RETRY_ATTEMPTS = 2
"""Retries per command on a connection error, backing off 50 ms -> 500 ms with jitter. redis-py applies the
same policy again to each reconnect inside a retry, so one call gives up within about 3 s; a failover that
takes longer surfaces as ConnectionError to the caller's own loop (the Runner's), which backs off and
tries again, instead of freezing that loop for tens of seconds."""


def hash_tag(prefix: str) -> str | None:
    """The Redis Cluster hash tag of a key starting with `prefix` (`{myia}` -> `myia`), if the prefix fixes one."""
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return prefix[start + 1 : end]


def require_hash_tag(prefix: str, variable: str = "BULL_QUEUE_PREFIX") -> None:
    """Refuse a Cluster prefix that would scatter one queue's keys over several slots."""
    if hash_tag(prefix) is None:
        suggestion = "{" + (prefix.strip("{}") or "myia") + "}"
        raise SettingsError(
            variable,
            f"{prefix!r} has no hash tag, so one queue's keys would land in different Redis Cluster slots "
            f"and its atomic scripts could not run; write the prefix with braces, e.g. {variable}={suggestion}",
        )


def topology(settings: Settings) -> Topology:
    if settings.redis_cluster_nodes:
        return "cluster"
    if settings.redis_sentinels:
        return "sentinel"
    return "single"


def _nodes(text: str, variable: str) -> list[tuple[str, int]]:
    nodes: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(variable, f"{item!r} is not host:port (e.g. 10.0.0.5:26379)")
        nodes.append((host or "127.0.0.1", int(port)))
    if not nodes:
        raise SettingsError(variable, "lists no host:port")
    return nodes


def check_redis_settings(settings: Settings) -> Topology:
    """Validate the Redis topology settings; every process calls this (through `connect_redis`) at start-up."""
    if settings.redis_cluster_nodes and settings.redis_sentinels:
        raise SettingsError("REDIS_CLUSTER_NODES", "set either REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both")
    kind = topology(settings)
    if kind == "cluster":
        _nodes(settings.redis_cluster_nodes or "", "REDIS_CLUSTER_NODES")
        if settings.redis_db:
            raise SettingsError("REDIS_DB", "Redis Cluster has only database 0")
        require_hash_tag(settings.queue_prefix)
    elif kind == "sentinel":
        _nodes(settings.redis_sentinels or "", "REDIS_SENTINELS")
        if not settings.redis_sentinel_master.strip():
            raise SettingsError("REDIS_SENTINEL_MASTER", "names no master")
    return kind


def reconnect_retry(attempts: int = RETRY_ATTEMPTS) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), attempts,
                 supported_errors=(RedisConnectionError, RedisTimeoutError))


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
        nodes = [ClusterNode(host, port) for host, port in _nodes(settings.redis_cluster_nodes or "", "")]
        return RedisCluster(startup_nodes=nodes, password=settings.redis_password,
                            retry=reconnect_retry(RETRY_ATTEMPTS + 4), **common)
    if kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": 2.0}
        if settings.redis_sentinel_password:
            sentinel_kwargs["password"] = settings.redis_sentinel_password
        sentinels = _nodes(settings.redis_sentinels or "", "REDIS_SENTINELS")
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(settings.redis_sentinel_master, redis_class=SentinelRedis,
                                     password=settings.redis_password, db=settings.redis_db,
                                     retry=reconnect_retry(), retry_on_error=[RedisConnectionError, OSError],
                                     **common)
        assert isinstance(client, SentinelRedis)
        client.sentinel_manager = sentinel
        return client
    if settings.redis_dsn.startswith("unix://"):
        common.pop("socket_keepalive")  # a TCP option: a unix socket connection refuses it
    return aioredis.from_url(settings.redis_dsn, retry=reconnect_retry(),
                             retry_on_error=[RedisConnectionError, OSError], **common)


def describe(settings: Settings) -> str:
    """Where the configured Redis is, without passwords, for logs and error messages."""
    kind = topology(settings)
    if kind == "cluster":
        return f"Redis Cluster {settings.redis_cluster_nodes}"
    if kind == "sentinel":
        return f"Redis Sentinel {settings.redis_sentinels} (master {settings.redis_sentinel_master!r})"
    return "Redis " + re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", settings.redis_dsn)
