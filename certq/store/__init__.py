"""All of certq's SQL: the schema, and the Store (an asyncpg pool) every process reads and writes through."""

from __future__ import annotations

from certq.store.drift import DriftEvent, DriftMixin
from certq.store.idempotency import purge_keys
from certq.store.jobs import JobsMixin
from certq.store.listing import ListingMixin
from certq.store.migrations import SCHEMA_VERSION, apply_schema, current_version, schema_sql
from certq.store.models import ModelsMixin
from certq.store.records import (
    CERTIFICATION_STATUSES,
    ERROR_CATEGORIES,
    FINAL_STATUSES,
    JOB_STATUSES,
    JOB_TYPES,
    LIVE_STATUSES,
    VERDICT_STATUSES,
    CancelOutcome,
    CertificationRecord,
    CertificationRef,
    CertificationStatus,
    IdempotencyKey,
    JobCreated,
    JobRecord,
    JobStatus,
    JobType,
    ModelRecord,
    Page,
    Replay,
    SkippedPair,
)
from certq.store.runs import DEFAULT_VALIDITY_S, RunsMixin
from certq.store.schedules import FiredSlot, ScheduleRecord, SchedulesMixin, ScheduleSpec, SlotRecord
from certq.store.standing import STANDINGS, Standing, StandingMixin, StandingRecord


class Store(ModelsMixin, JobsMixin, RunsMixin, ListingMixin, StandingMixin, DriftMixin, SchedulesMixin):
    """PostgreSQL access for the API, the worker and the CLI. Create with `await Store.connect(dsn)`."""

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Store:
        return cls(await cls.create_pool(dsn, min_size=min_size, max_size=max_size))

    async def migrate(self) -> int:
        """Apply schema.sql (idempotent, concurrent-safe); return the schema version."""
        async with self._pool.acquire() as conn:
            return await apply_schema(conn)

    async def schema_version(self) -> int | None:
        async with self._pool.acquire() as conn:
            return await current_version(conn)

    async def purge_idempotency_keys(self, older_than_s: float = 86_400.0) -> int:
        async with self._pool.acquire() as conn:
            return await purge_keys(conn, older_than_s)


__all__ = [
    "CERTIFICATION_STATUSES",
    "DEFAULT_VALIDITY_S",
    "ERROR_CATEGORIES",
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "JOB_TYPES",
    "LIVE_STATUSES",
    "FiredSlot",
    "ScheduleRecord",
    "ScheduleSpec",
    "SlotRecord",
    "SCHEMA_VERSION",
    "STANDINGS",
    "VERDICT_STATUSES",
    "CancelOutcome",
    "CertificationRecord",
    "CertificationRef",
    "CertificationStatus",
    "DriftEvent",
    "IdempotencyKey",
    "JobCreated",
    "JobRecord",
    "JobStatus",
    "JobType",
    "ModelRecord",
    "Page",
    "Replay",
    "SkippedPair",
    "Standing",
    "StandingRecord",
    "Store",
    "schema_sql",
]
