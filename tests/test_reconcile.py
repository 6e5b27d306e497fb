"""A corrupt queue job must not leave its run live forever: the reconciler replaces it from PostgreSQL, or closes it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from certq.jobs import enqueue_runs, job_payload, queue_config
from certq.queue import Consumer, Queue
from certq.reconcile import reconcile
from certq.settings import Settings
from certq.store import CertificationRef, JobCreated, ModelRecord, Store
from tests.conftest import api_settings
from tests.support.databases import own_database

pytestmark = pytest.mark.timeout(30)


@dataclass
class Rig:
    store: Store
    queue: Queue
    redis: aioredis.Redis
    settings: Settings

    def key(self, job_id: str) -> str:
        return self.queue.keys.job(job_id)

    async def certify(self, model_id: uuid.UUID) -> JobCreated:
        """What the API does: commit the run, then enqueue it."""
        created = await self.store.create_job(type="SINGLE_MODEL", pairs=[(model_id, "local")])
        assert isinstance(created, JobCreated)
        await enqueue_runs(self.queue, self.settings, created.certifications)
        return created

    async def make_model(self) -> ModelRecord:
        suffix = uuid.uuid4().hex[:8]
        model = await self.store.create_model(
            name=f"model-{suffix}",
            provider="openai",
            api_model_id=f"tiny-{suffix}",
            base_url="http://127.0.0.1:9/v1",
            regions=["local"],
        )
        assert isinstance(model, ModelRecord)
        return model

    async def accept(self) -> CertificationRef:
        [ref] = (await self.certify((await self.make_model()).id)).certifications
        return ref

    async def reconcile(self) -> Any:
        # older_than_s=-1: every live run counts as untouched, even one committed this very millisecond.
        return await reconcile(self.store, self.queue, self.settings, older_than_s=-1)


@pytest.fixture
async def rig(
    postgres_server_url: str, redis_client: aioredis.Redis, key_prefix: str, redis_url: str
) -> AsyncIterator[Rig]:
    """A database of this test alone: a pass covers every live run in it, and other tests leave theirs live."""
    async with own_database(postgres_server_url, "rc") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=2)
        try:
            settings = api_settings(url, redis_url, key_prefix, "t-" + key_prefix)
            yield Rig(store, Queue(redis_client, queue_config(settings)), redis_client, settings)
        finally:
            await store.close()


CORRUPTIONS = {
    "payload-not-json": ("hset", "payload", "{not json"),
    "payload-not-an-object": ("hset", "payload", "[1, 2]"),
    "attempts-not-a-number": ("hset", "attempts", "many"),
    "created-at-not-a-number": ("hset", "created_at", "yesterday"),
    "errors-not-json": ("hset", "errors", "[{"),
    "id-missing": ("hdel", "id", None),
    "payload-missing": ("hdel", "payload", None),
    "id-of-another-job": ("hset", "id", "someone-else"),
}


async def corrupt(rig: Rig, job_id: str, how: str) -> None:
    command, field, value = CORRUPTIONS[how]
    if command == "hset":
        await rig.redis.hset(rig.key(job_id), field, value)  # type: ignore[misc]
    else:
        await rig.redis.hdel(rig.key(job_id), field)  # type: ignore[misc]


async def assert_fresh_job(rig: Rig, ref: CertificationRef) -> None:
    job = await rig.queue.get(str(ref.id))
    assert job is not None and job.id == str(ref.id), job
    assert job.state.value == "waiting" and job.error_category is None and job.attempts == 0
    assert job.payload == job_payload(ref)
    record = await rig.store.get_certification(ref.id)
    assert record is not None and record.status == "QUEUED" and record.generation == 2


async def run_to_the_end(rig: Rig, ref: CertificationRef) -> None:
    """A worker's part, by hand: claim the job, own the run, store a verdict, complete the job."""
    consumer = Consumer(rig.redis, rig.queue.config)
    [lease] = (await consumer.claim()).leases
    assert lease.job.id == str(ref.id)
    assert await rig.store.begin_attempt(ref.id, lease.attempt)
    assert await rig.store.finish_certification(ref.id, lease.attempt, {"status": "CERTIFIED", "score": 90})
    await consumer.complete(lease, {"status": "CERTIFIED"})


