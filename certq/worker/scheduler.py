"""The schedules' firing loop. Every worker runs one; each due slot fires once across all of them (the store
locks the schedule row and keys the slot), and the runs it created are enqueued after the commit. The same loop
runs the "renew before expiry" pass (CERTIFICATION_RENEW_BEFORE) every RENEW_PERIOD_S."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from certq.jobs import enqueue_runs
from certq.queue.queue import Queue
from certq.settings import Settings
from certq.store import CertificationRef, FiredSlot, SlotRecord, Store
from certq.store.renewals import Renewal

log = logging.getLogger("certq.worker.scheduler")

PERIOD_S = 1.0
"""How often a worker looks for due schedules (jittered by a quarter either way): one index probe."""
RENEW_PERIOD_S = 30.0
"""How often a worker runs the renewal pass (one of them at a time does the work; it reads models x regions)."""


def _now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """`await Scheduler(store_of, queue, settings).run(stop)`; `tick()` is one pass.

    `store_of()` answers the store, or None while PostgreSQL is away (the pass is skipped). `clock` is the
    time slots are judged by (tests move it).
    """

    def __init__(
        self,
        store_of: Callable[[], Store | None],
        queue: Queue,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = _now,
        period_s: float = PERIOD_S,
        renew_period_s: float = RENEW_PERIOD_S,
        rng: random.Random | None = None,
    ) -> None:
        self.store_of = store_of
        self.queue = queue
        self.settings = settings
        self.clock = clock
        self.period_s = period_s
        self.renew_period_s = renew_period_s
        self.next_renewal = 0.0
        self.rng = rng or random.Random()
        self.failing = False
        registry = registry if registry is not None else CollectorRegistry()
        self.slots = Counter(
            "certq_schedule_slots",
            "Schedule slots this process fired (or dropped, catch-up skip), by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.enqueue_failures = Counter(
            "certq_schedule_enqueue_failures",
            "Scheduled runs committed but not enqueued (Redis error); the reconciler enqueues them.",
            registry=registry,
        )
        self.renewals = Counter(
            "certq_renewals",
            "Certifications this process queued to renew certificates before they expire.",
            registry=registry,
        )
        for outcome in ("fired", "dropped"):
            self.slots.labels(outcome)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
                if self.settings.renew_before_s and asyncio.get_running_loop().time() >= self.next_renewal:
                    self.next_renewal = asyncio.get_running_loop().time() + self.renew_period_s
                    await self.renew()
            except Exception as exc:  # PostgreSQL went away mid-pass: the next pass tries again
                self._failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s * self.rng.uniform(0.75, 1.25))

    async def tick(self) -> list[FiredSlot]:
        """Fire every schedule due now; the slots this process fired (others may have fired the rest)."""
        store = self.store_of()
        if store is None:
            return []
        now = self.clock()
        fired: list[FiredSlot] = []
        errors = 0
        for schedule_id in await store.due_schedules(now):
            try:
                slot = await store.fire_schedule(
                    schedule_id,
                    now=now,
                    default_validity_s=self.settings.validity_s,
                    before_commit=self._hold if self.settings.test_hold_slot_s else None,
                )
            except Exception as exc:
                errors += 1
                self._failed(exc, schedule_id=str(schedule_id))
                continue
            if slot is None:
                continue
            fired.append(slot)
            self._announce(slot)
            if slot.runs:
                await self._enqueue(
                    slot.runs, schedule_id=str(slot.slot.schedule_id), slot_at=slot.slot.slot_at.isoformat()
                )
        if self.failing and not errors:
            self.failing = False
            log.info("schedules fire again")
        return fired

    async def renew(self) -> Renewal | None:
        """One renewal pass (CERTIFICATION_RENEW_BEFORE): None when it is off, PostgreSQL is away, or another
        process is running the pass."""
        window_s = self.settings.renew_before_s
        store = self.store_of()
        if window_s is None or store is None:
            return None
        renewal = await store.renew_expiring(
            now=self.clock(), window_s=window_s, default_validity_s=self.settings.validity_s
        )
        if renewal is None or not renewal.runs:
            return renewal
        self.renewals.inc(len(renewal.runs))
        job_id = None if renewal.job is None else str(renewal.job.id)
        pairs = [f"{run.model_id}/{run.region}" for run in renewal.runs]
        log.info(
            "certificates renewed before expiry",
            extra={
                "job_id": job_id,
                "runs": len(renewal.runs),
                "pairs": pairs[:20],
                "renewed": [str(c) for c in renewal.certificates[:20]],
            },
        )
        await self._enqueue(renewal.runs, job_id=str(job_id))
        return renewal

    async def _hold(self, slot: SlotRecord) -> None:
        # Test hook (CERTQ_TEST_HOLD_SLOT_S): the slot is written, not committed; a test SIGKILLs the process here.
        log.warning(
            "schedule slot held before commit",
            extra={"schedule_id": str(slot.schedule_id), "slot_at": slot.slot_at.isoformat()},
        )
        await asyncio.sleep(self.settings.test_hold_slot_s)

    async def _enqueue(self, runs: list[CertificationRef], **fields: str) -> None:
        try:
            await enqueue_runs(self.queue, self.settings, runs)
        except Exception as exc:
            # Committed in PostgreSQL as QUEUED: the reconciler finds them without a queue job and enqueues them.
            self.enqueue_failures.inc(len(runs))
            log.warning(
                "scheduled runs not enqueued; the reconciler will enqueue them",
                extra={**fields, "runs": len(runs), "error": f"{type(exc).__name__}: {exc}"},
            )

    def _announce(self, slot: FiredSlot) -> None:
        record = slot.slot
        self.slots.labels(record.outcome).inc()
        fields = {
            "schedule_id": str(record.schedule_id),
            "slot_at": record.slot_at.isoformat(),
            "missed": record.missed,
            "queued": record.queued,
            "skipped": record.skipped,
            "job_id": None if record.job_id is None else str(record.job_id),
        }
        if record.outcome == "dropped":
            log.warning("schedule slot dropped (catch-up skip: too late)", extra=fields)
        elif record.missed:
            log.warning("schedule fired once for missed slots (catch-up once)", extra=fields)
        else:
            log.info("schedule fired", extra=fields)

    def _failed(self, exc: Exception, **fields: str) -> None:
        # One line when firing starts failing (and one when it recovers), not one a second.
        if not self.failing:
            log.warning("schedule pass failed", extra={**fields, "error": f"{type(exc).__name__}: {exc}"})
        self.failing = True
