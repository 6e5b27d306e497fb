"""The firing loop: racing loops and worker processes fire each slot once; a restart follows the catch-up policy;
runs that Redis lost (or never got) are in PostgreSQL and the reconciler enqueues them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from certq.jobs import queue_config
from certq.queue import Queue
from certq.reconcile import reconcile
from certq.store import FiredSlot, ScheduleSpec, Store
from certq.worker.scheduler import Scheduler
from tests.conftest import api_settings, unlink_prefix
from tests.support.databases import own_database
from tests.worker.helpers import SpawnWorker

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2031, 1, 6, 9, 59, 30, tzinfo=UTC)


@dataclass
class World:
    """A database of its own (the loops fire every due schedule in it) and the test's queue prefix."""

    url: str
    store: Store
    queue: Queue
    settings: Any

    async def models(self, n: int, regions: list[str]) -> list[uuid.UUID]:
        made = [
            await self.store.create_model(
                name=f"m{uuid.uuid4().hex[:6]}",
                provider="openai",
                api_model_id="x",
                base_url="http://127.0.0.1:9/v1",
                regions=regions,
            )
            for _ in range(n)
        ]
        return [m.id for m in made]  # type: ignore[union-attr]

    def scheduler(self, store: Store, **options: Any) -> Scheduler:
        return Scheduler(lambda: store, self.queue, self.settings, **options)


@pytest.fixture
async def world(
    postgres_server_url: str, redis_url: str, key_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[World]:
    async with own_database(postgres_server_url, "fire") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=4)
        try:
            settings = api_settings(url, redis_url, key_prefix, "t")
            yield World(url, store, Queue(redis_client, queue_config(settings)), settings)
        finally:
            await store.close()


async def _slot_rows(store: Store) -> list[asyncpg.Record]:
    return await store.pool.fetch("SELECT * FROM schedule_slots ORDER BY slot_at")


