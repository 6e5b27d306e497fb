"""What the worker says about each job: one log line per event, metrics, and an alert on final failure."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from certq.metrics import Metrics
from certq.queue import Job, RunnerHooks
from certq.worker.alerts import Alerter

log = logging.getLogger("certq.worker")


class WorkerHooks(RunnerHooks):
    """Runner callbacks: log, count, time and alert. Never blocks (the alert POST runs in the background)."""

    def __init__(self, queue: str, metrics: Metrics, alerter: Alerter) -> None:
        self.queue = queue
        self.metrics = metrics
        self.alerter = alerter
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._started: dict[str, float] = {}
        self.last_claim_error_at: float | None = None
        self.last_claim_error: str | None = None

    def _fields(self, job: Job, **more: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"job_id": job.id, "attempt": job.attempts, "queue": self.queue}
        if job.group:
            fields["group"] = job.group
        fields.update(more)
        return fields

    def _ended(self, job: Job, outcome: str, seconds: float | None = None) -> float:
        started = self._started.pop(job.id, None)
        if seconds is None:
            seconds = time.monotonic() - started if started is not None else 0.0
        self.metrics.job_ended(self.queue, outcome, seconds)
        return seconds

    def on_claim(self, job: Job) -> None:
        self._started[job.id] = time.monotonic()
        self.metrics.redis_answered(True)
        log.info("job started", extra=self._fields(job, state="active", max_attempts=job.max_attempts))

    def on_complete(self, job: Job, seconds: float) -> None:
        self._ended(job, "completed", seconds)
        self.metrics.redis_answered(True)
        log.info("job completed", extra=self._fields(job, state="completed", duration_ms=round(seconds * 1000)))

    def on_retry(self, job: Job, error: str, category: str | None, seconds: float) -> None:
        self._ended(job, "retried", seconds)
        self.metrics.retry_scheduled(self.queue, category)
        log.warning(
            "job attempt failed; retry scheduled",
            extra=self._fields(
                job, state="delayed", duration_ms=round(seconds * 1000), error=error, error_category=category
            ),
        )

    def on_fail(self, job: Job, error: str, category: str | None, seconds: float) -> None:
        self._ended(job, "failed", seconds)
        payload = job.payload if isinstance(job.payload, dict) else {}
        self.alerter.job_failed(
            {
                "event": "job.failed",
                "queue": self.queue,
                "jobId": job.id,
                "certificationId": payload.get("certificationId"),
                "parentJobId": payload.get("jobId"),
                "modelId": payload.get("modelId"),
                "region": payload.get("region") or job.group,
                "errorCategory": category,
                "errorMessage": error,
                "attempts": job.attempts,
                "maxAttempts": job.max_attempts,
                "durationMs": round(seconds * 1000),
                "worker": self.worker,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    def on_lease_lost(self, job: Job) -> None:
        self._ended(job, "lease_lost")
        self.metrics.lease_renewals_lost.labels(self.queue).inc()
        log.warning("job lease lost; stopped here, another worker owns it", extra=self._fields(job))

    def on_cancelled(self, job: Job) -> None:
        seconds = self._ended(job, "cancelled")
        log.info("job cancelled", extra=self._fields(job, state="failed", duration_ms=round(seconds * 1000)))

    def on_release(self, job: Job) -> None:
        seconds = self._ended(job, "released")
        log.info("job released unfinished", extra=self._fields(job, state="waiting", duration_ms=round(seconds * 1000)))

    def on_stalled(self, recovered: list[str], failed: list[str]) -> None:
        if recovered:
            self.metrics.stalled_recovered.labels(self.queue).inc(len(recovered))
            log.warning("stalled jobs moved back to wait", extra={"queue": self.queue, "job_ids": recovered})
        for job_id in failed:
            self.metrics.jobs.labels(self.queue, "failed").inc()
            self.alerter.job_failed(
                {
                    "event": "job.failed",
                    "queue": self.queue,
                    "jobId": job_id,
                    "errorCategory": "STALLED",
                    "errorMessage": "stalled too many times",
                    "worker": self.worker,
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )

    def on_redis_error(self, where: str, error: BaseException) -> None:
        self.metrics.redis_answered(False)
        if where == "claim":
            self.last_claim_error_at = time.monotonic()
            self.last_claim_error = f"{type(error).__name__}: {error}"
