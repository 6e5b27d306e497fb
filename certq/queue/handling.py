"""What a handler and an observer of the Runner see: the active job, the hooks, the counters."""

from __future__ import annotations

import asyncio
import enum
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from certq.queue.consumer import Consumer, Lease
from certq.queue.job import Job

STACK_LIMIT = 4_096
"""Characters of a handler's traceback kept in the attempt's error entry (every attempt keeps one)."""


class StopReason(enum.StrEnum):
    """Why a running job's handler was stopped (`ActiveJob.stop_reason`; None when the job's own timeout
    stopped it). Cancelled: failed as cancelled; lease lost: left to the new owner; the others: released."""

    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"
    DEPENDENCY_DOWN = "dependency_down"
    """Set by a handler that gives the job back because something it needs is unavailable."""


class ActiveJob:
    """What a handler gets: the job, its attempt number, progress reporting and a cancel signal.

    `cancelled` is set (and the handler task cancelled) when someone cancels the job; `stop_reason`
    then says why the runner stopped it (a StopReason)."""

    def __init__(self, lease: Lease, consumer: Consumer) -> None:
        self.lease = lease
        self.job: Job = lease.job
        self.attempt: int = lease.job.attempts
        self.cancelled = asyncio.Event()
        self.stop_reason: StopReason | None = None
        self._consumer = consumer

    async def progress(self, value: Any) -> None:
        """Record progress (any JSON value, e.g. {"done": 3, "total": 10}); LeaseLost if the lease is gone."""
        await self._consumer.progress(self.lease, value)


Handler = Callable[[ActiveJob], Awaitable[Any]]


class RunnerHooks:
    """Callbacks for metrics and logs; override what you need. They run in the event loop, must not
    block, and an exception in one is logged and ignored. `seconds` is the handler's run time."""

    def on_claim(self, job: Job) -> None: ...
    def on_complete(self, job: Job, seconds: float) -> None: ...
    def on_retry(self, job: Job, error: str, category: str | None, seconds: float) -> None: ...
    def on_fail(self, job: Job, error: str, category: str | None, seconds: float) -> None: ...
    def on_lease_lost(self, job: Job) -> None: ...
    def on_cancelled(self, job: Job) -> None: ...
    def on_release(self, job: Job) -> None: ...
    def on_stalled(self, recovered: list[str], failed: list[str]) -> None: ...
    def on_heartbeat(self, leases: int) -> None: ...
    def on_redis_error(self, where: str, error: BaseException) -> None: ...


@dataclass(slots=True)
class RunnerStats:
    claimed: int = 0
    completed: int = 0
    retried: int = 0
    failed: int = 0
    timeouts: int = 0
    cancelled: int = 0
    lease_lost: int = 0
    released: int = 0
    stalled_recovered: int = 0
    redis_errors: int = 0


def format_stack(exc: BaseException, limit: int = STACK_LIMIT) -> str:
    """The traceback of an unexpected handler error, at most `limit` characters: its start (where the
    handler was entered) and, kept longer, its end (the innermost frames and the error itself)."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 48  # room for the marker, whatever the count's digits
    marker = f"\n... ({len(text) - head - tail} characters cut) ...\n"
    return text[:head] + marker + text[len(text) - tail :]