@pytest.mark.slow
async def test_three_racing_loops_fire_every_second_slot_exactly_once(world: World) -> None:
    models = await world.models(2, ["local"])
    await world.store.create_schedule(
        ScheduleSpec(name="every second", cron="* * * * * *", model_ids=models), actor="test"
    )
    stores = [await Store.connect(world.url, min_size=1, max_size=2) for _ in range(3)]
    loops = [world.scheduler(store, period_s=0.2) for store in stores]
    fired: list[list[FiredSlot]] = [[] for _ in loops]

    async def race(index: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            fired[index].extend(await loops[index].tick())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2 * loops[index].rng.uniform(0.5, 1.5))

    async def finish_runs(stop: asyncio.Event) -> None:
        # Runs end between slots (as if workers certified them), so each slot has pairs to queue.
        while not stop.is_set():
            ended = await world.store.pool.fetch(
                "UPDATE certifications SET status = 'CANCELLED', completed_at = now() WHERE status = 'QUEUED' "
                "AND created_at < now() - interval '0.3 seconds' RETURNING id"
            )
            for run in ended:
                await world.queue.remove(str(run["id"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(race(i, stop)) for i in range(3)] + [asyncio.create_task(finish_runs(stop))]
    try:
        await asyncio.sleep(5.2)  # the test is about wall-clock slots: five of them, racing
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for store in stores:
            await store.close()

    rows = await _slot_rows(world.store)
    assert len(rows) >= 4
    for before, row in zip(rows, rows[1:], strict=False):  # every second covered once: fired, or folded in
        assert (row["slot_at"] - before["slot_at"]).total_seconds() == 1 + row["missed"]
    reported = sorted(s.slot.slot_at for per_loop in fired for s in per_loop)
    assert reported == [row["slot_at"] for row in rows]  # each slot fired by exactly one of the loops
    job_ids = [row["job_id"] for row in rows if row["job_id"] is not None]
    assert len(job_ids) == len(set(job_ids)) and len(job_ids) >= 3
    jobs = await world.store.pool.fetchval("SELECT count(*) FROM certification_jobs")
    runs = await world.store.pool.fetch("SELECT id FROM certifications")
    assert jobs == len(job_ids) and len(runs) == sum(row["queued"] for row in rows)
    assert all(row["queued"] + row["skipped"] == 2 for row in rows)
    added = [fields["jobId"] for _, fields in await world.queue.events("0", 10_000) if fields["event"] == "added"]
    assert sorted(added) == sorted(str(r["id"]) for r in runs)  # every run enqueued, once


async def test_a_restart_after_a_gap_fires_once_for_catch_up_once_and_drops_for_skip(world: World) -> None:
    [once_model, skip_model] = await world.models(2, ["local"])
    once = await world.store.create_schedule(
        ScheduleSpec(name="once", cron="0 * * * *", model_ids=[once_model], catch_up="once"), actor="test", now=T0
    )
    skip = await world.store.create_schedule(
        ScheduleSpec(name="skip", cron="0 * * * *", model_ids=[skip_model], catch_up="skip"), actor="test", now=T0
    )
    clock = [T0 + timedelta(seconds=31)]
    before = world.scheduler(world.store, clock=lambda: clock[0])
    assert {s.slot.schedule_id for s in await before.tick()} == {once.id, skip.id}  # 10:00, on time
    await world.store.pool.execute("UPDATE certifications SET status = 'CANCELLED'")

    # The process is gone from 10:00:01 to 15:20; a new one (new connections) starts.
    restarted_store = await Store.connect(world.url, min_size=1, max_size=2)
    try:
        clock[0] = datetime(2031, 1, 6, 15, 20, tzinfo=UTC)
        after = world.scheduler(restarted_store, clock=lambda: clock[0])
        fired = {s.slot.schedule_id: s for s in await after.tick()}
        assert await after.tick() == []
    finally:
        await restarted_store.close()
    assert fired[once.id].slot.outcome == "fired" and fired[once.id].slot.missed == 4
    assert fired[once.id].slot.slot_at == datetime(2031, 1, 6, 15, tzinfo=UTC) and len(fired[once.id].runs) == 1
    assert fired[skip.id].slot.outcome == "dropped" and fired[skip.id].runs == []
    per_model = await world.store.pool.fetch("SELECT model_id, count(*) FROM certifications GROUP BY model_id")
    assert {r["model_id"]: r["count"] for r in per_model} == {once_model: 2, skip_model: 1}
    assert after.slots.labels("dropped")._value.get() == 1


async def test_runs_redis_lost_after_the_commit_are_enqueued_again_by_reconcile(
    world: World, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    models = await world.models(3, ["local"])
    await world.store.create_schedule(ScheduleSpec(name="s", cron="0 * * * *", model_ids=models), actor="t", now=T0)
    [fired] = await world.scheduler(world.store, clock=lambda: T0 + timedelta(seconds=31)).tick()
    ids = sorted(str(r.id) for r in fired.runs)
    assert len(await world.queue.get_many(ids)) == 3
    await unlink_prefix(redis_client, key_prefix)  # Redis restarted empty (this test's keys only)
    assert await world.queue.get_many(ids) == []
    report = await reconcile(world.store, world.queue, world.settings, older_than_s=0)
    assert report.requeued == 3
    assert sorted(job.id for job in await world.queue.get_many(ids)) == ids


async def test_runs_whose_enqueue_failed_are_committed_and_enqueued_by_reconcile(world: World) -> None:
    models = await world.models(2, ["local"])
    await world.store.create_schedule(ScheduleSpec(name="s", cron="0 * * * *", model_ids=models), actor="t", now=T0)
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        loop = Scheduler(
            lambda: world.store,
            Queue(dead, queue_config(world.settings)),
            world.settings,
            clock=lambda: T0 + timedelta(seconds=31),
        )
        [fired] = await loop.tick()
    finally:
        await dead.aclose()
    assert loop.enqueue_failures._value.get() == 2
    statuses = await world.store.pool.fetch("SELECT id, status FROM certifications")
    assert {r["status"] for r in statuses} == {"QUEUED"} and len(statuses) == 2
    report = await reconcile(world.store, world.queue, world.settings, older_than_s=0)
    assert report.requeued == 2
    assert len(await world.queue.get_many([str(r["id"]) for r in statuses])) == 2


async def test_a_pass_is_skipped_while_postgresql_is_away_and_fires_once_it_is_back(world: World) -> None:
    [model] = await world.models(1, ["local"])
    await world.store.create_schedule(ScheduleSpec(name="s", cron="0 * * * *", model_ids=[model]), actor="t", now=T0)
    available: list[Store | None] = [None]
    loop = Scheduler(lambda: available[0], world.queue, world.settings, clock=lambda: T0 + timedelta(seconds=31))
    assert await loop.tick() == []
    available[0] = world.store
    assert len(await loop.tick()) == 1


@pytest.mark.slow
async def test_two_worker_processes_fire_each_slot_once(world: World, spawn_worker: SpawnWorker) -> None:
    [model] = await world.models(1, ["local"])
    workers = [spawn_worker("--concurrency", "1", env={"DATABASE_URL": world.url}) for _ in range(2)]
    for worker in workers:
        await worker.started()
    await world.store.create_schedule(
        ScheduleSpec(name="every second", cron="* * * * * *", model_ids=[model]), actor="test"
    )
    for _ in range(100):
        if await world.store.pool.fetchval("SELECT count(*) FROM schedule_slots") >= 4:
            break
        await asyncio.sleep(0.2)
    await world.store.pool.execute("UPDATE schedules SET paused = true")  # waits for a firing that holds the row
    rows = await _slot_rows(world.store)
    for before, row in zip(rows, rows[1:], strict=False):
        assert (row["slot_at"] - before["slot_at"]).total_seconds() == 1 + row["missed"]

    def logged() -> list[str]:
        return sorted(
            line["slot_at"]
            for w in workers
            for message in ("schedule fired", "schedule fired once for missed slots (catch-up once)")
            for line in w.events(message)
        )

    for _ in range(100):  # log lines reach the reader thread a little after the commits
        if len(logged()) >= len(rows):
            break
        await asyncio.sleep(0.1)
    assert logged() == [row["slot_at"].isoformat() for row in rows]  # each slot by one of the two processes
    assert await world.store.pool.fetchval("SELECT count(*) FROM certifications") == 1  # then live: skipped
