"""Redis and PostgreSQL as the worker sees them: watched, reconnected with backoff, never fatal when away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import cast

import asyncpg
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from certq.metrics import Metrics
from certq.store import Store
from certq.store.outages import DATABASE_OUTAGE_ERRORS, WRITE_REFUSED_ERRORS

log = logging.getLogger("certq.worker")

PING_TIMEOUT_S = 1.0

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_OUTAGE_ERRORS, asyncpg.PostgresError)


class DatabaseUnavailable(Exception):
    """Raised by a handler when PostgreSQL went away mid-job: the job goes back to wait, no attempt burnt."""


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class RedisWatch:
    """Pings Redis now and then so `certq_redis_up` and the last-success time stay true while idle."""

    def __init__(self, redis: Redis | RedisCluster, metrics: Metrics, *, period_s: float = 5.0) -> None:
        self.redis = redis
        self.metrics = metrics
        self.period_s = period_s

    async def ping(self) -> str | None:
        """None when Redis answered; else what went wrong."""
        try:
            await asyncio.wait_for(cast(Awaitable[bool], self.redis.ping()), PING_TIMEOUT_S)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            self.metrics.redis_answered(False)
            return describe(exc)
        self.metrics.redis_answered(True)
        return None

    async def watch(self, stop: asyncio.Event) -> None:
        was_up = True
        while not stop.is_set():
            problem = await self.ping()
            if (problem is None) != was_up:
                was_up = problem is None
                if was_up:
                    log.info("redis reachable again")
                else:
                    log.warning("redis unreachable", extra={"error": problem})
            await _wait(stop, self.period_s)


class Database:
    """The worker's Store, connected in the background and reconnected after outages.

    `up` is set while PostgreSQL answers; `store` is None until the first connection succeeds.
    `writable` is cleared when a handler's write was refused (`write_problem` says how) and set again
    once a write probe passes: a read-only server answers the ping, so `up` alone cannot tell.
    """

    def __init__(self, dsn: str, metrics: Metrics, *, pool_size: int = 5, period_s: float = 5.0) -> None:
        self.dsn = dsn
        self.metrics = metrics
        self.pool_size = pool_size
        self.period_s = period_s
        self.store: Store | None = None
        self.up = asyncio.Event()
        self.last_error: str | None = "not connected yet"
        self.writable = asyncio.Event()
        self.writable.set()
        self.write_problem: str | None = None
        self._reported: bool | None = None

    def _mark(self, ok: bool, problem: str | None = None) -> None:
        if ok != self._reported:
            self._reported = ok
            if ok:
                log.info("postgresql reachable")
            else:
                log.warning("postgresql unreachable", extra={"error": problem})
        if ok:
            self.up.set()
            self.last_error = None
        else:
            self.up.clear()
            self.last_error = problem
        self.metrics.database_answered(ok)

    def _mark_writes(self, ok: bool, problem: str | None = None) -> None:
        if ok != self.writable.is_set():
            if ok:
                log.info("postgresql takes writes again")
            else:
                log.warning("postgresql refuses writes", extra={"error": problem})
        if ok:
            self.writable.set()
            self.write_problem = None
        else:
            self.writable.clear()
            self.write_problem = problem

    def went_away(self, exc: BaseException) -> None:
        """A handler saw an outage error: report unready until the next successful ping, or, for a refused
        write, until a write probe passes."""
        if isinstance(exc, WRITE_REFUSED_ERRORS):
            self._mark_writes(False, describe(exc))
        else:
            self._mark(False, describe(exc))

    async def connect(self) -> str | None:
        try:
            self.store = await asyncio.wait_for(Store.connect(self.dsn, min_size=1, max_size=self.pool_size), 5.0)
        except _CONNECT_ERRORS as exc:
            return describe(exc)
        return None

    async def check(self) -> str | None:
        """None when PostgreSQL answers now; else what is wrong. Probes writes only while they are refused."""
        if self.store is None:
            return self.last_error or "not connected yet"
        ok = await self.store.ping()
        self._mark(ok, None if ok else "ping failed")
        if not ok:
            return "ping failed"
        if not self.writable.is_set() and await self.store.takes_writes():
            self._mark_writes(True)
        return None

    async def keep_connected(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            if self.store is None:
                problem = await self.connect()
                if problem is not None:
                    self._mark(False, problem)
                    await _wait(stop, delay)
                    delay = min(delay * 2, 10.0)
                    continue
                delay = 0.5
            await self.check()
            await _wait(stop, self.period_s)

    async def close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.close(), 5.0)
            self.store = None
