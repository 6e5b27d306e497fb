"""Readiness proves the claim loop is turning and PostgreSQL takes writes, not only that pings answer (in-process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from certq.queue import Queue, Runner
from certq.settings import load_settings
from certq.worker.daemon import CLAIM_LOOP_STALE_S, Worker
from certq.worker.testing import noop
from tests.worker.helpers import QUEUE_NAME, wait_finished

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def worker(
    redis_url: str, key_prefix: str, migrated_database_url: str, redis_client: object
) -> AsyncIterator[Worker]:
    settings = load_settings(
        redis_url=redis_url,
        database_url=migrated_database_url,
        queue_prefix=key_prefix,
        queue_name=QUEUE_NAME,
        worker_health_host="127.0.0.1",
        worker_health_port=0,
    )
    running = Worker(settings, handler=noop, registry=CollectorRegistry())
    task = asyncio.create_task(running.run())
    await asyncio.wait_for(running.claiming.wait(), 10)
    try:
        yield running
    finally:
        running.request_stop("test")
        assert await task == 0


async def test_ready_once_the_claim_loop_turns_and_dependencies_answer(worker: Worker) -> None:
    check = await worker.ready()
    assert check.ok and check.details == {"activeJobs": 0, "concurrency": 3}


async def test_a_claim_loop_that_stopped_turning_is_not_ready(worker: Worker) -> None:
    assert worker.runner is not None
    worker.runner.last_claim_loop_at = time.monotonic() - CLAIM_LOOP_STALE_S - 1
    check = await worker.ready()
    assert not check.ok and "claim loop has not turned" in (check.reason or "")


async def test_a_claim_loop_hitting_redis_errors_is_not_ready_even_if_ping_answers(worker: Worker) -> None:
    worker.hooks.on_redis_error("claim", ConnectionError("NOSCRIPT or worse"))
    check = await worker.ready()
    assert not check.ok and "claim loop failing" in (check.reason or "")


async def test_draining_is_not_ready(worker: Worker) -> None:
    worker.request_stop("test")
    check = await worker.ready()
    assert not check.ok and check.reason == "draining"


def refuse_writes(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a handler reports when PostgreSQL is read-only; the write probe keeps failing until `undo()`."""
    database = worker.database
    assert database is not None and database.store is not None

    async def read_only() -> bool:
        return False

    monkeypatch.setattr(database.store, "takes_writes", read_only, raising=False)
    database.went_away(asyncpg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction"))


async def test_a_refused_write_keeps_the_worker_unready_until_a_write_probe_passes(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_writes(worker, monkeypatch)
    check = await worker.ready()  # the SELECT ping answers; the write probe does not
    assert not check.ok and "postgresql refuses writes" in (check.reason or "")
    assert "read-only transaction" in (check.reason or "")
    assert not (await worker.ready()).ok
    monkeypatch.undo()
    assert (await worker.ready()).ok


async def test_no_job_is_claimed_while_postgresql_refuses_writes(
    worker: Worker, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = worker.runner
    assert runner is not None
    refuse_writes(worker, monkeypatch)
    closed_at = time.monotonic()
    # Claims already blocking on the wait lists return within block_ms; after them the loop claims nothing.
    await _claim_loop_turned(runner, after=closed_at + worker.config.block_ms / 1000)
    claimed = runner.stats.claimed
    job = await queue.enqueue({"n": 1})
    await _claim_loop_turned(runner, after=time.monotonic())
    after = await queue.get(job.id)
    assert after is not None and after.state.value == "waiting" and after.attempts == 0
    assert runner.stats.claimed == claimed

    monkeypatch.undo()
    assert (await worker.ready()).ok
    [done] = await wait_finished(queue, [job.id])
    assert done.state.value == "completed" and done.attempts == 1


async def _claim_loop_turned(runner: Runner, *, after: float) -> None:
    """Until the claim loop turns after `after` (time.monotonic()); it stamps every turn, and has no event."""
    for _ in range(200):
        if (runner.last_claim_loop_at or 0.0) > after:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the claim loop did not turn within 10 s")
