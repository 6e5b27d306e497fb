"""Getting accepted certifications into the queue, and back into it when Redis lost them.

PostgreSQL is the source of truth: the API commits a run before it enqueues it. If the process dies
in between, or Redis restarts empty, `reconcile` finds live runs without a queue job and enqueues
them again (a new generation, so a late worker of the old one is fenced out of the row). It also
closes runs whose queue job ended without a recorded outcome (e.g. failed by the stalled check).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from uuid import UUID

from certq.queue.config import QueueConfig
from certq.queue.job import Job
from certq.queue.queue import JobSpec, Queue
from certq.settings import Settings
from certq.store import CertificationRef, Store

log = logging.getLogger("certq.reconcile")

IDEMPOTENCY_KEY_TTL_S = 24 * 3600.0
"""An Idempotency-Key is honoured for a day (clients retry within minutes); older ones are deleted."""


def job_payload(ref: CertificationRef) -> dict[str, str]:
    """The queue payload of a run: the one identity of each thing, as strings."""
    return {"certificationId": str(ref.id), "jobId": str(ref.job_id), "modelId": str(ref.model_id),
            "region": ref.region}


def queue_config(settings: Settings) -> QueueConfig:
    """The certification queue as configured by the environment."""
    return QueueConfig(prefix=settings.queue_prefix, name=settings.queue_name, rate_limits=settings.rate_limit_table,
                       default_max_attempts=settings.max_attempts)


def job_spec(ref: CertificationRef, settings: Settings) -> JobSpec:
    return JobSpec(
        payload=job_payload(ref),
        job_id=str(ref.id),
        priority=ref.priority,
        max_attempts=settings.max_attempts,
        timeout_ms=settings.timeout_ms,
        dedupe_key=f"{ref.model_id}:{ref.region}",
        group=ref.region,
    )


async def enqueue_runs(queue: Queue, settings: Settings, refs: list[CertificationRef]) -> list[Job]:
    """Enqueue committed runs in one round trip. Raises the queue's error if Redis fails."""
    return await queue.enqueue_many([job_spec(ref, settings) for ref in refs])


@dataclass
class ReconcileReport:
    checked: int = 0
    requeued: int = 0
    closed: int = 0
    expired_keys: int = 0

    def __str__(self) -> str:
        return (f"checked {self.checked} live certifications: {self.requeued} re-enqueued, {self.closed} closed; "
                f"{self.expired_keys} idempotency keys expired")


async def reconcile(
    store: Store, queue: Queue, settings: Settings, *, older_than_s: float = 30.0, limit: int = 1000
) -> ReconcileReport:
    """One pass over live runs untouched for `older_than_s` (younger ones may be being enqueued right now)."""
    report = ReconcileReport()
    refs = await store.unfinished_certifications(older_than_s=older_than_s, limit=limit)
    for start in range(0, len(refs), 500):
        batch = refs[start: start + 500]
        found = {job.id: job for job in await queue.get_many([str(ref.id) for ref in batch])}
        missing: list[CertificationRef] = []
        for ref in batch:
            report.checked += 1
            job = found.get(str(ref.id))
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
            log.warning("re-enqueued %d certifications whose queue jobs were missing: %s", len(missing),
                        ", ".join(str(ref.id) for ref in missing[:20]))
    report.expired_keys = await store.purge_idempotency_keys(IDEMPOTENCY_KEY_TTL_S)
    return report


async def _close(store: Store, certification_id: UUID, job: Job) -> bool:
    if job.cancelled:
        return await store.mark_cancelled(certification_id)
    if job.state.value == "failed":
        message = job.last_error or "the queue job failed without a recorded outcome"
        return await store.close_certification(certification_id, job.error_category or "INTERNAL_ERROR", message)
    return await store.close_certification(
        certification_id, "INTERNAL_ERROR", "the queue job completed without a recorded outcome"
    )
