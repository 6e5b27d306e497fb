"""Repairing the queue from PostgreSQL: re-enqueue runs Redis lost, replace corrupt jobs, close orphaned runs.

PostgreSQL is the source of truth: the API commits a run before it enqueues it. If the process dies
in between, or Redis restarts empty, `reconcile` finds live runs without a queue job and enqueues
them again (a new generation, so a late worker of the old one is fenced out of the row). A queue job
that is corrupt (its hash unreadable, or failed as corrupt by a consumer) is replaced the same way by
a fresh one built from the row. It also closes runs whose queue job ended without a recorded outcome
(e.g. failed by the stalled check).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from uuid import UUID

from redis.exceptions import ResponseError

from certq.jobs import enqueue_runs
from certq.queue.errors import JobStateError
from certq.queue.job import Job, JobState
from certq.queue.queue import Queue
from certq.settings import Settings
from certq.store import CertificationRef, Store

log = logging.getLogger("certq.reconcile")

IDEMPOTENCY_KEY_TTL_S = 24 * 3600.0
"""An Idempotency-Key is honoured for a day (clients retry within minutes); older ones are deleted."""

CORRUPT_JOB = "CORRUPT_JOB"
"""The queue's error category for a job hash it cannot read (a failed Job stands in for it)."""


@dataclass
class ReconcileReport:
    checked: int = 0
    requeued: int = 0
    closed: int = 0
    corrupt: int = 0
    """Corrupt queue jobs found (each replaced and counted in `requeued`, closed, or left to its worker)."""
    expired_keys: int = 0

    def __str__(self) -> str:
        return (
            f"checked {self.checked} live certifications: {self.requeued} re-enqueued, {self.closed} closed, "
            f"{self.corrupt} corrupt queue jobs; {self.expired_keys} idempotency keys expired"
        )


async def reconcile(
    store: Store, queue: Queue, settings: Settings, *, older_than_s: float = 30.0, limit: int = 1000
) -> ReconcileReport:
    """One pass over live runs untouched for `older_than_s` (younger ones may be being enqueued right now)."""
    report = ReconcileReport()
    refs = await store.unfinished_certifications(older_than_s=older_than_s, limit=limit)
    for start in range(0, len(refs), 500):
        batch = refs[start : start + 500]
        found = await _jobs(queue, [str(ref.id) for ref in batch])
        missing: list[CertificationRef] = []
        for ref in batch:
            report.checked += 1
            job = found.get(str(ref.id))
            if job is not None and _corrupt(job, str(ref.id)):
                report.corrupt += 1
                if not await _discard(store, queue, ref, job, report):
                    continue
                job = None
            if job is None:
                fresh = await store.requeue_certification(ref.id)
                if fresh is not None:
                    missing.append(fresh)
                continue
            settled = job.finished_at is not None and job.finished_at < (time.time() - older_than_s) * 1000
            if job.state.value in ("completed", "failed") and settled and await _close(store, ref.id, job):
                report.closed += 1
        if missing:
            await enqueue_runs(queue, settings, missing)
            report.requeued += len(missing)
            log.warning(
                "re-enqueued %d certifications whose queue jobs were missing or corrupt: %s",
                len(missing),
                ", ".join(str(ref.id) for ref in missing[:20]),
            )
    report.expired_keys = await store.purge_idempotency_keys(IDEMPOTENCY_KEY_TTL_S)
    return report


async def _jobs(queue: Queue, ids: list[str]) -> dict[str, Job]:
    """The queue job of each id that has one, keyed by the id asked for."""
    try:
        jobs = await queue.get_many(ids)
    except ResponseError:  # a job key that is not a hash (WRONGTYPE) fails the whole pipeline
        jobs = None
    if jobs is not None:
        by_id = {job.id: job for job in jobs}
        if len(by_id) == len(jobs) and by_id.keys() <= set(ids):
            return by_id
    # A hash whose `id` field names another job (or a key that is not a hash): look each one up alone.
    out: dict[str, Job] = {}
    for job_id in ids:
        try:
            job = await queue.get(job_id)
        except ResponseError as exc:
            job = Job(
                id=job_id,
                payload={},
                state=JobState.FAILED,
                last_error=f"corrupt job: {exc}",
                error_category=CORRUPT_JOB,
            )
        if job is not None:
            out[job_id] = job
    return out


def _corrupt(job: Job, job_id: str) -> bool:
    """Unreadable (the queue stands in a failed job for it), failed as corrupt when a consumer claimed it, or
    naming another id. Each would leave its run live forever: no worker runs it and `_close` never sees it
    settle, so new certifications of the pair would answer `existing` for good."""
    return job.error_category == CORRUPT_JOB or job.id != job_id


async def _discard(store: Store, queue: Queue, ref: CertificationRef, job: Job, report: ReconcileReport) -> bool:
    """Take a corrupt job out of the queue; True when it is gone and the run can be enqueued afresh."""
    fields = {"certification_id": str(ref.id), "error": job.last_error or f"its hash names job {job.id}"}
    try:
        if await queue.remove(str(ref.id)) or await queue.get(str(ref.id)) is None:  # or gone meanwhile
            log.warning("removed a corrupt queue job; its run is enqueued afresh from postgresql", extra=fields)
            return True
    except JobStateError:
        # Held by a worker (or said to be): it settles the job, or the stalled check moves it, and the
        # next pass looks again.
        log.warning("corrupt queue job is active; left to its worker this pass", extra=fields)
        return False
    except ResponseError as exc:  # not a hash at all
        fields["error"] = f"{fields['error']}; not removable: {exc}"
    # Not removable (no `state` field, or not a hash): a job with this id cannot be enqueued again, so the
    # run ends with the reason. The leftover cannot block its pair: only a pending state does that.
    if await store.close_certification(
        ref.id, "INTERNAL_ERROR", f"its queue job is corrupt and could not be replaced ({fields['error']})"
    ):
        report.closed += 1
        log.warning("closed a run whose queue job is corrupt and could not be replaced", extra=fields)
    return False


async def _close(store: Store, certification_id: UUID, job: Job) -> bool:
    if job.cancelled:
        return await store.mark_cancelled(certification_id)
    if job.state.value == "failed":
        message = job.last_error or "the queue job failed without a recorded outcome"
        return await store.close_certification(certification_id, job.error_category or "INTERNAL_ERROR", message)
    return await store.close_certification(
        certification_id, "INTERNAL_ERROR", "the queue job completed without a recorded outcome"
    )
