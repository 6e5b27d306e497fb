"""The worker's writes on a certification run: every one fenced by the attempt and safe to repeat.

A worker that lost its lease (stalled, crashed, partitioned) may come back late; the `attempt`
column says which attempt owns the row, so its writes match nothing. Counters of the parent job
move in the same statement that moves a run to a final status, and only when that status changes,
so each run is counted once however many attempts it took.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from certq.store.base import CERTIFICATION_COLUMNS, REF_COLUMNS, StoreBase, certification_record, ref_record
from certq.store.records import (
    ERROR_CATEGORIES,
    VERDICT_STATUSES,
    CertificationRecord,
    CertificationRef,
)

_LIVE = "('PENDING', 'QUEUED', 'PROCESSING')"

# Appends the outcome of the attempt that owns the row to attempt_log. $3 outcome, $4 category, $5 message.
_LOG_OUTCOME = """attempt_log = attempt_log || jsonb_build_array(jsonb_build_object(
    'attempt', attempt, 'generation', generation, 'outcome', $3::text, 'errorCategory', $4::text,
    'errorMessage', $5::text, 'startedAt', attempt_started_at, 'finishedAt', now()))"""

# A verdict's entry also carries that attempt's own run time ($11, the verdict's durationMs).
_LOG_VERDICT = """attempt_log = attempt_log || jsonb_build_array(jsonb_build_object(
    'attempt', attempt, 'generation', generation, 'outcome', $3::text, 'errorCategory', $4::text,
    'errorMessage', $5::text, 'startedAt', attempt_started_at, 'finishedAt', now(), 'durationMs', $11::int))"""

DEFAULT_VALIDITY_S = 7 * 86_400
"""How long a verdict stands when neither the model nor CERTIFICATION_VALIDITY says otherwise."""

_LOG_LOST = """CASE WHEN status = 'PROCESSING' THEN attempt_log || jsonb_build_array(jsonb_build_object(
    'attempt', attempt, 'generation', generation, 'outcome', 'LOST', 'startedAt', attempt_started_at,
    'finishedAt', now())) ELSE attempt_log END"""

_LOG_CANCELLED = """attempt_log = CASE WHEN status = 'PROCESSING' THEN attempt_log || jsonb_build_array(
    jsonb_build_object('attempt', attempt, 'generation', generation, 'outcome', 'CANCELLED',
    'startedAt', attempt_started_at, 'finishedAt', now())) ELSE attempt_log END"""

# Moves the parent's counters for the run finalised by the `done` CTE (which returns job_id, status).
_COUNT_OUTCOME = """
UPDATE certification_jobs j SET
    processed_models = j.processed_models + 1,
    success_count = j.success_count + (d.status = 'CERTIFIED')::int,
    warning_count = j.warning_count + (d.status = 'QUALITY_WARNING')::int,
    failure_count = j.failure_count + (d.status = 'FAILED')::int,
    cancelled_count = j.cancelled_count + (d.status = 'CANCELLED')::int,
    status = CASE
        WHEN j.status IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN j.status
        WHEN j.processed_models + 1 < j.total_models THEN 'PROCESSING'
        WHEN j.failure_count + (d.status = 'FAILED')::int = j.total_models THEN 'FAILED'
        WHEN j.cancelled_count + (d.status = 'CANCELLED')::int = j.total_models THEN 'CANCELLED'
        ELSE 'COMPLETED' END,
    started_at = COALESCE(j.started_at, now()),
    completed_at = CASE WHEN j.processed_models + 1 >= j.total_models THEN COALESCE(j.completed_at, now())
                        ELSE j.completed_at END,
    updated_at = now()
FROM done d WHERE j.id = d.job_id
RETURNING j.id
"""


def _clean(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: a model's answer quoted in a probe detail may."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _capabilities(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict's capability findings (`capabilities`, or `metrics.capabilities`), or None when it has none."""
    found = verdict.get("capabilities")
    if not isinstance(found, dict):
        found = (verdict.get("metrics") or {}).get("capabilities")
    return _clean(dict(found)) if isinstance(found, dict) else None


def _category(category: str | None) -> str | None:
    if category is None or category in ERROR_CATEGORIES:
        return category
    return "INTERNAL_ERROR"


def _message(message: str | None) -> str | None:
    return None if message is None else _clean(message[:4000])


