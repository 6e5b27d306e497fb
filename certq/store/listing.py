"""The paged, filtered reads behind /history, /certifications and /stats."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from certq.store.base import CERTIFICATION_COLUMNS, JOB_COLUMNS, StoreBase, certification_record, job_record
from certq.store.records import CertificationRecord, Page


def _strip_total(row: Any) -> dict[str, Any]:
    values = dict(row)
    values.pop("total", None)
    return values


_VERDICT = "c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')"


def latest_verdicts_sql(*, by_model: bool) -> str:
    """The latest_certifications view, or the same skip scan kept to one model ($1), with model names.

    The view cannot take a model filter into its recursive scan, so one model's verdicts would still
    walk every pair; here the filter narrows each probe to that model's regions.
    """
    if not by_model:
        return (
            f"SELECT {CERTIFICATION_COLUMNS} FROM latest_certifications c JOIN models m ON m.id = c.model_id "
            "ORDER BY m.name, c.region"
        )
    return f"""
        WITH RECURSIVE pairs (region) AS (
            (SELECT c.region FROM certifications c WHERE {_VERDICT} AND c.model_id = $1 ORDER BY c.region LIMIT 1)
            UNION ALL
            SELECT next.region FROM pairs p CROSS JOIN LATERAL (
                SELECT c.region FROM certifications c
                WHERE {_VERDICT} AND c.model_id = $1 AND c.region > p.region ORDER BY c.region LIMIT 1
            ) next
        )
        SELECT {CERTIFICATION_COLUMNS} FROM pairs p CROSS JOIN LATERAL (
            SELECT * FROM certifications c WHERE c.model_id = $1 AND c.region = p.region AND {_VERDICT}
            ORDER BY c.completed_at DESC, c.id LIMIT 1
        ) c JOIN models m ON m.id = c.model_id
        ORDER BY m.name, c.region
    """


class ListingMixin(StoreBase):
    async def list_jobs(
        self, *, page: int = 1, limit: int = 20, status: str | None = None, type: str | None = None
    ) -> Page:
        """Jobs newest first (index jobs_created_idx / jobs_status_created_idx / jobs_type_created_idx)."""
        where = "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2)"
        rows = await self._pool.fetch(
            f"""
            SELECT {JOB_COLUMNS}, count(*) OVER () AS total FROM certification_jobs WHERE {where}
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4
            """,
            status,
            type,
            limit,
            (page - 1) * limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self._pool.fetchval(f"SELECT count(*) FROM certification_jobs WHERE {where}", status, type)
        )
        return Page(items=[job_record(_strip_total(r)) for r in rows], total=int(total), page=page, limit=limit)

    async def list_certifications(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        model_id: UUID | None = None,
        region: str | None = None,
        status: str | None = None,
    ) -> Page:
        """Certification runs newest first, with their model's name and apiModelId."""
        where = (
            "($1::uuid IS NULL OR c.model_id = $1) AND ($2::text IS NULL OR c.region = $2) "
            "AND ($3::text IS NULL OR c.status = $3)"
        )
        rows = await self._pool.fetch(
            f"""
            SELECT {CERTIFICATION_COLUMNS}, count(*) OVER () AS total
            FROM certifications c JOIN models m ON m.id = c.model_id WHERE {where}
            ORDER BY c.created_at DESC, c.id LIMIT $4 OFFSET $5
            """,
            model_id,
            region,
            status,
            limit,
            (page - 1) * limit,
        )
        total = (
            rows[0]["total"]
            if rows
            else await self._pool.fetchval(
                f"SELECT count(*) FROM certifications c WHERE {where}", model_id, region, status
            )
        )
        items = [certification_record(_strip_total(r)) for r in rows]
        return Page(items=items, total=int(total), page=page, limit=limit)

    async def latest_verdicts(self, model_id: UUID | None = None) -> list[CertificationRecord]:
        """The newest verdict per model+region (the latest_certifications view), by model name and region."""
        if model_id is None:
            rows = await self._pool.fetch(latest_verdicts_sql(by_model=False))
        else:
            rows = await self._pool.fetch(latest_verdicts_sql(by_model=True), model_id)
        return [certification_record(r) for r in rows]

    async def certification_counts(self) -> dict[str, Any]:
        """Counts by status, by region and status, and jobs by status, from one snapshot."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            by_status = await conn.fetch(
                "SELECT status, count(*) AS count FROM certifications GROUP BY status ORDER BY status"
            )
            by_region = await conn.fetch(
                "SELECT region, status, count(*) AS count FROM certifications GROUP BY region, status "
                "ORDER BY region, status"
            )
            jobs = await conn.fetch(
                "SELECT status, count(*) AS count FROM certification_jobs GROUP BY status ORDER BY status"
            )
        return {
            "by_status": {r["status"]: int(r["count"]) for r in by_status},
            "by_region": [{"region": r["region"], "status": r["status"], "count": int(r["count"])} for r in by_region],
            "jobs_by_status": {r["status"]: int(r["count"]) for r in jobs},
        }

    async def regions_in_use(self) -> dict[str, int]:
        """Region -> number of active models offering it."""
        rows = await self._pool.fetch(
            "SELECT region, count(*) AS count FROM models, unnest(regions) AS region WHERE is_active "
            "GROUP BY region ORDER BY region"
        )
        return {r["region"]: int(r["count"]) for r in rows}
