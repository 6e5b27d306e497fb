"""A queue-level drill: producers and Runners on any Redis topology while a fault strikes; ends in a Ledger.

Used by the HA tests (Sentinel failover, Cluster restart and slot migration) and by `certq chaos` for
the queue-only scenarios. Jobs are enqueued while the runners work, so a fault hits enqueues, claims,
heartbeats and completions alike. Every wait is bounded by the drill's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import RedisError

from certq.chaos.ledger import Ledger, count_twice
from certq.connections import AnyRedis
from certq.queue import ActiveJob, Job, JobState, Queue, QueueConfig, Runner, RunnerHooks

log = logging.getLogger("certq.chaos")

ClientFactory = Callable[[], AnyRedis]
Fault = Callable[["DrillState"], Awaitable[None]]


@dataclass
class DrillState:
    """What a fault can look at: progress so far and when it struck."""

    n: int
    runs: Counter[str] = field(default_factory=Counter)
    completions: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    enqueue_errors: int = 0
    fault_started: float | None = None
    fault_ended: float | None = None
    finish_times: list[float] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    notes: dict[str, Any] = field(default_factory=dict)

    def finished_count(self) -> int:
        return len(self.completions)

    async def wait_finished(self, count: int, within_s: float) -> None:
        """Until `count` jobs have finished (bounded)."""
        async with asyncio.timeout(within_s):
            while self.finished_count() < count:
                self.progress.clear()
                await self.progress.wait()


class _Tracker(RunnerHooks):
    def __init__(self, state: DrillState) -> None:
        self.state = state

    def on_complete(self, job: Job, seconds: float) -> None:
        state = self.state
        state.completions[job.id] += 1
        state.finish_times.append(time.monotonic())
        state.progress.set()


async def run_drill(
    scenario: str,
    client_factory: ClientFactory,
    configs: list[QueueConfig],
    n: int,
    fault: Fault,
    *,
    runners_per_queue: int = 2,
    concurrency: int = 4,
    work_s: float = 0.05,
    enqueue_every_s: float = 0.01,
    timeout_s: float = 60.0,
) -> Ledger:
    """Enqueue `n` jobs round-robin over `configs` while Runners process them and `fault` runs; then wait
    (at most `timeout_s` in all) until every accepted job finished, and count."""
    state = DrillState(n)
    started = time.monotonic()
    deadline = started + timeout_s
    stop = asyncio.Event()
    tracker = _Tracker(state)

    async def handler(active: ActiveJob) -> dict[str, str]:
        state.runs[active.job.id] += 1
        await asyncio.sleep(work_s)
        return {"done": active.job.id}

    clients: list[AnyRedis] = []

    def client() -> AnyRedis:
        made = client_factory()
        clients.append(made)
        return made

    runners = [
        Runner(client(), config, handler, concurrency=concurrency, hooks=tracker, grace_ms=2_000)
        for config in configs
        for _ in range(runners_per_queue)
    ]
    producer_client = client()
    queues = [Queue(producer_client, config) for config in configs]
    tasks = [asyncio.create_task(runner.run(stop), name=f"drill-runner-{i}") for i, runner in enumerate(runners)]
    try:
        producer = asyncio.create_task(_produce(state, queues, enqueue_every_s, deadline))
        fault_task = asyncio.create_task(_strike(state, fault))
        await _bounded(producer, deadline)
        await _bounded(fault_task, deadline)
        await _settled(state, queues, deadline)
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        states = await _final_states(queues, state.accepted)
        for made in clients:
            with contextlib.suppress(RedisError, OSError):
                await made.aclose()
        await _close_orphaned_cluster_nodes()
    return _ledger(scenario, state, states, time.monotonic() - started)


async def _close_orphaned_cluster_nodes() -> None:
    """redis-py's RedisCluster replaces its node objects after a failover or MOVED without closing the old ones;
    close their sockets here. Left to the garbage collector, their ResourceWarnings surface at random moments
    inside unrelated code (on CPython 3.11 even inside the AST compiler, as a SystemError)."""
    gc.collect()
    for obj in gc.get_objects():
        if isinstance(obj, ClusterNode) and obj._connections:
            with contextlib.suppress(Exception):
                await obj.disconnect()
    gc.collect()


async def _bounded(task: asyncio.Task[None], deadline: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), max(0.1, deadline - time.monotonic()))
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _produce(state: DrillState, queues: list[Queue], every_s: float, deadline: float) -> None:
    for index in range(state.n):
        job_id = f"drill-{index:05d}"
        queue = queues[index % len(queues)]
        while time.monotonic() < deadline:
            try:
                await queue.enqueue({"index": index}, job_id=job_id)
                state.accepted.add(job_id)
                break
            except (RedisError, OSError) as exc:  # not accepted: the producer retries, as an API client would
                state.enqueue_errors += 1
                log.info("enqueue %s failed (%r); retrying", job_id, exc)
                await asyncio.sleep(0.1)
        await asyncio.sleep(every_s)


async def _strike(state: DrillState, fault: Fault) -> None:
    await state.wait_finished(max(1, state.n // 4), within_s=30)
    state.fault_started = time.monotonic()
    await fault(state)
    state.fault_ended = time.monotonic()


async def _settled(state: DrillState, queues: list[Queue], deadline: float) -> None:
    """Until every accepted job is completed in Redis, or the deadline. The hooks alone cannot tell: an ack
    whose reply was lost in a failover counts as a lost lease although the job completed."""
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await state.wait_finished(len(state.accepted), min(0.5, max(0.01, deadline - time.monotonic())))
        states = await _final_states(queues, state.accepted, attempts=1)
        if all(states.get(job_id) == JobState.COMPLETED.value for job_id in state.accepted):
            return


async def _final_states(queues: list[Queue], ids: set[str], attempts: int = 20) -> dict[str, str]:
    """job id -> final state word in Redis ("missing" when its hash is gone)."""
    out: dict[str, str] = {}
    for queue in queues:
        for attempt in range(attempts):
            try:
                jobs = await queue.get_many(sorted(ids))
                break
            except (RedisError, OSError):
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
        else:
            continue
        out.update({job.id: job.state.value for job in jobs})
    return out


def _ledger(scenario: str, state: DrillState, states: dict[str, str], elapsed: float) -> Ledger:
    ledger = Ledger(scenario, accepted=len(state.accepted), elapsed_s=elapsed)
    for job_id in state.accepted:
        final = states.get(job_id, "missing")
        if final == JobState.COMPLETED.value:
            ledger.finished += 1
        elif final == "missing":
            ledger.lost += 1
        else:
            ledger.stuck += 1
    ledger.finished_twice = count_twice(state.completions)
    ledger.ran_twice = count_twice(state.runs)
    if state.fault_started is not None and state.fault_ended is not None:
        after = [at for at in state.finish_times if at >= state.fault_ended]
        if after:
            ledger.recover_s = min(after) - state.fault_started
    ledger.notes = {
        "enqueue_errors": state.enqueue_errors,
        "completion_acks": sum(state.completions.values()),
        **state.notes,
    }
    return ledger
