"""The consumer side: claim jobs with a lease, renew it, complete/fail/release, and the upkeep moves."""

from __future__ import annotations

import itertools
import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.exceptions import ResponseError

from certq.queue.backoff import retry_delay
from certq.queue.config import QueueConfig
from certq.queue.errors import LeaseLost
from certq.queue.job import CorruptJob, Job, JobState, Priority, encode_json
from certq.queue.keys import PRIORITIES
from certq.queue.protocol import (
    ClaimedJob,
    CleanCall,
    CompleteCall,
    Completion,
    FailCall,
    HeartbeatCall,
    LeaseStatus,
    ProgressCall,
    PromoteCall,
    RecoverStalledCall,
    ReleaseCall,
    StartCall,
    text,
)
from certq.queue.queue import Clock, wall_clock_ms
from certq.queue.scripts import AnyRedis, Scripts

log = logging.getLogger("certq.queue")

_PRIORITY: dict[bytes | str | None, Priority] = {
    **{priority: priority for priority in PRIORITIES},
    **{priority.encode(): priority for priority in PRIORITIES},
}


@dataclass(slots=True)
class Lease:
    """A claimed job and the token of this attempt's lease (needed to complete, fail or release it).

    `job` carries what a handler needs (payload, attempts, priority, group, timeout, progress); the
    history of earlier attempts (`errors`, `result`) is left out: `Queue.get` has it."""

    job: Job
    token: str

    @property
    def attempt(self) -> int:
        return self.job.attempts


@dataclass(slots=True)
class Claim:
    """What a non-blocking claim got; `paused` means the queue is paused (nothing was taken)."""

    leases: list[Lease]
    paused: bool = False


def _rate_limit_arg(config: QueueConfig) -> str:
    return ";".join(f"{group}={count}/{int(period * 1000)}" for group, (count, period) in config.rate_limits.items())


