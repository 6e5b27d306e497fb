"""Prometheus metrics of certq, defined once against an injectable CollectorRegistry.

Workers and the API build one `Metrics` each; tests build their own on a fresh registry so they
never collide. Nothing here knows what a certification is: labels are queue names and outcome words.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector

from certq.drift import DRIFT_KINDS

JOB_OUTCOMES = ("completed", "retried", "failed", "released", "cancelled", "lease_lost")
"""How one attempt ends in a worker: done; failed and scheduled again; failed for good; handed back
unfinished at shutdown (no attempt burnt); stopped because the job was cancelled; stopped because
another consumer owns the job now."""

QUEUE_STATES = ("waiting", "active", "delayed", "completed", "failed", "paused")

UNKNOWN_CATEGORY = "UNKNOWN"
"""The retry category of a failure that named none (an unexpected exception in the handler)."""

# From a no-op job (milliseconds) to a slow certification (minutes).
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))


class Metrics:
    """Every certq metric, registered on `registry` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
        self.jobs = Counter(
            "certq_jobs", "Job attempts ended in this process, by outcome.", ["queue", "outcome"], registry=r
        )
        self.job_duration = Histogram(
            "certq_job_duration_seconds",
            "Wall time of one job attempt, by outcome.",
            ["queue", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "certq_job_retries",
            "Failed attempts scheduled to run again, by error category.",
            ["queue", "category"],
            registry=r,
        )
        self.certification_transitions = Counter(
            "certq_certification_transitions",
            "Standings that changed class (or fell by more than "
            "DRIFT_SCORE_MARGIN), by kind: degraded, recovered, expired.",
            ["kind"],
            registry=r,
        )
        for kind in DRIFT_KINDS:
            self.certification_transitions.labels(kind)  # at 0 from start-up, so increase() sees the first
        self.stalled_recovered = Counter(
            "certq_stalled_jobs_recovered",
            "Jobs whose consumer vanished, moved back to wait by this process.",
            ["queue"],
            registry=r,
        )
        self.lease_renewals_lost = Counter(
            "certq_lease_renewals_lost",
            "Lease renewals refused: another consumer owns the job now.",
            ["queue"],
            registry=r,
        )
        self.queue_jobs = Gauge(
            "certq_queue_jobs",
            "Jobs in each state of the queue, read from Redis at scrape time.",
            ["queue", "state"],
            registry=r,
        )
        self.active_jobs = Gauge("certq_active_jobs", "Jobs running in this process now.", ["queue"], registry=r)
        self.concurrency = Gauge(
            "certq_worker_concurrency", "Jobs this process runs at once at most.", ["queue"], registry=r
        )
        self.redis_last_success = Gauge(
            "certq_redis_last_success_timestamp_seconds",
            "Unix time of the last successful Redis round trip of this process.",
            registry=r,
        )
        self.redis_up = Gauge("certq_redis_up", "1 when the last Redis round trip succeeded, else 0.", registry=r)
        self.database_up = Gauge(
            "certq_database_up", "1 when the last PostgreSQL round trip succeeded, else 0.", registry=r
        )
        self.alerts = Counter(
            "certq_alerts", "Failure alerts, by outcome (sent, failed, dropped).", ["outcome"], registry=r
        )

    def expect_queue(self, queue: str, *, retry_categories: Iterable[str] = ()) -> None:
        """Create the counters of a queue this process works on at 0, one per label value they will have.

        A counter born at its first increment (1) has no earlier sample to compare with, so `increase()`
        over it misses that event: the first stalled job or lost lease would never alert.
        """
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(queue, outcome)
        for category in dict.fromkeys([*retry_categories, UNKNOWN_CATEGORY]):
            self.retries.labels(queue, category)
        self.stalled_recovered.labels(queue)
        self.lease_renewals_lost.labels(queue)

    def job_ended(self, queue: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(queue, outcome).inc()
        self.job_duration.labels(queue, outcome).observe(max(0.0, seconds))

    def retry_scheduled(self, queue: str, category: str | None) -> None:
        self.retries.labels(queue, category or UNKNOWN_CATEGORY).inc()

    def set_queue_counts(self, queue: str, counts: Mapping[str, int]) -> None:
        for state, count in counts.items():
            self.queue_jobs.labels(queue, state).set(count)

    def track_active(self, queue: str, active: Callable[[], float]) -> None:
        """Read the active-job count from `active` at each scrape."""
        self.active_jobs.labels(queue).set_function(active)

    def redis_answered(self, ok: bool, at: float | None = None) -> None:
        self.redis_up.set(1 if ok else 0)
        if ok:
            self.redis_last_success.set(time.time() if at is None else at)

    def database_answered(self, ok: bool) -> None:
        self.database_up.set(1 if ok else 0)


def render_prometheus(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry in the exposition format `accept` asks for (OpenMetrics or Prometheus text)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
