"""Schedules in PostgreSQL: a due slot fires once (slot row + job in one commit), targets, filters, catch-up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certq.store import FiredSlot, ScheduleRecord, ScheduleSpec, Store
from tests.support.databases import own_database

MakeModel = Callable[..., Awaitable[Any]]
T0 = datetime(2031, 1, 6, 9, 59, 30, tzinfo=UTC)  # a Monday; the clock these tests move by hand
ACTOR = "test:store"


@pytest.fixture
async def schedules(store: Store) -> AsyncIterator[Callable[..., Awaitable[ScheduleRecord]]]:
    """`await schedules(model_ids=[...], cron=..., now=...)`: a schedule deleted (with its slots) afterwards."""
    made: list[ScheduleRecord] = []

    async def make(now: datetime = T0, **fields: Any) -> ScheduleRecord:
        spec = ScheduleSpec(**{"name": f"s-{uuid.uuid4().hex[:6]}", "cron": "0 * * * *", **fields})
        record = await store.create_schedule(spec, actor=ACTOR, now=now)
        made.append(record)
        return record

    yield make
    await store.pool.execute("DELETE FROM schedules WHERE id = ANY($1::uuid[])", [r.id for r in made])


@pytest.fixture
async def private_store(postgres_server_url: str) -> AsyncIterator[Store]:
    """A database of its own: "every active model" means this test's models only."""
    async with own_database(postgres_server_url, "sched") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=4)
        try:
            yield store
        finally:
            await store.close()


async def _verdict(store: Store, model_id: uuid.UUID, region: str, status: str, validity_s: int = 3600) -> None:
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model_id, region)])
    run = created.certifications[0]  # type: ignore[union-attr]
    assert await store.begin_attempt(run.id, 1)
    assert await store.finish_certification(
        run.id,
        1,
        {"status": status, "passed": status == "CERTIFIED", "score": 95 if status == "CERTIFIED" else 10},
        validity_s=validity_s,
    )


