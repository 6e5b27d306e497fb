"""Certification requests (parent jobs) and their runs: creation, cancellation, reading."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from certq.store.base import (
    CERTIFICATION_COLUMNS,
    JOB_COLUMNS,
    REF_COLUMNS,
    Conn,
    Render,
    StoreBase,
    certification_record,
    job_record,
    ref_record,
)
from certq.store.records import (
    CancelOutcome,
    CertificationRecord,
    IdempotencyKey,
    JobCreated,
    JobRecord,
    JobType,
    Priority,
    Replay,
    SkippedPair,
)

_LIVE = "('PENDING', 'QUEUED', 'PROCESSING')"


class JobsMixin(StoreBase):
    async def create_job(
        self,
        *,
        type: JobType,
        pairs: Sequence[tuple[UUID, str]],
        priority: Priority = "normal",
        idempotency: IdempotencyKey | None = None,
        render: Render | None = None,
    ) -> JobCreated | Replay:
        """Record a request and one QUEUED run per (model, region) pair, in one transaction.

        Pairs that already have a live run (any job) are not duplicated: they come back in `skipped`.
        When every pair is skipped no job is created (`job` is None). Enqueueing is the caller's
        next step, after this commit (the reconciler covers a crash in between).
        """
        unique_pairs = list(dict.fromkeys(pairs))
        model_ids = list(dict.fromkeys(m for m, _ in unique_pairs))
        regions = list(dict.fromkeys(r for _, r in unique_pairs))

        async def work(conn: Conn) -> JobCreated:
            for _ in range(5):
                created = await _insert_job(conn, type, priority, regions, model_ids, unique_pairs)
                if created is not None:
                    return created
            raise RuntimeError("certifications kept finishing while being reported as live; try again")

        if idempotency is None:
            # Without a key, the usual case is one atomic statement: no transaction round trips.
            async with self._pool.acquire() as conn:
                return await work(conn)
        return await self._transact(work, idempotency, render)

    async def get_job(self, job_id: UUID | str) -> JobRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM certification_jobs WHERE id = $1", UUID(str(job_id))
        )
        return None if row is None else job_record(row)

    async def job_certifications(self, job_id: UUID | str) -> list[CertificationRecord]:
        rows = await self._pool.fetch(
            f"""
            SELECT {CERTIFICATION_COLUMNS} FROM certifications c JOIN models m ON m.id = c.model_id
            WHERE c.job_id = $1 ORDER BY c.created_at, m.name, c.region
            """,
            UUID(str(job_id)),
        )
        return [certification_record(row) for row in rows]

    async def live_certification(self, model_id: UUID, region: str) -> SkippedPair | None:
        """The pending, queued or running run of this model+region, if any."""
        async with self._pool.acquire() as conn:
            found = await _live_runs(conn, [(model_id, region)])
        return found[0] if found else None

    async def cancel_job(self, job_id: UUID | str) -> CancelOutcome | None:
        """End every unfinished run of the job CANCELLED and the job with them; None for an unknown job.

        A finished job is returned as it is (`already_finished`). The caller then removes or flags
        the cancelled runs' queue jobs; a worker that still runs one finds its writes rejected.
        Runs are locked before the job row, the order the worker's writes use, so the two never deadlock.
        """
        jid = UUID(str(job_id))
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM certification_jobs WHERE id = $1", jid)
            if current is None:
                return None
            if current["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return CancelOutcome(job=job_record(current), cancelled=[], already_finished=True)
            rows = await conn.fetch(
                f"""
                UPDATE certifications c SET status = 'CANCELLED', completed_at = now(), updated_at = now(),
                    attempt_started_at = NULL,
                    attempt_log = CASE WHEN c.status = 'PROCESSING' THEN c.attempt_log || jsonb_build_array(
                        jsonb_build_object('attempt', c.attempt, 'generation', c.generation, 'outcome', 'CANCELLED',
                        'startedAt', c.attempt_started_at, 'finishedAt', now())) ELSE c.attempt_log END
                FROM (SELECT id, status FROM certifications WHERE job_id = $1 AND status IN {_LIVE}
                      ORDER BY id FOR UPDATE) old
                WHERE c.id = old.id AND c.status IN {_LIVE}
                RETURNING c.id, c.job_id, c.model_id, c.region, c.priority, old.status, c.updated_at
                """,
                jid,
            )
            row = await conn.fetchrow(
                f"""
                UPDATE certification_jobs SET
                    status = CASE WHEN status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND $2 = 0 THEN status
                                  ELSE 'CANCELLED' END,
                    processed_models = processed_models + $2, cancelled_count = cancelled_count + $2,
                    completed_at = COALESCE(completed_at, now()), updated_at = now()
                WHERE id = $1 RETURNING {JOB_COLUMNS}
                """,
                jid,
                len(rows),
            )
            assert row is not None
            finished = not rows and row["status"] != "CANCELLED"
            cancelled = [ref_record(r) for r in rows]
            return CancelOutcome(job=job_record(row), cancelled=cancelled, already_finished=finished)


async def _insert_job(
    conn: Conn,
    type: JobType,
    priority: Priority,
    regions: list[str],
    model_ids: list[UUID],
    pairs: list[tuple[UUID, str]],
) -> JobCreated | None:
    """Insert the job and a run per pair that has no live run; None when the answer raced with runs
    finishing (the caller tries again)."""
    row = await conn.fetchrow(
        f"""
        WITH pairs AS (
            SELECT p.model_id, p.region, p.n
            FROM unnest($5::uuid[], $6::text[]) WITH ORDINALITY AS p(model_id, region, n)
            WHERE NOT EXISTS (SELECT 1 FROM certifications c WHERE c.model_id = p.model_id AND c.region = p.region
                              AND c.status IN {_LIVE})
        ), job AS (
            INSERT INTO certification_jobs (type, priority, regions, model_ids, total_models)
            SELECT $1, $2, $3, $4, count(*) FROM pairs HAVING count(*) > 0
            RETURNING {JOB_COLUMNS}
        ), runs AS (
            INSERT INTO certifications (job_id, model_id, region, priority)
            SELECT job.id, p.model_id, p.region, $2 FROM job, pairs p ORDER BY p.n
            ON CONFLICT DO NOTHING
            RETURNING {REF_COLUMNS}
        )
        SELECT (SELECT row_to_json(job) FROM job) AS job, (SELECT coalesce(json_agg(runs), '[]') FROM runs) AS runs
        """,
        type,
        priority,
        regions,
        model_ids,
        [m for m, _ in pairs],
        [r for _, r in pairs],
    )
    assert row is not None
    order = {pair: index for index, pair in enumerate(pairs)}
    refs = sorted((ref_record(_from_json(r)) for r in row["runs"]), key=lambda r: order[(r.model_id, r.region)])
    job = None if row["job"] is None else job_record(_from_json(row["job"]))
    created = {(ref.model_id, ref.region) for ref in refs}
    missing = [pair for pair in pairs if pair not in created]
    skipped = await _live_runs(conn, missing) if missing else []
    if job is not None and len(refs) < job.total_models:
        # A concurrent request created some of these runs after the check above.
        if not refs:
            await conn.execute("DELETE FROM certification_jobs WHERE id = $1", job.id)
            job = None
        else:
            updated = await conn.fetchrow(
                f"""
                UPDATE certification_jobs SET total_models = $2,
                    status = CASE WHEN processed_models < $2 OR status IN ('COMPLETED', 'FAILED', 'CANCELLED')
                                  THEN status
                                  WHEN failure_count = $2 THEN 'FAILED' WHEN cancelled_count = $2 THEN 'CANCELLED'
                                  ELSE 'COMPLETED' END,
                    completed_at = CASE WHEN processed_models >= $2 THEN COALESCE(completed_at, now())
                                        ELSE completed_at END
                WHERE id = $1 RETURNING {JOB_COLUMNS}
                """,
                job.id,
                len(refs),
            )
            assert updated is not None
            job = job_record(updated)
    if job is None and not skipped:
        return None
    return JobCreated(job=job, certifications=refs if job is not None else [], skipped=skipped)


def _from_json(values: dict[str, Any]) -> dict[str, Any]:
    """A row that came back through row_to_json: uuids, timestamps and uuid[] as Python types again."""
    out = dict(values)
    for key, value in values.items():
        if value is None:
            continue
        if key in ("id", "job_id", "model_id"):
            out[key] = UUID(value)
        elif key == "model_ids":
            out[key] = [UUID(v) for v in value]
        elif key.endswith("_at"):
            out[key] = datetime.fromisoformat(value)
    return out


async def _live_runs(conn: Conn, pairs: Sequence[tuple[UUID, str]]) -> list[SkippedPair]:
    rows = await conn.fetch(
        f"""
        SELECT c.model_id, c.region, c.job_id, c.id, c.status
        FROM certifications c JOIN unnest($1::uuid[], $2::text[]) AS p(model_id, region)
          ON c.model_id = p.model_id AND c.region = p.region
        WHERE c.status IN {_LIVE}
        """,
        [m for m, _ in pairs],
        [r for _, r in pairs],
    )
    return [
        SkippedPair(
            model_id=r["model_id"], region=r["region"], job_id=r["job_id"], certification_id=r["id"], status=r["status"]
        )
        for r in rows
    ]
