"""The Runner on the real Redis: concurrency, outcomes, timeouts, cancel, lease loss, drain, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from certq.embedded import free_port
from certq.queue import ActiveJob, Job, JobFailed, JobSpec, JobState, Queue, QueueConfig, Runner, RunnerHooks
from certq.queue.handling import STACK_LIMIT

pytestmark = pytest.mark.real_redis


@pytest.fixture
def fast_config(key_prefix: str) -> QueueConfig:
    return QueueConfig(
        prefix=key_prefix,
        name="run",
        lease_ms=1_000,
        heartbeat_ms=100,
        stalled_check_ms=100,
        promote_ms=50,
        backoff_base_ms=10,
        backoff_cap_ms=20,
        block_ms=100,
    )


@pytest.fixture
def queue(redis_client: aioredis.Redis, fast_config: QueueConfig) -> Queue:
    return Queue(redis_client, fast_config)


class Recorder(RunnerHooks):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.redis_errors = 0
        self.heartbeats = 0
        self.changed = asyncio.Event()

    def _add(self, name: str, job: Job) -> None:
        self.calls.append((name, job.id))
        self.changed.set()

    def on_claim(self, job: Job) -> None:
        self._add("claim", job)

    def on_complete(self, job: Job, seconds: float) -> None:
        self._add("complete", job)

    def on_retry(self, job: Job, error: str, category: str | None, seconds: float) -> None:
        self._add("retry", job)

    def on_fail(self, job: Job, error: str, category: str | None, seconds: float) -> None:
        self._add("fail", job)

    def on_lease_lost(self, job: Job) -> None:
        self._add("lease_lost", job)

    def on_cancelled(self, job: Job) -> None:
        self._add("cancelled", job)

    def on_release(self, job: Job) -> None:
        self._add("release", job)

    def on_heartbeat(self, leases: int) -> None:
        self.heartbeats += 1
        self.changed.set()

    def on_redis_error(self, where: str, error: BaseException) -> None:
        self.redis_errors += 1
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], seconds: float = 10) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Runner], Awaitable[asyncio.Event]]]:
    """Start runners in the background; stop and await them after the test."""
    started: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def start(runner: Runner) -> asyncio.Event:
        stop = asyncio.Event()
        started.append((asyncio.create_task(runner.run(stop)), stop))
        return stop

    yield start
    for _task, stop in started:
        stop.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*(task for task, _ in started))


async def test_burst_runs_every_job_with_exactly_n_at_once(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue_many([JobSpec({"n": n}) for n in range(30)])
    now = peak = 0

    async def handler(active: ActiveJob) -> int:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.005)
        now -= 1
        return int(active.job.payload["n"]) * 2

    runner = Runner(redis_client, fast_config, handler, concurrency=4, burst=True)
    await runner.run()
    assert peak == 4
    counts = await queue.counts()
    assert (counts["completed"], counts["waiting"], counts["active"]) == (30, 0, 0)
    assert runner.stats.completed == 30 and runner.last_claim_loop_at is not None
    assert {job.result for job in await queue.list("completed", 0, 30)} == {n * 2 for n in range(30)}


async def test_handler_outcomes_map_to_retry_or_failed(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue_many([JobSpec({"kind": kind}, job_id=kind) for kind in ("final", "again", "crash")])

    async def handler(active: ActiveJob) -> None:
        kind = active.job.payload["kind"]
        if kind == "final":
            raise JobFailed("no access", final=True, category="AUTH_ERROR")
        if kind == "again":
            raise JobFailed("busy", category="RATE_LIMITED")
        raise RuntimeError("bug")

    hooks = Recorder()
    await Runner(redis_client, fast_config, handler, concurrency=3, burst=True, hooks=hooks).run()
    final, again, crash = [await queue.get(i) for i in ("final", "again", "crash")]
    assert final is not None and (final.state, final.error_category) == (JobState.FAILED, "AUTH_ERROR")
    assert again is not None and (again.state, again.error_category) == (JobState.DELAYED, "RATE_LIMITED")
    assert crash is not None and crash.state is JobState.DELAYED and "RuntimeError: bug" in (crash.last_error or "")
    assert sorted(hooks.calls) == sorted(
        [
            ("claim", "final"),
            ("claim", "again"),
            ("claim", "crash"),
            ("fail", "final"),
            ("retry", "again"),
            ("retry", "crash"),
        ]
    )


def _deep_bug(depth: int) -> None:
    if depth:
        _deep_bug(depth - 1)
    raise RuntimeError("bug in the handler " + "x" * 10_000)


async def test_an_unexpected_handler_error_is_kept_with_its_capped_stack(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue_many([JobSpec({"kind": kind}, job_id=kind) for kind in ("shallow", "deep", "deliberate")])

    def shallow_bug() -> None:
        raise KeyError("region")

    async def handler(active: ActiveJob) -> None:
        kind = active.job.payload["kind"]
        if kind == "shallow":
            shallow_bug()
        if kind == "deep":
            _deep_bug(200)
        raise JobFailed("quota exceeded", final=True, category="QUOTA_EXCEEDED")

    await Runner(redis_client, fast_config, handler, concurrency=3, burst=True).run()
    shallow, deep, deliberate = [await queue.get(i) for i in ("shallow", "deep", "deliberate")]
    assert shallow is not None and deep is not None and deliberate is not None
    [entry] = shallow.errors
    assert entry["message"] == "KeyError: 'region'"
    assert entry["stack"].startswith("Traceback (most recent call last):")
    assert "in shallow_bug" in entry["stack"] and entry["stack"].rstrip().endswith("KeyError: 'region'")
    [entry] = deep.errors
    assert len(entry["stack"]) <= STACK_LIMIT
    assert entry["stack"].startswith("Traceback (most recent call last):") and "characters cut" in entry["stack"]
    assert entry["stack"].rstrip().endswith("x" * 100)  # the end (the error itself) is what is kept whole
    [entry] = deliberate.errors
    assert entry["message"] == "quota exceeded" and "stack" not in entry


async def test_timeout_cancels_the_handler_and_retries_as_timeout(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue({}, job_id="slow", timeout_ms=50)
    cancelled = asyncio.Event()

    async def handler(active: ActiveJob) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await Runner(redis_client, fast_config, handler, concurrency=1, burst=True).run()
    job = await queue.get("slow")
    assert cancelled.is_set()
    assert job is not None and (job.state, job.error_category) == (JobState.DELAYED, "TIMEOUT")


async def test_cancel_from_another_process_stops_the_running_handler(
    redis_client: aioredis.Redis,
    redis_url: str,
    queue: Queue,
    fast_config: QueueConfig,
    running: Callable[[Runner], Awaitable[asyncio.Event]],
) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()
    seen: list[ActiveJob] = []

    async def handler(active: ActiveJob) -> None:
        seen.append(active)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    hooks = Recorder()
    await running(Runner(redis_client, fast_config, handler, concurrency=2, hooks=hooks))
    await queue.enqueue({}, job_id="c")
    async with asyncio.timeout(5):
        await started.wait()
    other_client = aioredis.from_url(redis_url)  # another process's connection
    assert await Queue(other_client, fast_config).cancel("c") == "flagged"
    await other_client.aclose()
    async with asyncio.timeout(1.5):  # the owner learns at its next heartbeat (100 ms here, 500 ms by default)
        await stopped.wait()
    await hooks.until(lambda: ("cancelled", "c") in hooks.calls)
    job = await queue.get("c")
    assert job is not None and job.cancelled and job.state is JobState.FAILED
    assert seen[0].cancelled.is_set() and seen[0].stop_reason == "cancelled"


async def test_lost_lease_aborts_the_handler_and_the_job_runs_again(
    redis_client: aioredis.Redis,
    queue: Queue,
    fast_config: QueueConfig,
    running: Callable[[Runner], Awaitable[asyncio.Event]],
) -> None:
    attempts: list[int] = []
    first_started = asyncio.Event()

    async def handler(active: ActiveJob) -> str:
        attempts.append(active.attempt)
        if active.attempt == 1:
            first_started.set()
            await asyncio.Event().wait()
        return "done"

    hooks = Recorder()
    await running(Runner(redis_client, fast_config, handler, concurrency=2, hooks=hooks))
    await queue.enqueue({}, job_id="l")
    async with asyncio.timeout(5):
        await first_started.wait()
    await redis_client.delete(fast_config.keys.lock("l"))  # as if the lease had expired
    await hooks.until(lambda: ("complete", "l") in hooks.calls)
    assert ("lease_lost", "l") in hooks.calls and attempts == [1, 2]
    job = await queue.get("l")
    assert job is not None and (job.state, job.result, job.stalls) == (JobState.COMPLETED, "done", 1)


async def test_stop_lets_running_jobs_finish_within_grace(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue({}, job_id="g")
    started, finish = asyncio.Event(), asyncio.Event()

    async def handler(active: ActiveJob) -> str:
        started.set()
        await finish.wait()
        return "ok"

    stop = asyncio.Event()
    runner = Runner(redis_client, fast_config, handler, concurrency=1, grace_ms=5_000)
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(5):
        await started.wait()
        stop.set()
        await asyncio.sleep(0)
        finish.set()
        await task
    job = await queue.get("g")
    assert job is not None and job.state is JobState.COMPLETED


async def test_after_grace_running_jobs_are_released_without_counting_the_attempt(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue({}, job_id="r", max_attempts=1)
    started = asyncio.Event()

    async def handler(active: ActiveJob) -> None:
        started.set()
        await asyncio.Event().wait()

    stop, force = asyncio.Event(), asyncio.Event()
    hooks = Recorder()
    runner = Runner(redis_client, fast_config, handler, concurrency=1, grace_ms=60_000, hooks=hooks)
    task = asyncio.create_task(runner.run(stop, force_event=force))
    async with asyncio.timeout(5):
        await started.wait()
        stop.set()
        force.set()  # a second signal: do not wait for the grace period
        await task
    job = await queue.get("r")
    assert job is not None and job.state is JobState.WAITING and job.attempts_counted == 0
    assert hooks.calls[-1] == ("release", "r")
    assert await queue.workers() == []


async def test_idle_runner_picks_up_new_job_and_registers_itself(
    redis_client: aioredis.Redis,
    queue: Queue,
    fast_config: QueueConfig,
    running: Callable[[Runner], Awaitable[asyncio.Event]],
) -> None:
    done = asyncio.Event()

    async def handler(active: ActiveJob) -> None:
        done.set()

    hooks = Recorder()
    runner = Runner(redis_client, fast_config, handler, concurrency=2, info={"health_port": 3002}, hooks=hooks)
    await running(runner)
    await hooks.until(lambda: hooks.heartbeats >= 1)
    [worker] = await queue.workers()
    assert (worker["id"], worker["concurrency"], worker["health_port"]) == (runner.id, 2, 3002)
    await queue.enqueue({}, priority="high")
    async with asyncio.timeout(5):
        await done.wait()


async def test_paused_queue_is_not_claimed_until_resumed(
    redis_client: aioredis.Redis,
    queue: Queue,
    fast_config: QueueConfig,
    running: Callable[[Runner], Awaitable[asyncio.Event]],
) -> None:
    ran: list[Any] = []
    hooks = Recorder()

    async def handler(active: ActiveJob) -> None:
        ran.append(active.job.id)

    await queue.pause()
    await queue.enqueue({}, job_id="p")
    runner = Runner(redis_client, fast_config, handler, concurrency=1, hooks=hooks)
    await running(runner)
    await hooks.until(lambda: hooks.heartbeats >= 3)
    assert runner.last_claim_loop_at is not None and ran == [] and (await queue.counts())["paused"] == 1
    await queue.resume()
    await hooks.until(lambda: ("complete", "p") in hooks.calls)


async def test_runner_survives_redis_being_unreachable(fast_config: QueueConfig) -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    hooks = Recorder()

    async def handler(active: ActiveJob) -> None: ...

    stop = asyncio.Event()
    task = asyncio.create_task(Runner(client, fast_config, handler, hooks=hooks).run(stop))
    await hooks.until(lambda: hooks.redis_errors >= 5)
    stop.set()
    async with asyncio.timeout(10):
        await task
    await client.aclose()


@pytest.mark.slow
async def test_runner_rides_out_a_redis_restart(key_prefix: str) -> None:
    from certq.embedded import start_redis

    server = start_redis()
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    client = aioredis.from_url(server.url, socket_connect_timeout=0.5)
    config = QueueConfig(prefix=key_prefix, name="restart", heartbeat_ms=100, block_ms=100)
    done: list[str] = []
    finished = asyncio.Event()

    async def handler(active: ActiveJob) -> None:
        done.append(active.job.id)
        finished.set()

    hooks = Recorder()
    stop = asyncio.Event()
    task = asyncio.create_task(Runner(client, config, handler, hooks=hooks).run(stop))
    try:
        await Queue(client, config).enqueue({}, job_id="before")
        async with asyncio.timeout(10):
            await finished.wait()
        server.stop()
        await hooks.until(lambda: hooks.redis_errors >= 3)
        server = start_redis(port=port)
        finished.clear()
        async with asyncio.timeout(20):
            while True:  # the producer retries too until Redis answers again
                try:
                    await Queue(client, config).enqueue({}, job_id="after")
                    break
                except (aioredis.ConnectionError, OSError):
                    await asyncio.sleep(0.1)
            await finished.wait()
        assert done == ["before", "after"] and not task.done()
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
        await client.aclose()
        server.stop()


async def test_unserializable_result_fails_the_job_and_the_runner_goes_on(
    redis_client: aioredis.Redis, queue: Queue, fast_config: QueueConfig
) -> None:
    await queue.enqueue_many([JobSpec({"bad": True}, job_id="bad"), JobSpec({"bad": False}, job_id="good")])

    async def handler(active: ActiveJob) -> object:
        return object() if active.job.payload["bad"] else {"ok": 1}

    runner = Runner(redis_client, fast_config, handler, concurrency=1, burst=True)
    await runner.run()
    bad, good = await queue.get("bad"), await queue.get("good")
    assert bad is not None and (bad.state, bad.error_category) == (JobState.FAILED, "INTERNAL_ERROR")
    assert "not JSON-serializable" in (bad.last_error or "")
    assert good is not None and good.state is JobState.COMPLETED


async def test_idle_runner_wakes_at_once_for_every_priority(
    redis_client: aioredis.Redis, key_prefix: str, running: Callable[[Runner], Awaitable[asyncio.Event]]
) -> None:
    # block_ms is long here: a pickup well within it proves the runner was woken, not polling.
    config = QueueConfig(prefix=key_prefix, name="wake", block_ms=3_000, heartbeat_ms=100)
    queue = Queue(redis_client, config)
    picked = asyncio.Event()
    ran: list[str] = []

    async def handler(active: ActiveJob) -> None:
        ran.append(active.job.id)
        picked.set()

    hooks = Recorder()
    await running(Runner(redis_client, config, handler, concurrency=3, hooks=hooks))
    await hooks.until(lambda: hooks.heartbeats >= 2)  # idle and blocked by now
    for priority in ("high", "low", "normal"):
        picked.clear()
        await queue.enqueue({}, job_id=priority, priority=priority)
        async with asyncio.timeout(1.5):
            await picked.wait()
    assert ran == ["high", "low", "normal"]
