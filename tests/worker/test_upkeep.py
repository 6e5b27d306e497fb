"""The worker's own upkeep: PostgreSQL is the truth, so runs Redis lost are enqueued again by the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from certq.queue import Queue
from certq.settings import load_settings
from certq.store import Store
from certq.worker import daemon
from certq.worker.daemon import Worker
from certq.worker.testing import noop
from tests.worker.helpers import QUEUE_NAME, wait_finished

pytestmark = pytest.mark.timeout(30)


async def test_a_run_missing_from_redis_is_enqueued_again_and_processed(
    redis_url: str,
    key_prefix: str,
    migrated_database_url: str,
    queue: Queue,
    store: Store,
    make_model: Callable[..., Awaitable[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daemon, "RECONCILE_PERIOD_S", 0.2)
    monkeypatch.setattr(daemon, "RECONCILE_AGE_S", 0.0)
    model = await make_model()
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    ref = created.certifications[0]  # type: ignore[union-attr]
    assert await queue.get(str(ref.id)) is None  # committed, never enqueued (the API died in between)

    settings = load_settings(
        redis_url=redis_url,
        database_url=migrated_database_url,
        queue_prefix=key_prefix,
        queue_name=QUEUE_NAME,
        worker_health_host="127.0.0.1",
        worker_health_port=0,
    )
    worker = Worker(settings, handler=noop, registry=CollectorRegistry())
    running = asyncio.create_task(worker.run())
    try:
        last = "0"
        async with asyncio.timeout(20):
            while await queue.get(str(ref.id)) is None:
                entries = await queue.events(last, 100, block_ms=500)
                last = entries[-1][0] if entries else last
        [job] = await wait_finished(queue, [str(ref.id)])
        assert job.state.value == "completed" and job.payload["certificationId"] == str(ref.id)
    finally:
        worker.request_stop("test")
        assert await running == 0
