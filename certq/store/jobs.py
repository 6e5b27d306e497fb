"""Certification requests (parent jobs) and their runs: creation, cancellation, reading."""

from __future__ import annotations

from collections.abc import Sequence
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
            job_id = await conn.fetchval(
                """
                INSERT INTO certification_jobs (type, priority, regions, model_ids, total_models)
                VALUES ($1, $2, $3, $4, $5) RETURNING id
                """,
                type, priority, regions, model_ids, len(unique_pairs),
            )
            inserted = await conn.fetch(
                f"""
                INSERT INTO certifications (job_id, model_id, region, priority)
                SELECT $1, p.model_id, p.region, $4 FROM unnest($2::uuid[], $3::text[]) AS p(model_id, region)
                ON CONFLICT DO NOTHING
                RETURNING {REF_COLUMNS}
                """,
                job_id, [m for m, _ in unique_pairs], [r for _, r in unique_pairs], priority,
            )
            refs = [ref_record(row) for row in inserted]
            skipped: list[SkippedPair] = []
            if len(refs) < len(unique_pairs):
                created = {(ref.model_id, ref.region) for ref in refs}
                missing = [pair for pair in unique_pairs if pair not in created]
                skipped = await _live_runs(conn, missing)
                if not refs:
                    await conn.execute("DELETE FROM certification_jobs WHERE id = $1", job_id)
                    return JobCreated(job=None, certifications=[], skipped=skipped)
                await conn.execute(
                    "UPDATE certification_jobs SET total_models = $2 WHERE id = $1", job_id, len(refs)
                )
            row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM certification_jobs WHERE id = $1", job_id)
            assert row is not None
            return JobCreated(job=job_record(row), certifications=refs, skipped=skipped)

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
                FROM (SELECT id, status FROM certifications WHERE job_id = $1 AND status IN {_LIVE} FOR UPDATE) old
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
                jid, len(rows),
            )
            assert row is not None
            finished = not rows and row["status"] != "CANCELLED"
            cancelled = [ref_record(r) for r in rows]
            return CancelOutcome(job=job_record(row), cancelled=cancelled, already_finished=finished)


async def _live_runs(conn: Conn, pairs: Sequence[tuple[UUID, str]]) -> list[SkippedPair]:
    rows = await conn.fetch(
        f"""
        SELECT c.model_id, c.region, c.job_id, c.id, c.status
        FROM certifications c JOIN unnest($1::uuid[], $2::text[]) AS p(model_id, region)
          ON c.model_id = p.model_id AND c.region = p.region
        WHERE c.status IN {_LIVE}
        """,
        [m for m, _ in pairs], [r for _, r in pairs],
    )
    return [
        SkippedPair(model_id=r["model_id"], region=r["region"], job_id=r["job_id"], certification_id=r["id"],
                    status=r["status"])
        for r in rows
    ]
