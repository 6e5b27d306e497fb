"""A consumer SIGKILLed mid-jobs: another one recovers and finishes every job, none lost, none done twice."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from certq.queue import ActiveJob, Job, JobSpec, Queue, QueueConfig, Runner, RunnerHooks

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


class Clocked(RunnerHooks):
    def __init__(self, total: int, done: asyncio.Event) -> None:
        self.claimed_at: dict[str, float] = {}
        self.completed: collections.Counter[str] = collections.Counter()
        self.total, self.done = total, done

    def on_claim(self, job: Job) -> None:
        self.claimed_at.setdefault(job.id, time.monotonic())

    def on_complete(self, job: Job, seconds: float) -> None:
        self.completed[job.id] += 1
        if len(self.completed) >= self.total:
            self.done.set()


async def test_sigkilled_consumer_jobs_run_again_within_5s_and_finish_once(
    redis_client: aioredis.Redis, redis_url: str, key_prefix: str
) -> None:
    config = QueueConfig(prefix=key_prefix, name="crash")  # library defaults: lease 3 s, stalled check 0.5 s
    queue = Queue(redis_client, config)
    total = 60
    ids = {job.id for job in await queue.enqueue_many([JobSpec({"work_s": 0.2}) for _ in range(total)])}
    started_key = f"{key_prefix}:test:started"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("consumer_process.py")),
        redis_url,
        key_prefix,
        "crash",
        started_key,
    )
    try:
        async with asyncio.timeout(30):
            for _ in range(15):  # wait for 15 handler starts
                assert await redis_client.blpop([started_key], 20) is not None  # type: ignore[misc]
    finally:
        process.kill()  # SIGKILL
        async with asyncio.timeout(10):
            await process.wait()
    killed_at = time.monotonic()
    in_flight = {raw.decode() for raw in await redis_client.lrange(config.keys.active, 0, -1)}  # type: ignore[misc]
    assert in_flight, "the consumer should have died holding jobs"

    done = asyncio.Event()
    hooks = Clocked(total - (await queue.counts())["completed"], done)

    async def handler(active: ActiveJob) -> str:
        return "done"

    stop = asyncio.Event()
    runner_task = asyncio.create_task(Runner(redis_client, config, handler, concurrency=10, hooks=hooks).run(stop))
    try:
        async with asyncio.timeout(30):
            await done.wait()
    finally:
        stop.set()
        await runner_task

    rerun_delays = [hooks.claimed_at[job_id] - killed_at for job_id in in_flight]
    assert max(rerun_delays) < 5.0, rerun_delays
    completed = [raw.decode() for raw in await redis_client.lrange(config.keys.completed, 0, -1)]  # type: ignore[misc]
    assert sorted(completed) == sorted(ids)  # every job completed exactly once
    events = await queue.events("0", 100_000)
    per_job = collections.Counter(fields["jobId"] for _, fields in events if fields["event"] == "completed")
    assert set(per_job.values()) == {1} and set(per_job) == ids
    counts = await queue.counts()
    assert (counts["waiting"], counts["active"], counts["failed"], counts["delayed"]) == (0, 0, 0, 0)
