"""'Renew before expiry' (CERTIFICATION_RENEW_BEFORE): certificates near their end are re-certified once each,
by one of any number of racing workers, through the live-run dedupe; FAILED, inactive and uncertified pairs
are left alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from certq.jobs import queue_config
from certq.queue import Queue
from certq.settings import Settings, SettingsError, load_settings
from certq.store import JobCreated, ModelRecord, Store
from certq.store.renewals import Renewal
from certq.worker.scheduler import Scheduler
from tests.conftest import api_settings
from tests.support.databases import own_database

pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    """A database of its own (a renewal pass looks at every model in it) and the test's queue prefix."""

    url: str
    store: Store
    queue: Queue
    settings: Settings

    async def model(self, regions: list[str], **fields: Any) -> uuid.UUID:
        made = await self.store.create_model(
            name=f"m{uuid.uuid4().hex[:6]}",
            provider="openai",
            api_model_id="x",
            base_url="http://127.0.0.1:9/v1",
            regions=regions,
            **fields,
        )
        assert isinstance(made, ModelRecord)
        return made.id

    async def verdict(self, model_id: uuid.UUID, region: str, status: str, validity_s: int = 3600) -> uuid.UUID:
        created = await self.store.create_job(type="SINGLE_MODEL", pairs=[(model_id, region)])
        assert isinstance(created, JobCreated)
        [run] = created.certifications
        await self.finish(run.id, status, validity_s)
        return run.id

    async def finish(self, run_id: uuid.UUID, status: str, validity_s: int = 3600) -> None:
        assert await self.store.begin_attempt(run_id, 1)
        verdict = {"status": status, "passed": status == "CERTIFIED", "score": 95 if status != "FAILED" else 10}
        assert await self.store.finish_certification(run_id, 1, verdict, validity_s=validity_s)

    def scheduler(self, at: datetime, store: Store | None = None, settings: dict[str, Any] | None = None) -> Scheduler:
        changed = self.settings.model_copy(update=settings) if settings else self.settings
        chosen = store or self.store
        return Scheduler(lambda: chosen, self.queue, changed, clock=lambda: at)


@pytest.fixture
async def world(
    postgres_server_url: str, redis_url: str, key_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[World]:
    async with own_database(postgres_server_url, "renew") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=4)
        try:
            settings = api_settings(url, redis_url, key_prefix, "t", CERTIFICATION_RENEW_BEFORE="10m")
            yield World(url, store, Queue(redis_client, queue_config(settings)), settings)
        finally:
            await store.close()


def _pairs(renewal: Renewal | None) -> list[tuple[uuid.UUID, str]]:
    assert renewal is not None
    return sorted((run.model_id, run.region) for run in renewal.runs)


async def test_a_certificate_inside_the_window_is_renewed_and_enqueued_and_one_outside_is_not(world: World) -> None:
    model = await world.model(["near", "far"])
    near = await world.verdict(model, "near", "CERTIFIED", validity_s=3600)
    await world.verdict(model, "far", "QUALITY_WARNING", validity_s=30 * 86_400)
    early = await world.scheduler(datetime.now(UTC) + timedelta(minutes=45)).renew()
    assert early is not None and early.runs == [] and early.job is None
    renewal = await world.scheduler(datetime.now(UTC) + timedelta(minutes=55)).renew()
    assert _pairs(renewal) == [(model, "near")]
    assert renewal is not None and renewal.certificates == [near] and renewal.job is not None
    queued = await world.queue.get(str(renewal.runs[0].id))
    assert queued is not None and queued.payload["region"] == "near"


