"""The producer and admin side of a queue: enqueue, inspect, retry, clean, pause, cancel, follow events."""

from __future__ import annotations

import builtins
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from certq.queue.config import QueueConfig
from certq.queue.errors import InvalidJob, JobStateError
from certq.queue.job import CorruptJob, Job, JobState, Priority, encode_json
from certq.queue.keys import PRIORITIES
from certq.queue.protocol import (
    CancelCall,
    CancelOutcome,
    CleanCall,
    EnqueueCall,
    EnqueueJob,
    PromoteCall,
    RemoveCall,
    RetryCall,
    text,
)
from certq.queue.scripts import AnyRedis, Scripts

Clock = Callable[[], int]
LISTABLE = ("waiting", "active", "delayed", "completed", "failed")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job for `Queue.enqueue_many` (the same options as `Queue.enqueue`)."""

    payload: dict[str, Any]
    job_id: str | None = None
    priority: Priority = "normal"
    delay_ms: int = 0
    max_attempts: int | None = None
    timeout_ms: int | None = None
    dedupe_key: str | None = None
    group: str | None = None


class Queue:
    """Producer/admin handle on one queue. Works with `redis.asyncio.Redis` and `RedisCluster`
    (with a hash-tagged prefix every key of the queue lives in one slot).

    `clock` returns epoch milliseconds; tests pass a fake one. Every state change is one Lua script.
    """

    def __init__(self, redis: AnyRedis, config: QueueConfig | None = None, *, clock: Clock = wall_clock_ms) -> None:
        self.redis = redis
        self.config = config or QueueConfig()
        self.keys = self.config.keys
        self.clock = clock
        self.scripts = Scripts(redis, self.keys, self.config.events_maxlen)
        # Default job ids: 128 random bits per Queue object plus a counter (unique, and cheap in bulk).
        self._id_base = uuid.uuid4().hex
        self._id_counter = itertools.count(1)

    def __repr__(self) -> str:
        return f"Queue({self.keys.base!r})"

    async def enqueue(
        self,
        payload: dict[str, Any],
        *,
        job_id: str | None = None,
        priority: Priority = "normal",
        delay_ms: int = 0,
        max_attempts: int | None = None,
        timeout_ms: int | None = None,
        dedupe_key: str | None = None,
        group: str | None = None,
    ) -> Job:
        """Add one job and return it. If `job_id` exists, or `dedupe_key` names a job still waiting,
        delayed or active, nothing is added and that job is returned with `existing=True`.
        Raises InvalidJob (naming the argument) for a payload that is not a JSON object, bad priority, etc."""
        spec = JobSpec(payload, job_id, priority, delay_ms, max_attempts, timeout_ms, dedupe_key, group)
        return (await self.enqueue_many([spec]))[0]

    async def enqueue_many(self, specs: Iterable[JobSpec], *, batch_size: int = 1_000) -> list[Job]:
        """Add many jobs: one round trip (one script call) per batch of `batch_size`."""
        out: list[Job] = []
        batch: list[tuple[Job, EnqueueJob]] = []
        for spec in specs:
            batch.append(self._prepare(spec))
            if len(batch) >= batch_size:
                out.extend(await self._enqueue_batch(batch))
                batch = []
        if batch:
            out.extend(await self._enqueue_batch(batch))
        return out

    def _prepare(self, spec: JobSpec) -> tuple[Job, EnqueueJob]:
        """Validate one spec; returns the Job as it will be stored and what the enqueue script gets for it."""
        if not isinstance(spec.payload, dict):
            raise InvalidJob("payload", "must be a JSON object (dict)")
        try:
            payload_text = encode_json(spec.payload)
        except TypeError as exc:
            raise InvalidJob("payload", str(exc)) from None
        if spec.priority not in PRIORITIES:
            raise InvalidJob("priority", f"{spec.priority!r} is not high, normal or low")
        max_attempts = self.config.default_max_attempts if spec.max_attempts is None else spec.max_attempts
        _check_int("max_attempts", max_attempts, minimum=1)
        _check_int("delay_ms", spec.delay_ms, minimum=0)
        if spec.timeout_ms is not None:
            _check_int("timeout_ms", spec.timeout_ms, minimum=1)
        job_id = spec.job_id if spec.job_id is not None else f"{self._id_base}-{next(self._id_counter)}"
        for field, value in (("job_id", job_id), ("dedupe_key", spec.dedupe_key), ("group", spec.group)):
            if value is not None and (not isinstance(value, str) or not value or len(value) > 512 or "\0" in value):
                raise InvalidJob(field, "must be a non-empty string of at most 512 characters, without NUL")
        job = Job(
            id=job_id,
            payload=spec.payload,
            state=JobState.DELAYED if spec.delay_ms > 0 else JobState.WAITING,
            max_attempts=max_attempts,
            priority=spec.priority,
            group=spec.group,
            timeout_ms=spec.timeout_ms,
            dedupe_key=spec.dedupe_key,
        )
        entry = EnqueueJob(
            job_id=job_id,
            payload=payload_text,
            priority=spec.priority,
            delay_ms=spec.delay_ms,
            max_attempts=max_attempts,
            timeout_ms=spec.timeout_ms,
            dedupe_key=spec.dedupe_key,
            group=spec.group,
        )
        return job, entry

    async def _enqueue_batch(self, batch: list[tuple[Job, EnqueueJob]]) -> list[Job]:
        now = self.clock()
        declare: list[str] = []
        if self.scripts.declares:
            for job, _ in batch:
                declare.append(self.keys.job(job.id))
                if job.dedupe_key:
                    declare.append(self.keys.dedupe(job.dedupe_key))
        replies = await self.scripts.enqueue(EnqueueCall(now, [entry for _, entry in batch]), declare)
        out: list[Job] = []
        for (job, entry), (added, job_id) in zip(batch, replies, strict=True):
            if added:
                job.created_at = now
                if job.state is JobState.DELAYED:
                    job.due_at = now + entry.delay_ms
                out.append(job)
            else:
                existing = await self.get(job_id)
                if existing is None:  # removed in between: report what was asked for, not added
                    existing = job
                existing.existing = True
                out.append(existing)
        return out

    async def get(self, job_id: str) -> Job | None:
        """The job, or None. A corrupt hash comes back as a failed Job whose last_error says why."""
        raw = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[misc]
        return _to_job(job_id, raw) if raw else None

    async def counts(self) -> dict[str, int]:
        """Jobs per state: waiting (all priorities), active, delayed, completed, failed, and paused (the
        waiting jobs while the queue is paused, else 0); also waiting_high/normal/low."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(k.wait_high)
        pipe.llen(k.wait)
        pipe.llen(k.wait_low)
        pipe.llen(k.active)
        pipe.zcard(k.delayed)
        pipe.llen(k.completed)
        pipe.llen(k.failed)
        pipe.hget(k.meta, "paused")
        high, normal, low, active, delayed, completed, failed, paused = await pipe.execute()
        waiting = int(high) + int(normal) + int(low)
        return {
            "waiting": waiting,
            "active": int(active),
            "delayed": int(delayed),
            "completed": int(completed),
            "failed": int(failed),
            "paused": waiting if paused in (b"1", "1") else 0,
            "waiting_high": int(high),
            "waiting_normal": int(normal),
            "waiting_low": int(low),
        }

    async def ids(self, state: str | JobState, offset: int = 0, limit: int = 50) -> list[str]:
        """Job ids in a state: waiting in claim order (high, normal, low; oldest first), delayed soonest
        first, active/completed/failed newest first."""
        state = _state(state)
        if offset < 0 or limit < 0:
            raise InvalidJob("offset" if offset < 0 else "limit", "must not be negative")
        if limit == 0:
            return []
        k = self.keys
        if state is JobState.DELAYED:
            raw = await self.redis.zrange(k.delayed, offset, offset + limit - 1)
        elif state is JobState.WAITING:
            raw = []
            skip = offset
            for key in k.wait_lists:
                if len(raw) >= limit:
                    break
                size = int(await self.redis.llen(key))  # type: ignore[misc]
                if skip >= size:
                    skip -= size
                    continue
                # Consumers pop from the right, so the oldest job is the last element.
                stop = -1 - skip
                start = stop - (limit - len(raw)) + 1
                chunk = await self.redis.lrange(key, max(start, -size), stop)  # type: ignore[misc]
                raw.extend(reversed(chunk))
                skip = 0
        else:
            key = {JobState.ACTIVE: k.active, JobState.COMPLETED: k.completed, JobState.FAILED: k.failed}[state]
            raw = await self.redis.lrange(key, offset, offset + limit - 1)  # type: ignore[misc]
        return [text(item) for item in raw]

    async def list(self, state: str | JobState, offset: int = 0, limit: int = 50) -> builtins.list[Job]:
        """Jobs in a state, paged (order as in `ids`)."""
        ids = await self.ids(state, offset, limit)
        return await self.get_many(ids)

    async def get_many(self, job_ids: Sequence[str]) -> builtins.list[Job]:
        """Jobs by id in one round trip; ids whose hash is gone are left out."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        raws = await pipe.execute()
        return [_to_job(job_id, raw) for job_id, raw in zip(job_ids, raws, strict=True) if raw]

    async def retry(self, job_id: str) -> None:
        """Replay one failed job with a fresh budget of attempts; JobStateError if it is not failed."""
        if not await self.scripts.retry(RetryCall(job_id), [self.keys.job(job_id)]):
            job = await self.get(job_id)
            raise JobStateError(job_id, job.state.value if job else "missing", "only failed jobs can be retried")

    async def retry_all_failed(self) -> int:
        """Replay every failed job that was not cancelled; returns how many."""
        return await self.scripts.retry(RetryCall())

    async def promote(self, job_id: str) -> None:
        """Run a delayed job now; JobStateError if it is not delayed."""
        moved, _ = await self.scripts.promote(PromoteCall(self.clock(), 1, job_id), [self.keys.job(job_id)])
        if not moved:
            job = await self.get(job_id)
            raise JobStateError(job_id, job.state.value if job else "missing", "only delayed jobs can be promoted")

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not active (False if there is no such job); JobStateError if active."""
        outcome = await self.scripts.remove(RemoveCall(job_id), [self.keys.job(job_id), self.keys.lock(job_id)])
        if outcome == "active":
            raise JobStateError(job_id, "active", "cancel an active job instead of removing it")
        return outcome == "removed"

    async def clean(self, state: str | JobState, older_than_ms: int, limit: int = 1_000) -> int:
        """Delete up to `limit` completed or failed jobs that finished more than `older_than_ms` ago."""
        state = _state(state)
        if state not in (JobState.COMPLETED, JobState.FAILED):
            raise InvalidJob("state", "only completed or failed jobs can be cleaned")
        _check_int("older_than_ms", older_than_ms, minimum=0)
        _check_int("limit", limit, minimum=0)
        which: Literal["completed", "failed"] = "completed" if state is JobState.COMPLETED else "failed"
        return await self.scripts.clean(CleanCall(cutoff=self.clock() - older_than_ms, limit=limit, state=which))

    async def pause(self) -> None:
        """Consumers stop claiming (running jobs finish); enqueue keeps working."""
        await self.redis.hset(self.keys.meta, "paused", "1")  # type: ignore[misc]

    async def resume(self) -> None:
        await self.redis.hdel(self.keys.meta, "paused")  # type: ignore[misc]

    async def is_paused(self) -> bool:
        return await self.redis.hget(self.keys.meta, "paused") in (b"1", "1")  # type: ignore[misc]

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel from any process: "removed" (was waiting/delayed; now failed as cancelled), "flagged"
        (active: its consumer stops it within a heartbeat), "finished" or "not_found"."""
        return await self.scripts.cancel(CancelCall(job_id, self.clock()), [self.keys.job(job_id)])

    async def events(
        self, last_id: str = "0", count: int = 100, block_ms: int | None = None
    ) -> builtins.list[tuple[str, dict[str, str]]]:
        """State changes after stream id `last_id` ("$" = only new ones; pass the last id you saw)."""
        reply = await self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
        out: builtins.list[tuple[str, dict[str, str]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                out.append((text(entry_id), {text(k): text(v) for k, v in fields.items()}))
        return out

    async def workers(self) -> builtins.list[dict[str, Any]]:
        """Live consumers: the info each one publishes with its heartbeat (id, host, pid, queue, concurrency,
        active, draining, started_at, last_seen and whatever its owner added, e.g. health_port). A consumer
        is live while its registry key has not expired (Redis TTL), so clocks of other hosts do not matter."""
        ids = [text(i) for i in await self.redis.zrange(self.keys.workers, 0, -1)]
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for consumer_id in ids:
            pipe.get(self.keys.worker(consumer_id))
        infos = await pipe.execute()
        return [orjson.loads(info) for info in infos if info]


def _to_job(job_id: str, raw: dict[Any, Any]) -> Job:
    try:
        return Job.from_hash(raw)
    except CorruptJob as exc:
        return Job(
            id=job_id, payload={}, state=JobState.FAILED, last_error=f"corrupt job: {exc}", error_category="CORRUPT_JOB"
        )


def _state(state: str | JobState) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise InvalidJob("state", f"{state!r} is not one of {', '.join(LISTABLE)}") from None


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidJob(field, f"must be an integer >= {minimum}")
