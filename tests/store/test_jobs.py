"""Requests and their runs: one live run per model+region, idempotent creation, cancel of batches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from certq.store import IdempotencyKey, JobCreated, Replay, Store

MakeModel = Callable[..., Awaitable[Any]]


def _render(created: JobCreated) -> tuple[int, dict[str, Any]]:
    assert created.job is not None
    return 201, {"jobId": str(created.job.id)}


async def test_a_live_model_region_is_never_queued_twice(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["a", "b"])
    first = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "a")])
    batch = await store.create_job(type="MULTIPLE_MODELS", pairs=[(model.id, "a"), (model.id, "b"), (model.id, "b")])
    assert isinstance(first, JobCreated) and isinstance(batch, JobCreated) and batch.job is not None
    assert [(c.model_id, c.region) for c in batch.certifications] == [(model.id, "b")]
    assert batch.job.total_models == 1
    [skipped] = batch.skipped
    assert first.job is not None and skipped.job_id == first.job.id and skipped.status == "QUEUED"
    again = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "a")])
    assert isinstance(again, JobCreated) and again.job is None and again.skipped[0].job_id == first.job.id


async def test_racing_requests_for_one_model_region_create_one_run(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["local"])
    results = await asyncio.gather(
        *(store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")]) for _ in range(10))
    )
    created = [r for r in results if isinstance(r, JobCreated) and r.job is not None]
    assert len(created) == 1
    winner = created[0].certifications[0].id
    assert all(r.skipped[0].certification_id == winner for r in results if isinstance(r, JobCreated) and r.job is None)


async def test_idempotency_key_replays_the_first_answer(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["a", "b"])
    key = IdempotencyKey(scope="test", key=f"k-{model.id}", fingerprint="f1")
    first = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "a")], idempotency=key, render=_render)
    assert isinstance(first, JobCreated) and first.job is not None
    again = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "b")], idempotency=key, render=_render)
    assert again == Replay(status_code=201, body={"jobId": str(first.job.id)}, matches=True)
    other = IdempotencyKey(scope="test", key=key.key, fingerprint="f2")
    mismatch = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "b")], idempotency=other, render=_render)
    assert isinstance(mismatch, Replay) and not mismatch.matches
    assert (await store.live_certification(model.id, "b")) is None


async def test_concurrent_requests_with_one_key_do_the_work_once(store: Store, make_model: MakeModel) -> None:
    models = [await make_model(regions=["local"]) for _ in range(4)]
    key = IdempotencyKey(scope="test", key=f"k-{models[0].id}", fingerprint="same")
    results = await asyncio.gather(
        *(
            store.create_job(type="SINGLE_MODEL", pairs=[(m.id, "local")], idempotency=key, render=_render)
            for m in models
        )
    )
    assert sum(isinstance(r, JobCreated) for r in results) == 1
    assert sum(isinstance(r, Replay) for r in results) == 3


async def test_failed_work_releases_its_idempotency_key(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["local"])
    key = IdempotencyKey(scope="test", key=f"k-{model.id}", fingerprint="f")

    def broken(_: JobCreated) -> tuple[int, dict[str, Any]]:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")], idempotency=key, render=broken)
    assert await store.live_certification(model.id, "local") is None
    result = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")], idempotency=key, render=_render)
    assert isinstance(result, JobCreated) and result.job is not None


async def test_cancel_ends_queued_and_running_children_and_keeps_finished_ones(
    store: Store, make_model: MakeModel
) -> None:
    model = await make_model(regions=["a", "b", "c"])
    created = await store.create_job(type="MULTIPLE_MODELS", pairs=[(model.id, r) for r in ("a", "b", "c")])
    assert isinstance(created, JobCreated) and created.job is not None
    done, running, queued = created.certifications
    await store.begin_attempt(done.id, 1)
    await store.finish_certification(done.id, 1, {"status": "CERTIFIED", "score": 100, "rating": "A"})
    await store.begin_attempt(running.id, 1)
    outcome = await store.cancel_job(created.job.id)
    assert outcome is not None and not outcome.already_finished
    assert {(c.id, c.status) for c in outcome.cancelled} == {(running.id, "PROCESSING"), (queued.id, "QUEUED")}
    assert outcome.job.status == "CANCELLED"
    assert (outcome.job.processed_models, outcome.job.success_count, outcome.job.cancelled_count) == (3, 1, 2)
    statuses = {c.id: c.status for c in await store.job_certifications(created.job.id)}
    assert statuses == {done.id: "CERTIFIED", running.id: "CANCELLED", queued.id: "CANCELLED"}
    assert not await store.finish_certification(running.id, 1, {"status": "CERTIFIED", "score": 100})
    repeat = await store.cancel_job(created.job.id)
    assert repeat is not None and repeat.already_finished and repeat.cancelled == []


async def test_cancel_of_a_finished_job_changes_nothing(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["local"])
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    assert isinstance(created, JobCreated) and created.job is not None
    [run] = created.certifications
    await store.begin_attempt(run.id, 1)
    await store.finish_certification(run.id, 1, {"status": "FAILED", "score": 10, "rating": "F"})
    outcome = await store.cancel_job(created.job.id)
    assert outcome is not None and outcome.already_finished and outcome.job.status == "FAILED"


async def test_cancel_of_an_unknown_job_is_none(store: Store) -> None:
    assert await store.cancel_job("00000000-0000-0000-0000-000000000000") is None


async def test_history_pages_newest_first_with_filters(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["a", "b", "c"])
    ids = []
    for region in ("a", "b", "c"):
        created = await store.create_job(type="MULTIPLE_MODELS", pairs=[(model.id, region)])
        assert isinstance(created, JobCreated) and created.job is not None
        ids.append(created.job.id)
    page = await store.list_jobs(page=1, limit=2, type="MULTIPLE_MODELS", status="QUEUED")
    assert page.total >= 3 and page.limit == 2 and len(page.items) == 2
    assert [j.id for j in page.items] == ids[::-1][:2]
    certs = await store.list_certifications(model_id=model.id, region="b")
    assert certs.total == 1 and certs.items[0].api_model_id == model.api_model_id


async def test_idempotency_keys_older_than_the_ttl_are_purged(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["a", "b"])
    old = IdempotencyKey(scope="test", key=f"old-{model.id}", fingerprint="f")
    fresh = IdempotencyKey(scope="test", key=f"fresh-{model.id}", fingerprint="f")
    await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "a")], idempotency=old, render=_render)
    await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "b")], idempotency=fresh, render=_render)
    await store.pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = $1", old.key
    )
    assert await store.purge_idempotency_keys(86_400) >= 1
    keys = {r["key"] for r in await store.pool.fetch("SELECT key FROM idempotency_keys WHERE scope = 'test'")}
    assert old.key not in keys and fresh.key in keys


async def test_concurrent_cancels_of_one_batch_count_each_run_once(store: Store, make_model: MakeModel) -> None:
    models = [await make_model(regions=["a", "b", "c", "d"]) for _ in range(5)]
    created = await store.create_job(
        type="MULTIPLE_MODELS", pairs=[(m.id, r) for m in models for r in ("a", "b", "c", "d")]
    )
    assert isinstance(created, JobCreated) and created.job is not None
    outcomes = await asyncio.gather(*(store.cancel_job(created.job.id) for _ in range(6)))
    assert sum(len(o.cancelled) for o in outcomes if o is not None) == 20
    job = await store.get_job(created.job.id)
    assert job is not None and (job.status, job.processed_models, job.cancelled_count) == ("CANCELLED", 20, 20)
