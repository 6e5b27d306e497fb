"""The connection pool and the row -> record conversions shared by the store's parts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias, TypeVar

import asyncpg
import asyncpg.pool
import orjson

from certq.store.idempotency import claim_key, save_answer
from certq.store.outages import DATABASE_OUTAGE_ERRORS
from certq.store.records import (
    CertificationRecord,
    CertificationRef,
    IdempotencyKey,
    JobRecord,
    ModelRecord,
    Replay,
)

T = TypeVar("T")
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
Row: TypeAlias = "asyncpg.Record | Mapping[str, Any]"
Render = Callable[[Any], tuple[int, dict[str, Any]]]

MODEL_COLUMNS = (
    "id, name, provider, api_model_id, base_url, api_key_env, regions, is_active, created_at, updated_at, "
    "served_model, validity_s, capabilities"
)
JOB_COLUMNS = (
    "id, type, status, priority, regions, model_ids, total_models, processed_models, success_count, warning_count, "
    "failure_count, cancelled_count, created_at, started_at, completed_at, updated_at"
)
CERTIFICATION_COLUMNS = (
    "c.id, c.job_id, c.model_id, c.region, c.status, c.priority, c.attempt, c.generation, c.attempt_log, c.passed, "
    "c.score, c.rating, c.test_results, c.metrics, c.error_category, c.error_message, c.duration_ms, c.created_at, "
    "c.started_at, c.completed_at, c.updated_at, c.valid_until, c.capabilities, m.name AS model_name, m.api_model_id"
)
REF_COLUMNS = "id, job_id, model_id, region, priority, status, updated_at"

# A health probe's failures: the outage errors (asyncpg's InternalClientError on a connection the server
# ended among them) and any refusal by the server.
_UNANSWERED: tuple[type[BaseException], ...] = (*DATABASE_OUTAGE_ERRORS, asyncpg.PostgresError)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _reset_connection(conn: Conn) -> None:
    # The store never changes session state (no SET, LISTEN, cursors or session advisory locks), so
    # asyncpg's default reset query on every release is a round trip that buys nothing.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class StoreBase:
    """Holds the pool; the store's parts (models, jobs, runs, stats) are mixins over it."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @classmethod
    async def create_pool(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[asyncpg.Record]:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_reset_connection,
            command_timeout=30,
        )
        return pool

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        return self._pool

    async def close(self) -> None:
        await self._pool.close()

    async def _transact(
        self,
        work: Callable[[Conn], Awaitable[T]],
        idempotency: IdempotencyKey | None = None,
        render: Render | None = None,
    ) -> T | Replay:
        """Run `work` in one transaction; with a key, return the stored answer instead of repeating it."""
        async with self._pool.acquire() as conn, conn.transaction():
            if idempotency is not None:
                replay = await claim_key(conn, idempotency)
                if replay is not None:
                    return replay
            result = await work(conn)
            if idempotency is not None:
                if render is None:
                    raise ValueError("an idempotency key needs a render function for the stored answer")
                status_code, body = render(result)
                await save_answer(conn, idempotency, status_code, body)
            return result

    async def ping(self) -> bool:
        """Whether PostgreSQL answers a trivial query; never raises."""
        try:
            async with self._pool.acquire(timeout=2) as conn:
                return bool(await conn.fetchval("SELECT true", timeout=2))
        except _UNANSWERED:
            return False

    async def takes_writes(self) -> bool:
        """Whether PostgreSQL accepts a write now; never raises. A read-only or recovering server answers
        `ping` but refuses this: an UPDATE that matches no row, so it changes nothing and writes no WAL."""
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.execute("UPDATE certifications SET updated_at = updated_at WHERE false", timeout=2)
        except _UNANSWERED:
            return False
        return True


def model_record(row: Row) -> ModelRecord:
    return ModelRecord(**dict(row))


def job_record(row: Row) -> JobRecord:
    return JobRecord(**dict(row))


def certification_record(row: Row) -> CertificationRecord:
    return CertificationRecord(**dict(row))


def ref_record(row: Row) -> CertificationRef:
    return CertificationRef(**dict(row))
