"""The dashboard's SQL: its audit log, the history search, and reopening a failed run for a retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from certq.store.base import CERTIFICATION_COLUMNS, certification_record
from certq.store.records import Page


@dataclass(frozen=True)
class AuditEntry:
    """One operator action: who did what to which target, when, and what came of it."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    outcome: str
    remote_addr: str | None


@dataclass(frozen=True)
class HistoryFilter:
    """Search over every certification run PostgreSQL holds (not only what Redis still keeps)."""

    job_id: str | None = None
    """A run id (= the queue job id) or a request's job id, or the start of one."""
    model: str | None = None
    """Part of a model's name or apiModelId, or its exact id."""
    region: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def id_bounds(text: str) -> tuple[UUID, UUID] | None:
    """The UUID range a (prefix of a) UUID names, so the search uses the primary key and job index; None
    when `text` cannot start a UUID."""
    digits = text.strip().replace("-", "").lower()
    if not 1 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DashboardQueries:
    """Queries of the /admin/queues console over the store's pool (`DashboardQueries(store.pool)`)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    async def record_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str | None,
        detail: dict[str, Any],
        outcome: str,
        remote_addr: str | None,
    ) -> AuditEntry:
        row = await self._pool.fetchrow(
            """
            INSERT INTO dashboard_audit (actor, action, target, detail, outcome, remote_addr)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING id, at, actor, action, target, detail, outcome, remote_addr
            """,
            actor[:200], action[:100], None if target is None else target[:500], detail, outcome[:2000],
            remote_addr,
        )
        assert row is not None
        return AuditEntry(**dict(row))

    async def list_audit(self, *, page: int = 1, limit: int = 50) -> Page:
        """Newest first."""
        rows = await self._pool.fetch(
            """
            SELECT id, at, actor, action, target, detail, outcome, remote_addr, count(*) OVER () AS total
            FROM dashboard_audit ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2
            """,
            limit, (page - 1) * limit,
        )
        total = rows[0]["total"] if rows else await self._pool.fetchval("SELECT count(*) FROM dashboard_audit")
        items = [AuditEntry(**{k: v for k, v in dict(r).items() if k != "total"}) for r in rows]
        return Page(items=items, total=int(total), page=page, limit=limit)

    async def search_history(self, query: HistoryFilter, *, page: int = 1, limit: int = 25) -> Page:
        """Certification runs matching every given field, newest first, with their model's name."""
        bounds = id_bounds(query.job_id) if query.job_id else None
        if query.job_id and bounds is None:
            return Page(items=[], total=0, page=page, limit=limit)
        where = """
            ($1::uuid IS NULL OR c.id BETWEEN $1 AND $2 OR c.job_id BETWEEN $1 AND $2)
            AND ($3::text IS NULL OR m.name ILIKE $3 OR m.api_model_id ILIKE $3 OR m.id::text = $4)
            AND ($5::text IS NULL OR c.region = $5)
            AND ($6::text IS NULL OR c.status = $6)
            AND ($7::timestamptz IS NULL OR c.created_at >= $7)
            AND ($8::timestamptz IS NULL OR c.created_at <= $8)
        """
        model = query.model.strip() if query.model else None
        low, high = bounds if bounds is not None else (None, None)
        args = (
            low, high, None if model is None else _like(model), model, query.region or None, query.status or None,
            query.since, query.until,
        )
        rows = await self._pool.fetch(
            f"""
            SELECT {CERTIFICATION_COLUMNS}, count(*) OVER () AS total
            FROM certifications c JOIN models m ON m.id = c.model_id WHERE {where}
            ORDER BY c.created_at DESC, c.id LIMIT $9 OFFSET $10
            """,
            *args, limit, (page - 1) * limit,
        )
        if rows:
            total = rows[0]["total"]
        else:
            total = await self._pool.fetchval(
                f"SELECT count(*) FROM certifications c JOIN models m ON m.id = c.model_id WHERE {where}", *args
            )
        items = [certification_record({k: v for k, v in dict(r).items() if k != "total"}) for r in rows]
        return Page(items=items, total=int(total), page=page, limit=limit)

    async def reopen_failed(self, certification_id: UUID | str) -> bool:
        """Put a FAILED run back to QUEUED so a retried queue job runs it again; True when it changed.

        The parent job's counters take the failure back in the same statement, so they still add up
        and count each run once (its next final outcome counts it again).
        """
        changed = await self._pool.fetchval(
            """
            WITH reopened AS (
                UPDATE certifications SET status = 'QUEUED', passed = NULL, completed_at = NULL,
                    attempt_started_at = NULL, updated_at = now()
                WHERE id = $1 AND status = 'FAILED'
                RETURNING job_id
            ), parent AS (
                UPDATE certification_jobs j SET processed_models = j.processed_models - 1,
                    failure_count = j.failure_count - 1,
                    status = CASE WHEN j.started_at IS NULL THEN 'QUEUED' ELSE 'PROCESSING' END,
                    completed_at = NULL, updated_at = now()
                FROM reopened r WHERE j.id = r.job_id
                RETURNING j.id
            )
            SELECT count(*) FROM reopened
            """,
            UUID(str(certification_id)),
        )
        return bool(changed)

    async def certification_exists(self, certification_id: str) -> bool:
        try:
            cid = UUID(certification_id)
        except ValueError:
            return False
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM certifications WHERE id = $1)", cid))

    async def pair_history(self, model_id: UUID, region: str, *, limit: int = 50) -> list[Any]:
        """Finished runs of one model+region, oldest first (the order a chart reads)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM (
                SELECT {CERTIFICATION_COLUMNS} FROM certifications c JOIN models m ON m.id = c.model_id
                WHERE c.model_id = $1 AND c.region = $2 ORDER BY c.created_at DESC, c.id LIMIT $3
            ) recent ORDER BY created_at, id
            """,
            model_id, region, limit,
        )
        return [certification_record(r) for r in rows]