class Consumer:
    """Claims and settles jobs for one consumer identity. Every move is one Lua script; lease expiry is
    the TTL of the job's lock key, renewed by `heartbeat`."""

    def __init__(
        self,
        redis: AnyRedis,
        config: QueueConfig | None = None,
        *,
        consumer_id: str | None = None,
        clock: Clock = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.config = config or QueueConfig()
        self.keys = self.config.keys
        self.id = consumer_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.rng = rng or random.Random()
        self.scripts = Scripts(redis, self.keys, self.config.events_maxlen)
        self._limits = _rate_limit_arg(self.config)
        self._blmove: bool | None = None
        self._calls = itertools.count(1)
        self._token_base = f"{self.id}:{uuid.uuid4().hex[:8]}"

    def __repr__(self) -> str:
        return f"Consumer({self.id!r}, {self.keys.base!r})"

    def _job_keys(self, job_id: str) -> list[str]:
        return [self.keys.job(job_id), self.keys.lock(job_id)]

    def _token_prefix(self) -> str:
        # Random bits per Consumer object plus a counter: fresh tokens even if two processes share an id.
        return f"{self._token_base}:{next(self._calls)}"

    async def claim(self, count: int = 1) -> Claim:
        """Claim up to `count` waiting jobs (high, then normal, then low) without blocking."""
        statuses, leases, paused = await self.complete_and_claim([], count)
        return Claim(leases, paused)

    async def complete_and_claim(
        self, done: list[tuple[Lease, Any]], claim: int, *, results_encoded: bool = False
    ) -> tuple[list[bool], list[Lease], bool]:
        """Complete `done` (lease, result) pairs and claim up to `claim` more, in one script call.
        Results are JSON-encoded here unless `results_encoded` (then each result is JSON text already).
        Returns (per completion: True if done, False if the lease was lost; new leases; paused)."""
        completions: list[Completion] = []
        declare: list[str] = []
        keys = self.keys if self.scripts.declares else None
        for lease, result in done:
            job = lease.job
            text_result = result if results_encoded else encode_json(result, "result")
            completions.append(Completion(job.id, lease.token, text_result, job.dedupe_key))
            if keys is not None:
                declare += [keys.job(job.id), keys.lock(job.id)]
                if job.dedupe_key:
                    declare.append(keys.dedupe(job.dedupe_key))
        call = CompleteCall(
            now=self.clock(),
            lease_ms=self.config.lease_ms,
            consumer_id=self.id,
            token_prefix=self._token_prefix(),
            claim=claim,
            keep_completed=self.config.keep_completed,
            rate_limits=self._limits,
            completions=completions,
        )
        reply = await self.scripts.complete(call, declare)
        leases: list[Lease] = []
        for item in reply.claimed:
            taken = self._lease(item)
            if isinstance(taken, Lease):
                leases.append(taken)
            else:
                await self._fail(
                    item.job_id, item.token, f"corrupt job: {taken}", "CORRUPT_JOB", final=True, delay_ms=0
                )
        return reply.statuses, leases, reply.paused

    def _lease(self, item: ClaimedJob) -> Lease | CorruptJob:
        """A Lease from a script's claimed_reply (see lua/includes/start.lua), or why the job is unreadable."""
        try:
            data = orjson.loads(item.payload)
            if not isinstance(data, dict):
                raise CorruptJob("payload is not a JSON object")
            job = Job(
                id=item.job_id,
                payload=data,
                state=JobState.ACTIVE,
                attempts=int(item.attempts),
                max_attempts=int(item.max_attempts or 1),
                attempts_base=int(item.attempts_base or 0),
                priority=_PRIORITY.get(item.priority, "normal"),
                group=None if item.group is None else text(item.group),
                timeout_ms=None if item.timeout_ms is None else int(item.timeout_ms),
                created_at=int(item.created_at or 0),
                processed_at=self.clock(),
                stalls=int(item.stalls or 0),
                dedupe_key=None if item.dedupe_key is None else text(item.dedupe_key),
                progress=None if item.progress is None else orjson.loads(item.progress),
            )
        except (ValueError, orjson.JSONDecodeError, CorruptJob) as exc:
            log.warning("job %s is corrupt (%s): moved to failed", item.job_id, exc)
            return exc if isinstance(exc, CorruptJob) else CorruptJob(f"unreadable job data: {exc}")
        return Lease(job, item.token)

    async def claim_blocking(
        self, timeout_ms: int | None = None, priority: Priority = "normal"
    ) -> Lease | Literal["paused"] | None:
        """Block up to `timeout_ms` on BLMOVE from the `priority` wait list (`wait` for normal) to active,
        then take the lease. Returns the Lease, "paused" (the job went back to its list), or None (nothing
        came, or it was diverted: corrupt, cancelled, rate-limited, or taken back by the stalled check)."""
        timeout = (timeout_ms if timeout_ms is not None else self.config.block_ms) / 1000
        source = self.keys.wait_for(priority)
        job_id = await self._block_move(source, timeout)
        if job_id is None:
            return None
        call = StartCall(
            job_id=job_id,
            now=self.clock(),
            lease_ms=self.config.lease_ms,
            token=f"{self._token_prefix()}:b",
            consumer_id=self.id,
            rate_limits=self._limits,
            source=priority,
        )
        reply = await self.scripts.start(call, self._job_keys(job_id))
        if reply.claimed is None:
            return "paused" if reply.status == "paused" else None
        lease = self._lease(reply.claimed)
        if isinstance(lease, Lease):
            return lease
        await self._fail(job_id, call.token, f"corrupt job: {lease}", "CORRUPT_JOB", final=True, delay_ms=0)
        return None

    async def _block_move(self, source: str, timeout_s: float) -> str | None:
        active = self.keys.active
        if self._blmove is not False:
            try:
                value = await self.redis.blmove(source, active, timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
                self._blmove = True
                return None if value is None else text(value)
            except ResponseError as exc:
                if self._blmove or "unknown command" not in str(exc).lower():
                    raise
                self._blmove = False  # Redis < 6.2
        value = await self.redis.brpoplpush(source, active, max(1, round(timeout_s)))  # type: ignore[misc]
        return None if value is None else text(value)

    async def complete(self, lease: Lease, result: Any = None) -> None:
        """Move the job to completed with `result` (JSON); LeaseLost if this lease is no longer held."""
        statuses, _, _ = await self.complete_and_claim([(lease, result)], 0)
        if not statuses[0]:
            raise LeaseLost(lease.job.id, lease.attempt)

    async def fail(
        self, lease: Lease, message: str, *, final: bool = False, category: str | None = None, stack: str | None = None
    ) -> JobState:
        """Fail this attempt: DELAYED (retry after exponential backoff with full jitter) or FAILED (final
        error, attempts spent, or cancelled). LeaseLost if this lease is no longer held. `stack` (a
        traceback) is kept in the attempt's error entry."""
        retry_number = max(1, lease.job.attempts_counted)
        delay = retry_delay(retry_number, self.config.backoff_base_ms, self.config.backoff_cap_ms, self.rng)
        state = await self._fail(
            lease.job.id,
            lease.token,
            message,
            category or "",
            final=final,
            delay_ms=delay,
            attempt=lease.attempt,
            stack=stack,
            dedupe_key=lease.job.dedupe_key,
        )
        if state is None:
            raise LeaseLost(lease.job.id, lease.attempt)
        return state

    async def _fail(
        self,
        job_id: str,
        token: str,
        message: str,
        category: str,
        *,
        final: bool,
        delay_ms: int,
        attempt: int | None = None,
        stack: str | None = None,
        dedupe_key: str | None = None,
    ) -> JobState | None:
        now = self.clock()
        fields: dict[str, Any] = {
            "attempt": attempt,
            "at": now,
            "message": message,
            "category": category or None,
            "consumer": self.id,
        }
        if stack:
            fields["stack"] = stack
        call = FailCall(
            job_id=job_id,
            token=token,
            now=now,
            message=message,
            category=category,
            error_entry=orjson.dumps(fields).decode(),
            final=final,
            delay_ms=delay_ms,
        )
        declare = self._job_keys(job_id)
        if dedupe_key:
            declare.append(self.keys.dedupe(dedupe_key))
        outcome = await self.scripts.fail(call, declare)
        return None if outcome == "lost" else JobState(outcome)

    async def release(self, lease: Lease) -> bool:
        """Give the job back to the front of its wait list without counting the attempt (shutdown)."""
        return await self.scripts.release(ReleaseCall(lease.job.id, lease.token), self._job_keys(lease.job.id))

    async def progress(self, lease: Lease, value: Any) -> None:
        """Record progress (any JSON value) on the job; LeaseLost if this lease is no longer held."""
        call = ProgressCall(lease.job.id, lease.token, encode_json(value, "progress"))
        if not await self.scripts.progress(call, self._job_keys(lease.job.id)):
            raise LeaseLost(lease.job.id, lease.attempt)

    async def heartbeat(self, leases: list[Lease], info: dict[str, Any] | None = None) -> list[LeaseStatus]:
        """Renew every lease and this consumer's registry entry in one call; a LeaseStatus per lease."""
        now = self.clock()
        body = {"id": self.id, "last_seen": now, **(info or {})}
        call = HeartbeatCall(
            now=now,
            lease_ms=self.config.lease_ms,
            consumer_id=self.id,
            info=orjson.dumps(body).decode(),
            worker_ttl_ms=self.config.worker_ttl_ms,
            leases=[(lease.job.id, lease.token) for lease in leases],
        )
        declare = [self.keys.worker(self.id)]
        for lease in leases:
            declare += self._job_keys(lease.job.id)
        return await self.scripts.heartbeat(call, declare)

    async def unregister(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.workers, self.id)
        pipe.delete(self.keys.worker(self.id))
        await pipe.execute()

    async def promote_due(self, limit: int = 1_000) -> tuple[int, int | None]:
        """Move due delayed jobs to wait. Returns (moved, due time of the next delayed job or None)."""
        moved, next_due = await self.scripts.promote(PromoteCall(now=self.clock(), limit=limit))
        return moved, next_due

    async def recover_stalled(self) -> tuple[list[str], list[str]] | None:
        """One pass of the two-pass stalled check; None if another consumer ran it within the interval.
        Returns (ids moved back to wait, ids moved to failed)."""
        call = RecoverStalledCall(self.clock(), self.config.stalled_check_ms, self.config.max_stalls)
        reply = await self.scripts.recover_stalled(call)
        return None if reply is None else (reply.recovered, reply.failed)

    async def apply_retention(self, limit: int = 1_000) -> int:
        """Delete completed/failed jobs older than their max age (the count cap is kept on completion)."""
        now = self.clock()
        deleted = 0
        ages: tuple[tuple[Literal["completed", "failed"], int | None], ...] = (
            ("completed", self.config.completed_max_age_ms),
            ("failed", self.config.failed_max_age_ms),
        )
        for state, age in ages:
            if age is not None:
                deleted += await self.scripts.clean(CleanCall(cutoff=now - age, limit=limit, state=state))
        return deleted
