"""Every Redis key name of a queue, built in one place: `<prefix>:<queue>:<what>`."""

from __future__ import annotations

from dataclasses import dataclass

from certq.queue.job import Priority

PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
"""Claim order: strictly high before normal before low."""


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue.

    `wait` (normal priority), `wait:high` and `wait:low` are LISTs consumed from the right; `active`,
    `completed` and `failed` are LISTs (newest on the left); `delayed` is a ZSET scored by due time (ms).
    Per job: a HASH `job:<id>` (payload, state, attempts, priority, timestamps, errors, result, the current
    lease token) and a lease STRING `lock:<id>` holding the token, whose TTL is the lease.
    A hash-tagged prefix (`{myia}`) keeps all of them in one Redis Cluster slot.
    """

    prefix: str = "myia"
    name: str = "model-certification"

    @property
    def base(self) -> str:
        return f"{self.prefix}:{self.name}:"

    @property
    def wait(self) -> str:
        return self.base + "wait"

    @property
    def wait_high(self) -> str:
        return self.base + "wait:high"

    @property
    def wait_low(self) -> str:
        return self.base + "wait:low"

    def wait_for(self, priority: Priority) -> str:
        return {"high": self.wait_high, "normal": self.wait, "low": self.wait_low}[priority]

    @property
    def wait_lists(self) -> tuple[str, str, str]:
        """The three waiting lists in claim order."""
        return (self.wait_high, self.wait, self.wait_low)

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def failed(self) -> str:
        return self.base + "failed"

    @property
    def delayed(self) -> str:
        return self.base + "delayed"

    @property
    def stalled(self) -> str:
        """SET of active ids marked by the previous stalled check (Bull's two-pass check)."""
        return self.base + "stalled"

    @property
    def stalled_check(self) -> str:
        """STRING with a TTL: only one consumer runs the stalled check per interval."""
        return self.base + "stalled-check"

    @property
    def meta(self) -> str:
        """HASH of queue-wide flags (`paused`)."""
        return self.base + "meta"

    @property
    def events(self) -> str:
        """Capped STREAM of state changes."""
        return self.base + "events"

    @property
    def workers(self) -> str:
        """ZSET of consumer ids scored by their last heartbeat (ms)."""
        return self.base + "workers"

    @property
    def job_prefix(self) -> str:
        return self.base + "job:"

    @property
    def lock_prefix(self) -> str:
        return self.base + "lock:"

    @property
    def dedupe_prefix(self) -> str:
        return self.base + "dedupe:"

    @property
    def limiter_prefix(self) -> str:
        return self.base + "limiter:"

    @property
    def worker_prefix(self) -> str:
        return self.base + "worker:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def lock(self, job_id: str) -> str:
        return self.lock_prefix + job_id

    def dedupe(self, dedupe_key: str) -> str:
        return self.dedupe_prefix + dedupe_key

    def limiter(self, group: str) -> str:
        return self.limiter_prefix + group

    def worker(self, consumer_id: str) -> str:
        return self.worker_prefix + consumer_id

    def all_fixed(self) -> list[str]:
        """Every key of the queue that is not per job, per group or per worker."""
        return [
            *self.wait_lists,
            self.active,
            self.completed,
            self.failed,
            self.delayed,
            self.stalled,
            self.stalled_check,
            self.meta,
            self.events,
            self.workers,
        ]