async def test_a_certificate_is_renewed_at_most_once_even_when_its_renewal_is_cancelled(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    loop = world.scheduler(datetime.now(UTC) + timedelta(minutes=55))
    first = await loop.renew()
    assert _pairs(first) == [(model, "local")]
    assert _pairs(await loop.renew()) == []  # live: the dedupe keeps it out
    assert first is not None and await world.store.mark_cancelled(first.runs[0].id)
    assert _pairs(await loop.renew()) == []  # cancelled: this certificate had its one renewal
    later = world.scheduler(datetime.now(UTC) + timedelta(hours=3))  # expired by now: still no second one
    assert _pairs(await later.renew()) == []


async def test_the_renewal_verdict_is_a_new_certificate_renewed_again_near_its_own_end(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    first = await world.scheduler(datetime.now(UTC) + timedelta(minutes=55)).renew()
    assert first is not None and len(first.runs) == 1
    await world.finish(first.runs[0].id, "QUALITY_WARNING", validity_s=7200)
    assert _pairs(await world.scheduler(datetime.now(UTC) + timedelta(minutes=100)).renew()) == []
    again = await world.scheduler(datetime.now(UTC) + timedelta(minutes=115)).renew()
    assert _pairs(again) == [(model, "local")]
    assert again is not None and again.certificates == [first.runs[0].id]


async def test_failed_inactive_and_never_certified_pairs_are_not_renewed(world: World) -> None:
    model = await world.model(["failed", "never", "ok"])
    await world.verdict(model, "failed", "FAILED", validity_s=3600)
    await world.verdict(model, "ok", "CERTIFIED", validity_s=3600)
    gone = await world.model(["local"])
    await world.verdict(gone, "local", "CERTIFIED", validity_s=3600)
    await world.store.update_model(gone, {"is_active": False})
    renewal = await world.scheduler(datetime.now(UTC) + timedelta(minutes=55)).renew()
    assert _pairs(renewal) == [(model, "ok")]


async def test_the_window_never_reaches_into_the_first_half_of_a_certificates_life(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    wide = {"certification_renew_before": "1d"}
    assert _pairs(await world.scheduler(datetime.now(UTC) + timedelta(minutes=25), settings=wide).renew()) == []
    assert _pairs(await world.scheduler(datetime.now(UTC) + timedelta(minutes=35), settings=wide).renew()) == [
        (model, "local")
    ]


async def test_an_expired_certificate_left_unrenewed_is_renewed_once_the_workers_are_back(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    assert _pairs(await world.scheduler(datetime.now(UTC) + timedelta(days=2)).renew()) == [(model, "local")]


async def test_racing_workers_renew_each_certificate_once(world: World) -> None:
    models = [await world.model(["a", "b"]) for _ in range(3)]
    for model in models:
        for region in ("a", "b"):
            await world.verdict(model, region, "CERTIFIED", validity_s=3600)
    stores = [await Store.connect(world.url, min_size=1, max_size=1) for _ in range(6)]
    try:
        at = datetime.now(UTC) + timedelta(minutes=55)
        loops = [world.scheduler(at, store=s) for s in stores]
        for _ in range(3):
            results = await asyncio.gather(*(loop.renew() for loop in loops))
            if any(r is not None and r.runs for r in results):
                break
        runs = [run for r in results if r is not None for run in r.runs]
    finally:
        for s in stores:
            await s.close()
    assert sorted((r.model_id, r.region) for r in runs) == sorted((m, r) for m in models for r in ("a", "b"))
    assert await world.store.pool.fetchval("SELECT count(*) FROM certification_jobs") == 6 + 1
    assert await world.store.pool.fetchval("SELECT count(*) FROM certifications WHERE status = 'QUEUED'") == 6


async def test_the_firing_loop_runs_the_renewal_pass_and_counts_it(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    loop = world.scheduler(datetime.now(UTC) + timedelta(minutes=55))
    loop.period_s = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        for _ in range(200):
            if await world.store.pool.fetchval("SELECT count(*) FROM certifications WHERE status = 'QUEUED'"):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert loop.renewals._value.get() == 1
    assert await world.store.pool.fetchval("SELECT count(*) FROM certifications WHERE status = 'QUEUED'") == 1


async def test_renewal_is_off_by_default(world: World) -> None:
    model = await world.model(["local"])
    await world.verdict(model, "local", "CERTIFIED", validity_s=3600)
    off = world.scheduler(datetime.now(UTC) + timedelta(minutes=55), settings={"certification_renew_before": ""})
    assert await off.renew() is None
    assert await world.store.pool.fetchval("SELECT count(*) FROM certifications") == 1


@pytest.mark.parametrize(("value", "seconds"), [("", None), ("off", None), ("1d", 86_400), ("90m", 5400)])
def test_renew_before_reads_off_or_a_duration(value: str, seconds: int | None) -> None:
    settings = Settings.model_validate({"CERTIFICATION_RENEW_BEFORE": value})
    assert settings.renew_before_s == seconds


@pytest.mark.parametrize("value", ["soon", "10s", "400d"])
def test_a_bad_renew_before_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="CERTIFICATION_RENEW_BEFORE"):
        load_settings(environ={"CERTIFICATION_RENEW_BEFORE": value})
