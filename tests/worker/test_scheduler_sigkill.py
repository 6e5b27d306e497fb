"""A worker SIGKILLed while it fires a slot (slot row and job written, not committed) loses no slot and
fires none twice: its transaction dies with its connection and the surviving workers fire the slot.

The kill point is the test hook CERTQ_TEST_HOLD_SLOT_S: the worker logs "schedule slot held before commit"
and keeps the transaction open, holding the schedule's row lock, until it is killed.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from certq.store import ModelRecord, ScheduleSpec, Store
from tests.support.databases import own_database
from tests.worker.helpers import SpawnWorker, WorkerProcess

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

FIRED = ("schedule fired", "schedule fired once for missed slots (catch-up once)")


@pytest.fixture
async def private(postgres_server_url: str) -> AsyncIterator[tuple[str, Store]]:
    async with own_database(postgres_server_url, "sigkill") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=2)
        try:
            yield url, store
        finally:
            await store.close()


def _fired(workers: list[WorkerProcess]) -> list[str]:
    return sorted(line["slot_at"] for w in workers for message in FIRED for line in w.events(message))


async def test_a_worker_killed_mid_firing_loses_no_slot_and_none_fires_twice(
    private: tuple[str, Store], spawn_worker: SpawnWorker
) -> None:
    url, store = private
    model = await store.create_model(
        name=f"m{uuid.uuid4().hex[:6]}",
        provider="openai",
        api_model_id="x",
        base_url="http://127.0.0.1:9/v1",
        regions=["local"],
    )
    assert isinstance(model, ModelRecord)
    env = {"DATABASE_URL": url}
    doomed = spawn_worker("--concurrency", "1", env={**env, "CERTQ_TEST_HOLD_SLOT_S": "120"})
    await doomed.started()
    schedule = await store.create_schedule(
        ScheduleSpec(name="every second", cron="* * * * * *", model_ids=[model.id]), actor="test"
    )
    held = await doomed.wait_log("schedule slot held before commit", within=20)
    held_at = datetime.fromisoformat(held["slot_at"])

    survivors = [spawn_worker("--concurrency", "1", env=env) for _ in range(2)]
    for worker in survivors:
        await worker.started()
    # While the doomed worker holds the row, the others skip the schedule: nothing is committed, nothing fired.
    assert await store.pool.fetchval("SELECT count(*) FROM schedule_slots") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM certification_jobs") == 0
    assert _fired(survivors) == []

    doomed.process.send_signal(signal.SIGKILL)
    assert await doomed.exit_code() == -signal.SIGKILL

    for _ in range(150):  # the survivors take over: the held slot (or a catch-up standing in for it), then more
        if await store.pool.fetchval("SELECT count(*) FROM schedule_slots") >= 4:
            break
        await asyncio.sleep(0.1)
    await store.update_schedule(schedule.id, {"paused": True}, actor="test")  # waits for a firing holding the row
    rows = await store.pool.fetch("SELECT * FROM schedule_slots ORDER BY slot_at")
    assert len(rows) >= 4

    # No slot lost: every second from the schedule's first slot on is covered once, by its own row or by the
    # catch-up row standing in for it (missed); the held slot too, by a row a survivor committed.
    covered = [row["slot_at"] - timedelta(seconds=n) for row in rows for n in range(row["missed"] + 1)]
    assert sorted(covered) == [schedule.next_slot_at + timedelta(seconds=n) for n in range(len(covered))]
    assert held_at in covered

    # None fired twice: each slot row was fired (and logged) by exactly one survivor, none by the killed one.
    for _ in range(50):  # log lines reach the reader thread a little after the commits
        if len(_fired(survivors)) >= len(rows):
            break
        await asyncio.sleep(0.1)
    assert _fired(survivors) == [row["slot_at"].isoformat() for row in rows]
    assert _fired([doomed]) == []

    # The killed transaction's job and run were rolled back: every job belongs to a recorded slot.
    jobs = await store.pool.fetch("SELECT id FROM certification_jobs")
    slot_jobs = {row["job_id"] for row in rows if row["job_id"] is not None}
    assert {job["id"] for job in jobs} == slot_jobs and len(slot_jobs) == 1  # later slots: the run is live
    assert await store.pool.fetchval("SELECT count(*) FROM certifications") == 1
