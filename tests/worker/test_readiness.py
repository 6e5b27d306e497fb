"""Readiness proves the claim loop is turning, not only that Redis answers a ping (in-process Worker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from certq.settings import load_settings
from certq.worker.daemon import CLAIM_LOOP_STALE_S, Worker
from certq.worker.testing import noop
from tests.worker.helpers import QUEUE_NAME

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def worker(redis_url: str, key_prefix: str, migrated_database_url: str,
                 redis_client: object) -> AsyncIterator[Worker]:
    settings = load_settings(redis_url=redis_url, database_url=migrated_database_url, queue_prefix=key_prefix,
                             queue_name=QUEUE_NAME, worker_health_host="127.0.0.1", worker_health_port=0)
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