@pytest.mark.parametrize("how", list(CORRUPTIONS))
async def test_a_waiting_job_with_a_corrupt_hash_is_replaced_by_a_fresh_one_from_postgresql(rig: Rig, how: str) -> None:
    ref = await rig.accept()
    await corrupt(rig, str(ref.id), how)

    report = await rig.reconcile()
    await assert_fresh_job(rig, ref)
    assert report.corrupt == 1 and report.requeued == 1
    again = await rig.reconcile()  # readable now: left alone
    assert (await rig.store.get_certification(ref.id)).generation == 2  # type: ignore[union-attr]
    assert again.corrupt == 0
    await run_to_the_end(rig, ref)


async def test_a_job_failed_as_corrupt_when_claimed_is_replaced_and_its_pair_can_be_certified_again(rig: Rig) -> None:
    model = await rig.make_model()
    [ref] = (await rig.certify(model.id)).certifications
    await corrupt(rig, str(ref.id), "payload-not-json")
    # The consumer cannot read it: failed for good as CORRUPT_JOB, and its hash stays unreadable.
    assert (await Consumer(rig.redis, rig.queue.config).claim()).leases == []
    retry = await rig.store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    assert isinstance(retry, JobCreated) and retry.job is None  # "existing": the run is still live

    await rig.reconcile()
    await assert_fresh_job(rig, ref)
    await run_to_the_end(rig, ref)
    created = await rig.certify(model.id)
    assert created.job is not None and created.skipped == []
    [new] = created.certifications
    job = await rig.queue.get(str(new.id))
    assert job is not None and job.state.value == "waiting"


async def test_a_corrupt_job_without_a_state_is_closed_with_the_reason_and_frees_its_pair(rig: Rig) -> None:
    model = await rig.make_model()
    [ref] = (await rig.certify(model.id)).certifications
    await rig.redis.hdel(rig.key(str(ref.id)), "state")  # type: ignore[misc]

    report = await rig.reconcile()
    record = await rig.store.get_certification(ref.id)
    assert record is not None and record.status == "FAILED" and record.error_category == "INTERNAL_ERROR"
    assert "queue job is corrupt" in (record.error_message or "")
    assert report.corrupt == 1 and report.closed == 1
    parent = await rig.store.get_job(record.job_id)
    assert parent is not None and parent.status == "FAILED" and parent.failure_count == 1
    created = await rig.certify(model.id)
    assert created.job is not None
    [new] = created.certifications
    job = await rig.queue.get(str(new.id))
    assert job is not None and job.state.value == "waiting" and not job.existing


async def test_a_job_key_that_is_not_a_hash_does_not_stop_the_pass(rig: Rig) -> None:
    broken, lost = await rig.accept(), await rig.accept()
    await rig.redis.delete(rig.key(str(broken.id)), rig.key(str(lost.id)))
    await rig.redis.set(rig.key(str(broken.id)), "not a hash")

    await rig.reconcile()
    job = await rig.queue.get(str(lost.id))
    assert job is not None and job.state.value == "waiting"  # the rest of the batch was reconciled
    record = await rig.store.get_certification(broken.id)
    assert record is not None and record.status == "FAILED" and "queue job is corrupt" in (record.error_message or "")


async def test_a_corrupt_job_a_worker_holds_is_left_to_it(rig: Rig) -> None:
    ref = await rig.accept()
    consumer = Consumer(rig.redis, rig.queue.config)
    [lease] = (await consumer.claim()).leases
    assert await rig.store.begin_attempt(ref.id, lease.attempt)
    await corrupt(rig, str(ref.id), "errors-not-json")

    report = await rig.reconcile()
    record = await rig.store.get_certification(ref.id)
    assert record is not None and record.status == "PROCESSING" and record.generation == 1
    assert report.corrupt == 1 and report.requeued == 0 and report.closed == 0
    assert await rig.store.finish_certification(ref.id, lease.attempt, {"status": "CERTIFIED", "score": 90})
    await consumer.complete(lease, {"status": "CERTIFIED"})
