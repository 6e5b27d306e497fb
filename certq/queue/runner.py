"""Runner: the generic processing loop (worker daemon, benchmarks, tests): N handlers, leases, upkeep, drain.

One claim loop settles finished jobs and claims new ones in one script call (complete-and-claim), so a
busy runner makes about one round trip per batch of jobs; an idle one blocks on BLMOVE. A heartbeat
task renews every held lease and reads cancel flags; upkeep tasks promote delayed jobs, recover stalled
ones and apply retention, each on its period from one mapping, all under one stop event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from certq.queue.config import QueueConfig
from certq.queue.consumer import Consumer, Lease
from certq.queue.errors import JobFailed, LeaseLost
from certq.queue.handling import ActiveJob, Handler, RunnerHooks, RunnerStats, StopReason, format_stack
from certq.queue.job import JobState, Priority, encode_json
from certq.queue.protocol import LeaseStatus
from certq.queue.queue import Clock, wall_clock_ms
from certq.queue.scripts import AnyRedis

log = logging.getLogger("certq.queue")

TRANSIENT = (RedisError, RedisClusterException, OSError)
"""Redis outages; RedisClusterException (no reachable cluster node) is not a RedisError."""
_IDLE_ORDER: tuple[Priority, ...] = ("normal", "high", "low")
"""Which wait lists an idle claim loop blocks on, by number of free slots (normal first: `wait` is the
contract's list and the common case)."""
"""Errors that mean "Redis is unreachable or failing right now": retry with backoff, never die."""


@dataclass(eq=False, slots=True)
class _Lane:
    """A share of the runner's slots with its own claim loop, so one lane's Redis round trip overlaps
    another lane's Python work."""

    size: int
    running: int = 0
    acks: list[tuple[Lease, str, float]] = field(default_factory=list)
    blocked: dict[Priority, asyncio.Task[None]] = field(default_factory=dict)
    dirty: bool = True
    """Something changed (a slot freed, a blocked claim returned): worth a claim round trip."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Runner:
    """Runs `handler` on up to `concurrency` jobs at a time until `run`'s stop event is set.

    A handler returns a result (JSON) to complete the job, raises JobFailed(message, final, category)
    to fail the attempt (retried with backoff unless final), or any other exception (retried).
    `job_timeout_ms` (or the job's own timeout) cancels the handler task; the attempt fails with
    category TIMEOUT and is retried. A lost lease or a cancel request also cancels the task.
    On stop: no new claims; running jobs get `grace_ms` (or until `force_event`), then are cancelled
    and released without counting the attempt. `burst=True` returns once nothing is waiting or running.
    """

    def __init__(
        self,
        redis: AnyRedis,
        config: QueueConfig,
        handler: Handler,
        *,
        concurrency: int = 3,
        job_timeout_ms: int | None = None,
        consumer_id: str | None = None,
        hooks: RunnerHooks | None = None,
        grace_ms: int = 30_000,
        burst: bool = False,
        info: dict[str, Any] | None = None,
        lanes: int = 1,
        clock: Clock = wall_clock_ms,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 1 <= lanes <= concurrency:
            raise ValueError("lanes must be between 1 and concurrency")
        self.config = config
        self.consumer = Consumer(redis, config, consumer_id=consumer_id, clock=clock)
        self.handler = handler
        self.concurrency = concurrency
        self.job_timeout_ms = job_timeout_ms
        self.hooks = hooks or RunnerHooks()
        self.grace_ms = grace_ms
        self.burst = burst
        self.info = dict(info or {})
        self.stats = RunnerStats()
        self.periods: dict[str, float] = {
            "heartbeat": config.heartbeat_ms / 1000,
            "promote": config.promote_ms / 1000,
            "stalled": config.stalled_check_ms / 1000,
            "retention": config.retention_ms / 1000,
        }
        self.last_claim_loop_at: float | None = None
        """time.monotonic() of the claim loop's last turn; readiness checks compare it to now."""
        self.running = False
        self.draining = False
        self._tasks: dict[str, tuple[asyncio.Task[None], ActiveJob]] = {}
        self._held: dict[str, Lease] = {}
        self._lanes = [_Lane(concurrency // lanes + (1 if i < concurrency % lanes else 0)) for i in range(lanes)]
        self._started_at = wall_clock_ms()

    @property
    def id(self) -> str:
        return self.consumer.id

    @property
    def active_count(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        counters = " ".join(f"{k}={v}" for k, v in asdict(self.stats).items())
        return f"<Runner {self.id} concurrency={self.concurrency} active={self.active_count} {counters}>"

    async def run(self, stop_event: asyncio.Event | None = None, *, force_event: asyncio.Event | None = None) -> None:
        """Process jobs until `stop_event` is set (or, in burst mode, until the queue is empty), then drain."""
        stop = stop_event or asyncio.Event()
        upkeep_stop = asyncio.Event()
        self.running = True
        background = [
            asyncio.create_task(self._poll(name, fn, upkeep_stop), name=f"certq-{name}")
            for name, fn in (
                ("heartbeat", self._heartbeat),
                ("promote", self._promote),
                ("stalled", self._recover_stalled),
                ("retention", self._retention),
            )
        ]
        stop_watch = asyncio.create_task(self._wake_on(stop), name="certq-stop-watch")
        try:
            await asyncio.gather(*(self._claim_loop(lane, stop) for lane in self._lanes))
            self.draining = True
            await self._drain(force_event)
        finally:
            upkeep_stop.set()
            stop_watch.cancel()
            for lane in self._lanes:  # only left when run() itself failed or was cancelled
                for blocked in lane.blocked.values():
                    blocked.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._cancel_all(StopReason.SHUTDOWN)
            with contextlib.suppress(*TRANSIENT):
                await self.consumer.unregister()
            self.running = False
            self.draining = False
            log.info("runner stopped: %r", self)

    # -- claiming -------------------------------------------------------------------------------------

    async def _claim_loop(self, lane: _Lane, stop: asyncio.Event) -> None:
        errors = 0
        while not stop.is_set():
            self.last_claim_loop_at = time.monotonic()
            free = lane.size - lane.running - len(lane.blocked)
            paused = False
            try:
                if lane.acks or (free > 0 and lane.dirty):
                    lane.dirty = False
                    leases, paused = await self._settle_and_claim(lane, max(free, 0))
                    if leases or lane.acks:
                        lane.dirty = True
                        continue
                    if self.burst and not lane.running:
                        return
                    if free > 0 and not paused and not self.burst:
                        self._block(lane, stop)
                errors = 0
            except TRANSIENT as exc:
                errors += 1
                lane.dirty = True
                self._redis_error("claim", exc)
                await _wait_any(stop, seconds=min(2.0, 0.05 * 2**errors))
                continue
            except Exception:  # a bug here must not stop the worker; the leases will expire
                errors += 1
                lane.dirty = True
                log.exception("claim loop error")
                await _wait_any(stop, seconds=min(2.0, 0.05 * 2**errors))
                continue
            if paused:
                lane.dirty = True
                await _wait_any(stop, seconds=self.config.block_ms / 1000 * 2)
                continue
            lane.wake.clear()
            if not stop.is_set() and not lane.acks:
                # Woken by: a handler finishing, a blocked claim returning, a heartbeat tick, or stop.
                await lane.wake.wait()

    def _block(self, lane: _Lane, stop: asyncio.Event) -> None:
        """Nothing is waiting: block for new work on `wait` and, with more free slots, on `wait:high` and
        `wait:low` too (one connection each), so a job of any priority wakes an idle runner at once. Each
        blocked claim holds one slot until it returns; it runs beside the loop, which keeps settling."""
        for priority in _IDLE_ORDER:
            if lane.size - lane.running - len(lane.blocked) <= 0:
                break
            if priority not in lane.blocked and not stop.is_set():
                lane.blocked[priority] = asyncio.create_task(
                    self._claim_blocking(lane, priority), name=f"certq-block-{priority}"
                )

    async def _claim_blocking(self, lane: _Lane, priority: Priority) -> None:
        try:
            outcome = await self.consumer.claim_blocking(self.config.block_ms, priority)
            if isinstance(outcome, Lease):
                self._start(outcome, lane)
        except TRANSIENT as exc:
            self._redis_error("claim", exc)
            await asyncio.sleep(0.1)
        finally:
            lane.blocked.pop(priority, None)
            lane.dirty = True
            lane.wake.set()

    async def _settle_and_claim(self, lane: _Lane, want: int) -> tuple[list[Lease], bool]:
        acks, lane.acks = lane.acks, []  # results already JSON text (encoded in the handler's task)
        try:
            done = [(lease, result) for lease, result, _ in acks]
            statuses, leases, paused = await self.consumer.complete_and_claim(done, want, results_encoded=True)
        except BaseException:
            lane.acks = acks + lane.acks
            raise
        for (lease, _, seconds), completed in zip(acks, statuses, strict=True):
            self._held.pop(lease.job.id, None)
            if completed:
                self.stats.completed += 1
                self._hook("on_complete", lease.job, seconds)
            else:
                self.stats.lease_lost += 1
                self._hook("on_lease_lost", lease.job)
        for lease in leases:
            self._start(lease, lane)
        return leases, paused

    def _start(self, lease: Lease, lane: _Lane) -> None:
        self.stats.claimed += 1
        self._held[lease.job.id] = lease
        lane.running += 1
        active = ActiveJob(lease, self.consumer)
        task = asyncio.create_task(self._execute(active, lane), name=f"certq-job-{lease.job.id}")
        self._tasks[lease.job.id] = (task, active)
        self._hook("on_claim", lease.job)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake_lanes()

    def _wake_lanes(self) -> None:
        for lane in self._lanes:
            lane.wake.set()

    # -- one job ----------------------------------------------------------------------------------------

    async def _execute(self, active: ActiveJob, lane: _Lane) -> None:
        lease = active.lease
        started = time.monotonic()
        timeout_ms = lease.job.timeout_ms or self.job_timeout_ms
        try:
            try:
                if timeout_ms:
                    async with asyncio.timeout(timeout_ms / 1000):
                        result = await self.handler(active)
                else:
                    result = await self.handler(active)
            except asyncio.CancelledError:
                if active.stop_reason is None:
                    active.stop_reason = StopReason.SHUTDOWN
                await self._stopped(active, time.monotonic() - started)
                return
            except TimeoutError:
                self.stats.timeouts += 1
                await self._failed(active, f"job timed out after {timeout_ms} ms", "TIMEOUT", False, started)
                return
            except LeaseLost:
                active.stop_reason = StopReason.LEASE_LOST
                await self._stopped(active, time.monotonic() - started)
                return
            except JobFailed as exc:
                await self._failed(active, exc.message, exc.category, exc.final, started)
                return
            except Exception as exc:  # any handler error fails the attempt, the runner goes on
                log.warning("job %s attempt %s raised %r", lease.job.id, active.attempt, exc, exc_info=exc)
                message = f"{type(exc).__name__}: {exc}"
                await self._failed(active, message, None, False, started, stack=format_stack(exc))
                return
            try:
                encoded = encode_json(result, "the handler's result")
            except TypeError as exc:
                await self._failed(active, str(exc), "INTERNAL_ERROR", True, started)
                return
            lane.acks.append((lease, encoded, time.monotonic() - started))
        except BaseException:
            # SystemExit and the like: stop renewing the lease, so the stalled check gives the job back.
            self._held.pop(lease.job.id, None)
            raise
        finally:
            self._tasks.pop(lease.job.id, None)
            lane.running -= 1
            lane.dirty = True
            lane.wake.set()

    async def _failed(
        self,
        active: ActiveJob,
        message: str,
        category: str | None,
        final: bool,
        started: float,
        *,
        stack: str | None = None,
    ) -> None:
        lease, seconds = active.lease, time.monotonic() - started
        state = await self._settle(
            lease, lambda: self.consumer.fail(lease, message, final=final, category=category, stack=stack)
        )
        if state is JobState.DELAYED:
            self.stats.retried += 1
            self._hook("on_retry", lease.job, message, category, seconds)
        elif state is JobState.FAILED:
            self.stats.failed += 1
            self._hook("on_fail", lease.job, message, category, seconds)

    async def _stopped(self, active: ActiveJob, seconds: float) -> None:
        lease, reason = active.lease, active.stop_reason
        if reason is StopReason.LEASE_LOST:
            self._held.pop(lease.job.id, None)
            self.stats.lease_lost += 1
            self._hook("on_lease_lost", lease.job)
        elif reason is StopReason.CANCELLED:
            state = await self._settle(
                lease, lambda: self.consumer.fail(lease, "cancelled", final=True, category="CANCELLED")
            )
            if state is not None:
                self.stats.cancelled += 1
                self._hook("on_cancelled", lease.job)
        else:
            if await self._settle(lease, lambda: self.consumer.release(lease)):
                self.stats.released += 1
                self._hook("on_release", lease.job)

    async def _settle(self, lease: Lease, call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a fail/release call, retrying while Redis is away; give up once the lease must have expired
        (the stalled check then recovers the job, so it is never lost)."""
        deadline = time.monotonic() + self.config.lease_ms / 1000 * 2
        errors = 0
        try:
            while True:
                try:
                    return await call()
                except LeaseLost:
                    self.stats.lease_lost += 1
                    self._hook("on_lease_lost", lease.job)
                    return None
                except TRANSIENT as exc:
                    errors += 1
                    self._redis_error("settle", exc)
                    if time.monotonic() > deadline:
                        return None
                    await asyncio.sleep(min(1.0, 0.05 * 2**errors))
        finally:
            self._held.pop(lease.job.id, None)

    # -- background -------------------------------------------------------------------------------------

    async def _poll(self, name: str, fn: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        errors = 0
        while not stop.is_set():
            try:
                await fn()
                errors = 0
                delay = self.periods[name]
            except TRANSIENT as exc:
                errors += 1
                self._redis_error(name, exc)
                delay = min(2.0, self.periods[name] * 2**errors)
            except Exception:  # keep the upkeep loop alive; the next turn may succeed
                errors += 1
                log.exception("%s loop error", name)
                delay = min(2.0, self.periods[name] * 2**errors)
            await _wait_any(stop, seconds=delay)

    async def _heartbeat(self) -> None:
        leases = list(self._held.values())
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": self.config.name,
            "concurrency": self.concurrency,
            "active": len(self._tasks),
            "started_at": self._started_at,
            "draining": self.draining,
            **self.info,
        }
        statuses = await self.consumer.heartbeat(leases, info)
        self._hook("on_heartbeat", len(leases))
        self._wake_lanes()  # so a claim loop whose slots are all busy still turns (readiness reads its time)
        for lease, status in zip(leases, statuses, strict=True):
            entry = self._tasks.get(lease.job.id)
            if entry is None or status is LeaseStatus.RENEWED:
                continue
            task, active = entry
            if active.stop_reason is None:
                active.stop_reason = StopReason.LEASE_LOST if status is LeaseStatus.LOST else StopReason.CANCELLED
                active.cancelled.set()
                task.cancel()

    async def _promote(self) -> None:
        await self.consumer.promote_due()

    async def _recover_stalled(self) -> None:
        outcome = await self.consumer.recover_stalled()
        if outcome and (outcome[0] or outcome[1]):
            self.stats.stalled_recovered += len(outcome[0])
            self._hook("on_stalled", *outcome)

    async def _retention(self) -> None:
        await self.consumer.apply_retention()

    # -- stopping ---------------------------------------------------------------------------------------

    async def _drain(self, force_event: asyncio.Event | None) -> None:
        blocked = [task for lane in self._lanes for task in lane.blocked.values()]
        if blocked:  # each returns within block_ms; a job one of them took is then drained like the rest
            await asyncio.wait(blocked)
        if self._tasks:
            tasks = [task for task, _ in self._tasks.values()]
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.wait(tasks))]
            if force_event is not None:
                waiters.append(asyncio.ensure_future(force_event.wait()))
            await asyncio.wait(waiters, timeout=self.grace_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self._cancel_all(StopReason.SHUTDOWN)
        for lane in self._lanes:
            for attempt in range(20):
                if not lane.acks:
                    break
                try:
                    await self._settle_and_claim(lane, 0)
                except TRANSIENT as exc:
                    self._redis_error("drain", exc)
                    await asyncio.sleep(min(1.0, 0.05 * 2**attempt))

    async def _cancel_all(self, reason: StopReason) -> None:
        entries = list(self._tasks.values())
        for task, active in entries:
            if active.stop_reason is None:
                active.stop_reason = reason
            task.cancel()
        if entries:
            await asyncio.gather(*(task for task, _ in entries), return_exceptions=True)

    def _redis_error(self, where: str, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        log.warning("redis error in %s: %r", where, exc)
        self._hook("on_redis_error", where, exc)

    def _hook(self, name: str, *args: Any) -> None:
        try:
            getattr(self.hooks, name)(*args)
        except Exception:  # a broken metrics hook must not stop the queue
            log.exception("runner hook %s failed", name)


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Wait until any event is set or `seconds` pass."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
