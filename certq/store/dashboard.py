"""The dashboard's SQL: its audit log, the history search, and reopening a failed run for a retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from certq.store.base import CERTIFICATION_COLUMNS, certification_record
from certq.store.records import CertificationRecord, Page


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


@dataclass(frozen=True)
class MatrixCell:
    """The latest verdict of one model in one region."""

    model_id: UUID
    region: str
    id: UUID
    status: str
    rating: str | None
    score: float | None
    completed_at: datetime | None


COUNT_CAP = 10_000
"""History totals are exact up to this many matches, then shown as "10000+"."""


@dataclass(frozen=True)
class HistoryPage:
    items: list[CertificationRecord]
    total: int
    capped: bool
    """More than `total` runs match (the count stopped at COUNT_CAP)."""
    page: int
    limit: int


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


class RunSuperseded(Exception):
    """A FAILED run cannot be reopened: another run of its model+region is pending, queued or running."""

    def __init__(self, certification_id: UUID, live_id: UUID | None) -> None:
        self.certification_id = certification_id
        self.live_id = live_id
        newer = "" if live_id is None else f" ({live_id})"
        super().__init__(f"a newer certification of this model+region is already queued or running{newer}")


_LIVE_SIBLING = """
    SELECT live.id FROM certifications run JOIN certifications live
        ON live.model_id = run.model_id AND live.region = run.region AND live.id <> run.id
        AND live.status IN ('PENDING', 'QUEUED', 'PROCESSING')
    WHERE run.id = $1
    LIMIT 1
"""

_REOPEN = """
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
"""


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
            actor[:200],
            action[:100],
            None if target is None else target[:500],
            detail,
            outcome[:2000],
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
            limit,
            (page - 1) * limit,
        )
        total = rows[0]["total"] if rows else await self._pool.fetchval("SELECT count(*) FROM dashboard_audit")
        items = [AuditEntry(**{k: v for k, v in dict(r).items() if k != "total"}) for r in rows]
        return Page(items=items, total=int(total), page=page, limit=limit)

    async def search_history(self, query: HistoryFilter, *, page: int = 1, limit: int = 25) -> HistoryPage:
        """Certification runs matching every given field, newest first, with their model's name.

        Only the given filters enter the SQL, so each search gets a plan for its own shape (a catch-all
        `$1 IS NULL OR ...` statement would be planned once, generically, and scan). The total is
        counted up to COUNT_CAP: an exact count of a million rows would cost more than the page.
        """
        clauses: list[str] = []
        args: list[Any] = []
        hits = ""

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.job_id:
            bounds = id_bounds(query.job_id)
            if bounds is None:
                return HistoryPage(items=[], total=0, capped=False, page=page, limit=limit)
            low, high = arg(bounds[0]), arg(bounds[1])
            # The ids first (primary key and job index), then the rest: with `OR` in the WHERE the planner
            # walks the created_at index for the LIMIT and filters the whole history.
            hits = (
                f"WITH hits AS MATERIALIZED (SELECT id FROM certifications WHERE id BETWEEN {low} AND {high} "
                f"UNION SELECT id FROM certifications WHERE job_id BETWEEN {low} AND {high}) "
            )
            clauses.append("c.id IN (SELECT id FROM hits)")
        if query.model and query.model.strip():
            model = query.model.strip()
            like, exact = arg(_like(model)), arg(model)
            clauses.append(f"(m.name ILIKE {like} OR m.api_model_id ILIKE {like} OR m.id::text = {exact})")
        if query.region:
            clauses.append(f"c.region = {arg(query.region)}")
        if query.status:
            clauses.append(f"c.status = {arg(query.status)}")
        if query.since is not None:
            clauses.append(f"c.created_at >= {arg(query.since)}")
        if query.until is not None:
            clauses.append(f"c.created_at <= {arg(query.until)}")
        where = " AND ".join(clauses) or "true"
        source = f"certifications c JOIN models m ON m.id = c.model_id WHERE {where}"
        # A generic plan cannot see how narrow the bounds are and would walk the created_at index
        # through the whole history; each search is planned for its own values instead.
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await conn.fetch(
                f"{hits}SELECT {CERTIFICATION_COLUMNS} FROM {source} ORDER BY c.created_at DESC, c.id "
                f"LIMIT {arg(limit)} OFFSET {arg((page - 1) * limit)}",
                *args,
            )
            counted = await conn.fetchval(
                f"{hits}SELECT count(*) FROM (SELECT 1 FROM {source} LIMIT {COUNT_CAP + 1}) AS matches", *args[:-2]
            )
        total = min(int(counted), COUNT_CAP)
        return HistoryPage(
            items=[certification_record(r) for r in rows],
            total=total,
            capped=int(counted) > COUNT_CAP,
            page=page,
            limit=limit,
        )

    async def reopen_failed(self, certification_id: UUID | str) -> bool:
        """Put a FAILED run back to QUEUED so a retried queue job runs it again; True when it changed.

        The parent job's counters take the failure back in the same statement, so they still add up
        and count each run once (its next final outcome counts it again). RunSuperseded when a newer
        run of the same model+region is live: reopening would break one-live-run-per-pair.
        """
        cid = UUID(str(certification_id))
        live = await self._pool.fetchval(_LIVE_SIBLING, cid)
        if live is not None:
            raise RunSuperseded(cid, live)
        try:
            changed = await self._pool.fetchval(_REOPEN, cid)
        except asyncpg.UniqueViolationError:  # a newer run went live between the check and the update
            raise RunSuperseded(cid, await self._pool.fetchval(_LIVE_SIBLING, cid)) from None
        return bool(changed)

    async def certification_exists(self, certification_id: str) -> bool:
        try:
            cid = UUID(certification_id)
        except ValueError:
            return False
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM certifications WHERE id = $1)", cid))

    async def latest_matrix(self) -> list[MatrixCell]:
        """The newest verdict of every active model in every region it offers (pairs never certified are
        left out). One index probe per pair (certifications_verdict_idx), so it costs models x regions,
        not the size of the history."""
        rows = await self._pool.fetch(
            """
            SELECT m.id AS model_id, r.region, v.id, v.status, v.rating, v.score, v.completed_at
            FROM models m CROSS JOIN LATERAL unnest(m.regions) AS r(region)
            JOIN LATERAL (
                SELECT c.id, c.status, c.rating, c.score, c.completed_at FROM certifications c
                WHERE c.model_id = m.id AND c.region = r.region
                    AND c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
                ORDER BY c.completed_at DESC LIMIT 1
            ) v ON true
            WHERE m.is_active
            """
        )
        return [MatrixCell(**dict(r)) for r in rows]

    async def pair_history(self, model_id: UUID, region: str, *, limit: int = 50) -> list[Any]:
        """Finished runs of one model+region, oldest first (the order a chart reads)."""
        rows = await self._pool.fetch(
            f"""
            SELECT * FROM (
                SELECT {CERTIFICATION_COLUMNS} FROM certifications c JOIN models m ON m.id = c.model_id
                WHERE c.model_id = $1 AND c.region = $2 ORDER BY c.created_at DESC, c.id LIMIT $3
            ) recent ORDER BY created_at, id
            """,
            model_id,
            region,
            limit,
        )
        return [certification_record(r) for r in rows]