class RunsMixin(StoreBase):
    async def get_certification(self, certification_id: UUID | str) -> CertificationRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {CERTIFICATION_COLUMNS} FROM certifications c JOIN models m ON m.id = c.model_id WHERE c.id = $1",
            UUID(str(certification_id)),
        )
        return None if row is None else certification_record(row)

    async def begin_attempt(self, certification_id: UUID | str, attempt: int) -> bool:
        """Mark the run PROCESSING for `attempt`; False when it is cancelled, finished or a newer attempt owns it.

        Repeating the call for the attempt that owns the run returns True again. An attempt that was
        running and never reported (its worker died) is logged as LOST.
        """
        cid = UUID(str(certification_id))
        async with self._pool.acquire() as conn:
            began = await conn.fetchval(
                f"""
                WITH began AS (
                    UPDATE certifications SET attempt_log = {_LOG_LOST}, status = 'PROCESSING', attempt = $2,
                        attempt_started_at = now(), started_at = COALESCE(started_at, now()), updated_at = now()
                    WHERE id = $1 AND status IN {_LIVE} AND attempt < $2
                    RETURNING job_id
                ), parent AS (
                    UPDATE certification_jobs j SET status = 'PROCESSING', started_at = COALESCE(j.started_at, now()),
                        updated_at = now()
                    FROM began b WHERE j.id = b.job_id AND j.status = 'QUEUED'
                    RETURNING j.id
                )
                SELECT count(*) FROM began
                """,
                cid,
                attempt,
            )
            if began:
                return True
            row = await conn.fetchrow("SELECT status, attempt FROM certifications WHERE id = $1", cid)
        return row is not None and row["status"] == "PROCESSING" and row["attempt"] == attempt

    async def record_attempt_failure(
        self,
        certification_id: UUID | str,
        attempt: int,
        category: str | None,
        message: str | None,
        final: bool,
    ) -> bool:
        """Log a failed attempt. Not final: back to QUEUED (the queue retries it). Final: FAILED, counted once.

        Returns True when recorded now or already recorded by an earlier call for the same attempt;
        False when the attempt no longer owns the run (stale worker, cancelled, reconciled).
        """
        cid = UUID(str(certification_id))
        category = _category(category)
        message = _message(message)
        async with self._pool.acquire() as conn:
            if final:
                changed = await conn.fetchval(
                    f"""
                    WITH done AS (
                        UPDATE certifications SET {_LOG_OUTCOME}, status = 'FAILED', passed = false,
                            error_category = $4, error_message = $5, completed_at = now(), updated_at = now(),
                            duration_ms = COALESCE(duration_ms,
                                (extract(epoch FROM now() - started_at) * 1000)::int)
                        WHERE id = $1 AND attempt = $2 AND status IN {_LIVE}
                        RETURNING job_id, status
                    ), counted AS ({_COUNT_OUTCOME})
                    SELECT count(*) FROM done
                    """,
                    cid,
                    attempt,
                    "FAILED",
                    category,
                    message,
                )
                if changed:
                    return True
                row = await conn.fetchrow("SELECT status, attempt FROM certifications WHERE id = $1", cid)
                return row is not None and row["status"] == "FAILED" and row["attempt"] == attempt
            changed = await conn.fetchval(
                f"""
                UPDATE certifications SET {_LOG_OUTCOME}, status = 'QUEUED', error_category = $4, error_message = $5,
                    attempt_started_at = NULL, updated_at = now()
                WHERE id = $1 AND attempt = $2 AND status = 'PROCESSING'
                RETURNING true
                """,
                cid,
                attempt,
                "RETRY",
                category,
                message,
            )
            if changed:
                return True
            row = await conn.fetchrow("SELECT status, attempt FROM certifications WHERE id = $1", cid)
        return row is not None and row["status"] == "QUEUED" and row["attempt"] == attempt

    async def finish_certification(
        self,
        certification_id: UUID | str,
        attempt: int,
        verdict: dict[str, Any],
        *,
        validity_s: int = DEFAULT_VALIDITY_S,
    ) -> bool:
        """Store the verdict (Verdict.to_json(): camelCase) of `attempt`; count it once on the parent job.

        The verdict is valid for the model's own validity, else `validity_s`, from now. `duration_ms`
        becomes the wall time since the first attempt started; the attempt's own run time goes into its
        attempt-log entry. Returns True when stored now or already stored by this attempt; False when the
        attempt no longer owns the run or the run was cancelled or finished by someone else.
        """
        cid = UUID(str(certification_id))
        status = verdict.get("status")
        if status not in VERDICT_STATUSES:
            raise ValueError(f"verdict status must be one of {VERDICT_STATUSES}, not {status!r}")
        category = _category(verdict.get("errorCategory"))
        message = _message(verdict.get("errorMessage"))
        score = verdict.get("score")
        duration = verdict.get("durationMs")
        async with self._pool.acquire() as conn:
            changed = await conn.fetchval(
                f"""
                WITH done AS (
                    UPDATE certifications SET {_LOG_VERDICT}, status = $3, passed = $6, score = $7, rating = $8,
                        test_results = $9, metrics = $10, capabilities = $13, error_category = $4, error_message = $5,
                        duration_ms = COALESCE((extract(epoch FROM now() - started_at) * 1000)::int, $11),
                        valid_until = now() + make_interval(secs => COALESCE(
                            (SELECT m.validity_s FROM models m WHERE m.id = certifications.model_id), $12)),
                        completed_at = now(), updated_at = now()
                    WHERE id = $1 AND attempt = $2 AND status IN {_LIVE}
                    RETURNING job_id, status
                ), counted AS ({_COUNT_OUTCOME})
                SELECT count(*) FROM done
                """,
                cid,
                attempt,
                status,
                category,
                message,
                status == "CERTIFIED" and bool(verdict.get("passed", True)),
                None if score is None else max(0.0, min(100.0, float(score))),
                verdict.get("rating"),
                _clean(list(verdict.get("testResults") or [])),
                _clean(dict(verdict.get("metrics") or {})),
                None if duration is None else max(0, int(duration)),
                int(validity_s),
                _capabilities(verdict),
            )
            if changed:
                return True
            row = await conn.fetchrow("SELECT status, attempt FROM certifications WHERE id = $1", cid)
        return row is not None and row["status"] == status and row["attempt"] == attempt

    async def mark_cancelled(self, certification_id: UUID | str) -> bool:
        """End the run CANCELLED unless it already has a final status; True when it changed now."""
        async with self._pool.acquire() as conn:
            changed = await conn.fetchval(
                f"""
                WITH done AS (
                    UPDATE certifications SET {_LOG_CANCELLED},
                        status = 'CANCELLED', completed_at = now(), updated_at = now(), attempt_started_at = NULL
                    WHERE id = $1 AND status IN {_LIVE}
                    RETURNING job_id, status
                ), counted AS ({_COUNT_OUTCOME})
                SELECT count(*) FROM done
                """,
                UUID(str(certification_id)),
            )
        return bool(changed)

    async def close_certification(self, certification_id: UUID | str, category: str, message: str) -> bool:
        """End a live run FAILED whatever attempt owns it (the reconciler, for a queue job that ended
        without a recorded outcome); True when it changed now."""
        changed = await self._pool.fetchval(
            f"""
            WITH done AS (
                UPDATE certifications SET {_LOG_OUTCOME}, status = 'FAILED', passed = false, error_category = $4,
                    error_message = $5, completed_at = now(), updated_at = now(), attempt_started_at = NULL
                WHERE id = $1 AND status IN {_LIVE} AND $2::int IS NULL
                RETURNING job_id, status
            ), counted AS ({_COUNT_OUTCOME})
            SELECT count(*) FROM done
            """,
            UUID(str(certification_id)),
            None,
            "FAILED",
            _category(category),
            _message(message),
        )
        return bool(changed)

    async def unfinished_certifications(
        self, *, older_than_s: float = 30.0, limit: int = 1000
    ) -> list[CertificationRef]:
        """Live runs untouched for `older_than_s` seconds, oldest first: candidates for the reconciler."""
        rows = await self._pool.fetch(
            f"""
            SELECT {REF_COLUMNS} FROM certifications
            WHERE status IN {_LIVE} AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT $2
            """,
            float(older_than_s),
            limit,
        )
        return [ref_record(row) for row in rows]

    async def requeue_certification(self, certification_id: UUID | str) -> CertificationRef | None:
        """Prepare a live run whose queue job was lost for a fresh enqueue: a new generation restarts the
        queue's attempt numbers at 1, so the fence is reset; an attempt that was running is logged LOST.
        None when the run is no longer live.
        """
        row = await self._pool.fetchrow(
            f"""
            UPDATE certifications SET attempt_log = {_LOG_LOST}, status = 'QUEUED', attempt = 0,
                generation = generation + 1, attempt_started_at = NULL, updated_at = now()
            WHERE id = $1 AND status IN {_LIVE}
            RETURNING {REF_COLUMNS}
            """,
            UUID(str(certification_id)),
        )
        return None if row is None else ref_record(row)