async def test_a_due_slot_commits_its_row_and_one_job_with_a_run_per_target_pair(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    a, b = await make_model(regions=["r1", "r2", "r3"]), await make_model(regions=["r1", "r3"])
    schedule = await schedules(model_ids=[a.id, b.id], regions=["r1", "r2"], priority="high")
    assert schedule.next_slot_at == datetime(2031, 1, 6, 10, tzinfo=UTC)
    assert await store.fire_schedule(schedule.id, now=T0) is None  # not due yet
    fired = await store.fire_schedule(schedule.id, now=T0 + timedelta(seconds=31))
    assert fired is not None and fired.job is not None
    assert sorted((r.model_id, r.region) for r in fired.runs) == sorted([(a.id, "r1"), (a.id, "r2"), (b.id, "r1")])
    assert {r.priority for r in fired.runs} == {"high"} and fired.job.type == "MULTIPLE_MODELS"
    slot = fired.slot
    assert (slot.slot_at, slot.outcome, slot.missed, slot.job_id, slot.queued, slot.skipped) == (
        datetime(2031, 1, 6, 10, tzinfo=UTC),
        "fired",
        0,
        fired.job.id,
        3,
        0,
    )
    after = await store.get_schedule(schedule.id)
    assert after is not None and after.next_slot_at == datetime(2031, 1, 6, 11, tzinfo=UTC)
    assert after.last_slot_at == slot.slot_at
    statuses = await store.pool.fetch("SELECT status FROM certifications WHERE job_id = $1", fired.job.id)
    assert [r["status"] for r in statuses] == ["QUEUED"] * 3


async def test_a_slot_fires_once_when_many_connections_ask_at_the_same_time(
    store: Store, make_model: MakeModel, schedules: Any, migrated_database_url: str
) -> None:
    model = await make_model(regions=["local"])
    schedule = await schedules(model_ids=[model.id])
    others = [await Store.connect(migrated_database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        now = T0 + timedelta(minutes=1)
        results = await asyncio.gather(*(s.fire_schedule(schedule.id, now=now) for s in [store, *others]))
        again = await asyncio.gather(*(s.fire_schedule(schedule.id, now=now) for s in [store, *others]))
    finally:
        for other in others:
            await other.close()
    fired = [r for r in results if isinstance(r, FiredSlot)]
    assert len(fired) == 1 and again == [None] * 5
    rows = await store.pool.fetchval("SELECT count(*) FROM schedule_slots WHERE schedule_id = $1", schedule.id)
    jobs = await store.pool.fetchval("SELECT count(*) FROM certifications WHERE model_id = $1", model.id)
    assert rows == 1 and jobs == 1


async def test_pairs_that_still_have_a_live_run_are_not_queued_again(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["x", "y"])
    schedule = await schedules(model_ids=[model.id])
    first = await store.fire_schedule(schedule.id, now=T0 + timedelta(minutes=1))
    assert first is not None and len(first.runs) == 2
    assert await store.mark_cancelled(first.runs[1].id)
    second = await store.fire_schedule(schedule.id, now=T0 + timedelta(minutes=61))
    assert second is not None and [r.region for r in second.runs] == [first.runs[1].region]
    assert (second.slot.queued, second.slot.skipped) == (1, 1)
    third = await store.fire_schedule(schedule.id, now=T0 + timedelta(minutes=121))
    assert third is not None and third.job is None and third.runs == []
    assert (third.slot.outcome, third.slot.queued, third.slot.skipped, third.slot.job_id) == ("fired", 0, 2, None)


async def test_only_failed_picks_the_pairs_whose_standing_is_failed(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["ok", "bad", "new"])
    await _verdict(store, model.id, "ok", "CERTIFIED")
    await _verdict(store, model.id, "bad", "FAILED")
    schedule = await schedules(model_ids=[model.id], filter_standings=["FAILED"])
    fired = await store.fire_schedule(schedule.id, now=T0 + timedelta(minutes=1))
    assert fired is not None and [r.region for r in fired.runs] == ["bad"]


async def test_only_expiring_picks_verdicts_running_out_within_the_window_and_pairs_without_one(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["soon", "later", "never"])
    await _verdict(store, model.id, "soon", "CERTIFIED", validity_s=3600)
    await _verdict(store, model.id, "later", "CERTIFIED", validity_s=30 * 86_400)
    now = datetime.now(UTC)  # verdicts expire by the database's clock
    schedule = await schedules(model_ids=[model.id], filter_expiring_s=86_400, cron="* * * * *", now=now)
    fired = await store.fire_schedule(schedule.id, now=now + timedelta(minutes=1))
    assert fired is not None and sorted(r.region for r in fired.runs) == ["never", "soon"]


async def test_after_downtime_catch_up_once_fires_one_job_for_all_missed_slots(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["local"])
    schedule = await schedules(model_ids=[model.id], catch_up="once")
    back = T0 + timedelta(hours=5, minutes=10)  # slots 10:00 .. 15:00 passed while nothing ran
    fired = await store.fire_schedule(schedule.id, now=back)
    assert fired is not None and fired.job is not None and len(fired.runs) == 1
    assert fired.slot.slot_at == datetime(2031, 1, 6, 15, tzinfo=UTC) and fired.slot.missed == 5
    assert fired.slot.missed_since == datetime(2031, 1, 6, 10, tzinfo=UTC)
    assert await store.fire_schedule(schedule.id, now=back) is None
    assert await store.pool.fetchval("SELECT count(*) FROM schedule_slots WHERE schedule_id = $1", schedule.id) == 1


async def test_after_downtime_catch_up_skip_drops_the_missed_slots(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["local"])
    schedule = await schedules(model_ids=[model.id], catch_up="skip")
    dropped = await store.fire_schedule(schedule.id, now=T0 + timedelta(hours=5, minutes=10))
    assert dropped is not None and dropped.slot.outcome == "dropped" and dropped.job is None and dropped.runs == []
    assert dropped.slot.missed == 5
    assert await store.pool.fetchval("SELECT count(*) FROM certifications WHERE model_id = $1", model.id) == 0
    on_time = await store.fire_schedule(schedule.id, now=datetime(2031, 1, 6, 16, 0, 2, tzinfo=UTC))
    assert on_time is not None and on_time.slot.outcome == "fired" and len(on_time.runs) == 1


async def test_a_paused_schedule_does_not_fire_and_resumes_from_the_next_slot(
    store: Store, make_model: MakeModel, schedules: Any
) -> None:
    model = await make_model(regions=["local"])
    schedule = await schedules(model_ids=[model.id])
    paused = await store.update_schedule(schedule.id, {"paused": True}, actor=ACTOR, now=T0)
    assert paused is not None and paused.paused
    later = T0 + timedelta(hours=2, minutes=31)  # 12:30:30: slots 10:00 .. 12:00 passed while paused
    assert schedule.id not in await store.due_schedules(later)
    assert await store.fire_schedule(schedule.id, now=later) is None
    resumed = await store.update_schedule(schedule.id, {"paused": False}, actor=ACTOR, now=later)
    assert resumed is not None and resumed.next_slot_at == datetime(2031, 1, 6, 13, tzinfo=UTC)  # no catch-up
    fired = await store.fire_schedule(schedule.id, now=datetime(2031, 1, 6, 13, 0, 1, tzinfo=UTC))
    assert fired is not None and fired.slot.missed == 0


async def test_a_new_cron_or_time_zone_starts_from_its_own_next_slot(store: Store, schedules: Any) -> None:
    schedule = await schedules(model_ids=[uuid.uuid4()])
    changed = await store.update_schedule(
        schedule.id, {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, actor=ACTOR, now=T0
    )
    assert changed is not None and changed.next_slot_at == datetime(2031, 1, 7, 1, 30, tzinfo=UTC)


async def test_every_change_is_audited_with_its_actor(store: Store, schedules: Any) -> None:
    schedule = await schedules(model_ids=[uuid.uuid4()])
    await store.update_schedule(schedule.id, {"paused": True}, actor="token:abc", remote_addr="127.0.0.1")
    await store.update_schedule(schedule.id, {"priority": "low"}, actor="token:abc")
    assert await store.delete_schedule(schedule.id, actor="cli:ops@host") is not None
    rows = await store.pool.fetch(
        "SELECT actor, action, detail, outcome FROM dashboard_audit WHERE target = $1 ORDER BY id", str(schedule.id)
    )
    assert [(r["actor"], r["action"]) for r in rows] == [
        (ACTOR, "schedule.create"),
        ("token:abc", "schedule.pause"),
        ("token:abc", "schedule.update"),
        ("cli:ops@host", "schedule.delete"),
    ]
    assert rows[2]["detail"] == {"priority": "low"} and rows[3]["detail"]["name"] == schedule.name


async def test_every_active_model_in_the_regions_it_offers_is_the_default_target(private_store: Store) -> None:
    store = private_store
    a = await store.create_model(name="a", provider="openai", api_model_id="a", regions=["r1", "r2"])
    b = await store.create_model(name="b", provider="openai", api_model_id="b", regions=["r2"])
    gone = await store.create_model(name="c", provider="openai", api_model_id="c", regions=["r1"], is_active=False)
    schedule = await store.create_schedule(ScheduleSpec(name="all", cron="@daily"), actor=ACTOR, now=T0)
    fired = await store.fire_schedule(schedule.id, now=T0 + timedelta(days=1))
    assert fired is not None and fired.job is not None and fired.job.type == "ALL_MODELS"
    assert sorted((r.model_id, r.region) for r in fired.runs) == sorted([(a.id, "r1"), (a.id, "r2"), (b.id, "r2")])  # type: ignore[union-attr]
    assert gone.id not in {r.model_id for r in fired.runs}  # type: ignore[union-attr]
    only_r2 = await store.create_schedule(ScheduleSpec(name="r2", cron="@daily", regions=["r2"]), actor=ACTOR, now=T0)
    assert await store.pool.execute("UPDATE certifications SET status = 'CANCELLED'") is not None
    fired = await store.fire_schedule(only_r2.id, now=T0 + timedelta(days=1))
    assert fired is not None and sorted(r.region for r in fired.runs) == ["r2", "r2"]
