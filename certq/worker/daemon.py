"""The worker daemon: one event loop running the queue Runner, the health server and dependency upkeep.

Signals belong to the daemon, not to uvicorn (its server runs here without its own handlers):
the first SIGTERM/SIGINT stops claiming and lets running jobs finish within the grace period, the
second cancels them at once; either way unfinished jobs go back to wait without burning an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry

from certq.connections import connect_redis
from certq.health import Check, HealthProbes, HealthServer, build_health_app
from certq.jobs import queue_config
from certq.metrics import Metrics
from certq.queue import ActiveJob, Handler, Lease, Queue, Runner, StopReason
from certq.reconcile import reconcile
from certq.settings import Settings
from certq.store import Store
from certq.worker.alerts import Alerter
from certq.worker.dependencies import Database, DatabaseUnavailable, RedisWatch
from certq.worker.drift_watch import DriftWatch
from certq.worker.observer import WorkerHooks
from certq.worker.scheduler import Scheduler

log = logging.getLogger("certq.worker")

CLAIM_LOOP_STALE_S = 10.0
"""/ready fails when the claim loop has not gone round for this long (it turns at least every ~2 s)."""
CLAIM_ERROR_WINDOW_S = 3.0
"""/ready fails while the claim loop has hit a Redis error this recently (it retries within 2 s)."""
DATABASE_WAIT_S = 10.0
"""A job claimed while PostgreSQL is away waits this long for it, then goes back to wait unburnt."""

STARTUP_DATABASE_WAIT_S = 5.0
RECONCILE_PERIOD_S = 60.0
RECONCILE_AGE_S = 60.0
"""Only runs untouched this long are reconciled (younger ones may be being enqueued right now)."""


class WorkerStartupError(Exception):
    """The worker cannot start (e.g. its health port is taken); the message names what to fix."""


class GatedRunner(Runner):
    """A Runner that claims nothing while `may_claim()` is false; jobs it runs still finish and settle.

    While PostgreSQL refuses writes every job claimed could only be handed back, so none is taken.
    """

    def __init__(self, *args: Any, may_claim: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_claim = may_claim

    async def _settle_and_claim(self, lane: Any, want: int) -> tuple[list[Lease], bool]:
        if self.may_claim():
            return await super()._settle_and_claim(lane, want)
        if lane.acks:
            await super()._settle_and_claim(lane, 0)
        # Answered as for a paused queue: the claim loop neither blocks on the wait lists nor spins; it
        # looks again every two block_ms.
        return [], True


class Worker:
    """`await Worker(settings).run()` serves until a signal and returns the exit code (0 after a clean stop).

    `handler` replaces the certification handler (tests, benchmarks); it gets each ActiveJob.
    """

    def __init__(
        self, settings: Settings, *, handler: Handler | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(registry, process=registry is None)
        self.config = queue_config(settings)
        self.alerter = Alerter(settings.alert_webhook_url, metrics=self.metrics)
        self.hooks = WorkerHooks(settings.queue_name, self.metrics, self.alerter)
        self.drift = DriftWatch(
            self.alerter, self.metrics, margin=settings.drift_score_margin, validity_s=settings.validity_s
        )
        self.custom_handler = handler
        self.stop_event = asyncio.Event()
        self.force_event = asyncio.Event()
        self.phase = "starting"
        self.claiming = asyncio.Event()
        """Set when the runner starts (its claim loop has turned once by the time a waiter resumes)."""
        self.signals_received: list[str] = []
        self.runner: Runner | None = None
        self.redis_watch: RedisWatch | None = None
        self.database: Database | None = None
        self.health_server: HealthServer | None = None
        self._started = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------------------

    async def run(self) -> int:
        settings = self.settings
        health = HealthServer(
            build_health_app(self._probes()), settings.worker_health_host, settings.worker_health_port
        )
        try:
            health.bind()
        except OSError as exc:
            raise WorkerStartupError(
                f"WORKER_HEALTH_PORT: cannot listen on {settings.worker_health_host}:{settings.worker_health_port}"
                f" ({exc.strerror or exc})"
            ) from None
        self.health_server = health
        self._install_signal_handlers()
        redis = connect_redis(settings)
        self.queue = Queue(redis, self.config)
        self.redis_watch = RedisWatch(redis, self.metrics)
        self.database = Database(settings.database_url, self.metrics, pool_size=settings.concurrency + 2)
        handler = self.custom_handler or self._certification_handler(self.database)
        runner = GatedRunner(
            redis,
            self.config,
            self._guarded(handler),
            concurrency=settings.concurrency,
            job_timeout_ms=settings.timeout_ms,
            hooks=self.hooks,
            grace_ms=int(settings.shutdown_grace_s * 1000),
            info={"healthPort": health.port},
            may_claim=self.database.writable.is_set,
        )
        self.runner = runner
        self.metrics.concurrency.labels(settings.queue_name).set(settings.concurrency)
        self.metrics.expect_queue(settings.queue_name, retry_categories=self._retry_categories())
        self.metrics.track_active(settings.queue_name, lambda: runner.active_count)
        upkeep_stop = asyncio.Event()
        upkeep = [
            asyncio.create_task(self.redis_watch.watch(upkeep_stop), name="certq-redis-watch"),
            asyncio.create_task(self.database.keep_connected(upkeep_stop), name="certq-database"),
            asyncio.create_task(self._reconcile_periodically(upkeep_stop), name="certq-reconcile"),
            asyncio.create_task(self.drift.sweep_expiries(self.database, upkeep_stop), name="certq-expiries"),
            asyncio.create_task(self._scheduler().run(upkeep_stop), name="certq-scheduler"),
        ]
        try:
            await health.start()
            log.info(
                "worker started",
                extra={
                    "queue": settings.queue_name,
                    "prefix": settings.queue_prefix,
                    "concurrency": settings.concurrency,
                    "health_port": health.port,
                    "timeout_ms": settings.timeout_ms,
                    "consumer": runner.id,
                    "shutdown_grace_s": settings.shutdown_grace_s,
                    "renew_before_s": settings.renew_before_s,
                },
            )
            # Jobs claimed before PostgreSQL answers would only wait for it; start claiming either way.
            await _first_of(self.database.up, self.stop_event, within=STARTUP_DATABASE_WAIT_S)
            if not self.stop_event.is_set():
                self.phase = "running"
            self.claiming.set()
            await runner.run(self.stop_event, force_event=self.force_event)
        finally:
            self.phase = "stopped"
            upkeep_stop.set()
            await asyncio.gather(*upkeep, return_exceptions=True)
            await self.alerter.close()
            await health.stop()
            await self.database.close()
            with contextlib.suppress(Exception):
                await redis.aclose()
            self._remove_signal_handlers()
        log.info(
            "worker stopped",
            extra={
                "queue": settings.queue_name,
                "signals": self.signals_received,
                "forced": self.force_event.is_set(),
                "uptime_s": round(time.monotonic() - self._started, 1),
                **asdict(runner.stats),
            },
        )
        return 0

    async def _reconcile_periodically(self, stop: asyncio.Event) -> None:
        """PostgreSQL is the truth: re-enqueue live runs Redis lost (e.g. restarted empty), close orphans.

        Every worker does it, at jittered times; the store's updates are conditional, so overlaps are harmless.
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONCILE_PERIOD_S * random.uniform(0.5, 1.5))
            store = self.database.store if self.database is not None else None
            if stop.is_set() or store is None or not self.database or not self.database.up.is_set():
                continue
            try:
                report = await reconcile(store, self.queue, self.settings, older_than_s=RECONCILE_AGE_S)
            except Exception as exc:  # an outage now is retried next period
                log.warning("reconcile pass failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                continue
            if report.requeued or report.closed:
                log.warning(
                    "reconciled postgresql with the queue",
                    extra={"checked": report.checked, "requeued": report.requeued, "closed": report.closed},
                )

    def _scheduler(self) -> Scheduler:
        """Fires due schedules (every worker runs one; each slot fires once across them) while PostgreSQL takes
        writes."""
        database = self.database
        assert database is not None

        def store() -> Store | None:
            return database.store if database.up.is_set() and database.writable.is_set() else None

        return Scheduler(store, self.queue, self.settings, registry=self.metrics.registry)

    def request_stop(self, reason: str) -> None:
        """First call: drain (stop claiming, grace period). Second: cancel running jobs now and release them."""
        self.signals_received.append(reason)
        if not self.stop_event.is_set():
            self.phase = "draining"
            self.stop_event.set()
            log.info(
                "shutdown requested; draining",
                extra={
                    "signal": reason,
                    "active": self.runner.active_count if self.runner else 0,
                    "shutdown_grace_s": self.settings.shutdown_grace_s,
                },
            )
        elif not self.force_event.is_set():
            self.force_event.set()
            log.warning(
                "second signal; cancelling running jobs now",
                extra={"signal": reason, "active": self.runner.active_count if self.runner else 0},
            )
        else:
            # A handler that ignores cancellation must not keep the process alive: its lease expires and
            # the stalled check hands the job to another worker.
            log.error("third signal; exiting without waiting", extra={"signal": reason})
            logging.shutdown()
            os._exit(1)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, sig.name)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    # -- jobs ---------------------------------------------------------------------------------------------

    def _certification_handler(self, database: Database) -> Handler:
        from certq.certification import ResponseLimits, RunConfig
        from certq.worker.handler import CertificationHandler

        limits = ResponseLimits(
            max_body_bytes=self.settings.model_max_response_mb * 1024 * 1024,
            max_stream_bytes=self.settings.model_max_response_mb * 1024 * 1024,
            max_stream_seconds=self.settings.model_max_stream_s,
        )
        return CertificationHandler(
            database,
            credentials=self.settings.credential_policy,
            run_config=RunConfig(limits=limits, egress=self.settings.egress_policy),
            validity_s=self.settings.validity_s,
            drift=self.drift,
        )

    def _retry_categories(self) -> list[str]:
        """What a retried attempt can be counted under: the runner's TIMEOUT, and the certification's
        retryable errors when it runs certifications."""
        if self.custom_handler is not None:
            return ["TIMEOUT"]
        from certq.certification import RETRYABLE

        return sorted(RETRYABLE)

    def _guarded(self, handler: Handler) -> Handler:
        """Hold a job while PostgreSQL is away or refuses writes for a while, then give it back unburnt (no
        failure from an outage)."""
        database = self.database
        assert database is not None

        async def run(active: ActiveJob) -> Any:
            if not database.up.is_set() or not database.writable.is_set():
                try:
                    await asyncio.wait_for(_all_set(database.up, database.writable), DATABASE_WAIT_S)
                except TimeoutError:
                    log.info("postgresql unavailable; giving the job back", extra={"job_id": active.job.id})
                    active.stop_reason = StopReason.DEPENDENCY_DOWN
                    raise asyncio.CancelledError from None  # the runner releases it without counting the attempt
            try:
                return await handler(active)
            except DatabaseUnavailable as exc:
                database.went_away(exc.__cause__ or exc)
                log.warning("postgresql went away mid-job; giving the job back", extra={"job_id": active.job.id})
                active.stop_reason = StopReason.DEPENDENCY_DOWN
                raise asyncio.CancelledError from None

        return run

    # -- health ---------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        running = self.runner is not None and self.runner.running and self.phase == "running"
        return {"isRunning": running, "queueName": self.settings.queue_name, "concurrency": self.settings.concurrency}

    async def health(self) -> Check:
        assert self.redis_watch is not None
        problem = await self.redis_watch.ping()
        return Check(True) if problem is None else Check(False, f"redis unreachable: {problem}")

    async def ready(self) -> Check:
        """Taking jobs now: not starting or draining, Redis and PostgreSQL answer, the claim loop turns."""
        runner = self.runner
        if self.phase in ("draining", "stopped") or (runner is not None and runner.draining):
            return Check(False, "draining" if self.phase != "stopped" else "stopped")
        if self.redis_watch is None or self.database is None:
            return Check(False, "starting")
        problem = await self.redis_watch.ping()
        if problem is not None:
            return Check(False, f"redis unreachable: {problem}")
        problem = await self.database.check()
        if problem is not None:
            return Check(False, f"postgresql unreachable: {problem}")
        if not self.database.writable.is_set():
            return Check(False, f"postgresql refuses writes: {self.database.write_problem}")
        if self.phase == "starting" or runner is None or runner.last_claim_loop_at is None:
            return Check(False, "starting")
        stale = time.monotonic() - runner.last_claim_loop_at
        if stale > CLAIM_LOOP_STALE_S:
            return Check(False, f"claim loop has not turned for {stale:.1f}s")
        failed_at = self.hooks.last_claim_error_at
        if failed_at is not None and time.monotonic() - failed_at < CLAIM_ERROR_WINDOW_S:
            return Check(False, f"claim loop failing: {self.hooks.last_claim_error}")
        return Check(True, details={"activeJobs": runner.active_count, "concurrency": runner.concurrency})

    async def queue_counts(self) -> Mapping[str, int]:
        counts = await self.queue.counts()
        self.metrics.redis_answered(True)
        return counts

    async def before_scrape(self) -> None:
        self.metrics.set_queue_counts(self.settings.queue_name, await self.queue_counts())

    def _probes(self) -> HealthProbes:
        return HealthProbes(
            describe=self.describe,
            health=self.health,
            ready=self.ready,
            queue_counts=self.queue_counts,
            registry=self.metrics.registry,
            before_scrape=self.before_scrape,
        )


async def _all_set(*events: asyncio.Event) -> None:
    while not all(event.is_set() for event in events):
        await next(event for event in events if not event.is_set()).wait()


async def _first_of(*events: asyncio.Event, within: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
