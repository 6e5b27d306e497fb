"""The producer contract, on fakeredis and on the real Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from certq.queue import Consumer, InvalidJob, JobSpec, JobState, JobStateError, Queue, QueueConfig
from tests.support.queue_helpers import FakeClock, assert_each_in_one_place


async def test_enqueue_stores_the_job_and_counts_it_as_waiting(queue: Queue, backend: aioredis.Redis) -> None:
    job = await queue.enqueue({"modelId": "m"}, job_id="j1", max_attempts=3, timeout_ms=500, group="us-east-1")
    assert (job.id, job.state, job.existing) == ("j1", JobState.WAITING, False)
    stored = await queue.get("j1")
    assert stored is not None
    assert (stored.payload, stored.max_attempts, stored.timeout_ms, stored.group) == (
        {"modelId": "m"},
        3,
        500,
        "us-east-1",
    )
    assert stored.created_at == queue.clock()
    assert await backend.llen(queue.keys.wait) == 1  # type: ignore[misc]
    assert (await queue.counts())["waiting"] == 1


async def test_llen_wait_counts_normal_priority_only(queue: Queue, backend: aioredis.Redis) -> None:
    await queue.enqueue({}, priority="high")
    await queue.enqueue({}, priority="low")
    await queue.enqueue({})
    counts = await queue.counts()
    assert await backend.llen(queue.keys.wait) == 1  # type: ignore[misc]
    assert (counts["waiting"], counts["waiting_high"], counts["waiting_normal"], counts["waiting_low"]) == (3, 1, 1, 1)


@pytest.mark.parametrize(("payload", "field"), [({"x": object()}, "payload"), (["not", "a", "dict"], "payload")])
async def test_enqueue_refuses_payload_that_is_not_a_json_object(queue: Queue, payload: object, field: str) -> None:
    with pytest.raises(InvalidJob) as info:
        await queue.enqueue(payload)  # type: ignore[arg-type]
    assert info.value.field == field
    assert (await queue.counts())["waiting"] == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"job_id": ""}, "job_id"),
        ({"dedupe_key": ""}, "dedupe_key"),
    ],
)
async def test_enqueue_refuses_bad_options_naming_them(queue: Queue, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidJob) as info:
        await queue.enqueue({}, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_enqueue_with_existing_id_returns_that_job(queue: Queue) -> None:
    await queue.enqueue({"v": 1}, job_id="same")
    again = await queue.enqueue({"v": 2}, job_id="same")
    assert again.existing and again.payload == {"v": 1}
    assert (await queue.counts())["waiting"] == 1


async def test_dedupe_key_returns_pending_job_until_it_finishes(queue: Queue, consumer: object) -> None:
    from certq.queue import Consumer

    assert isinstance(consumer, Consumer)
    first = await queue.enqueue({}, job_id="a", dedupe_key="m:us-east-1")
    dup = await queue.enqueue({}, job_id="b", dedupe_key="m:us-east-1")
    assert dup.id == "a" and dup.existing
    claim = await consumer.claim(1)
    assert (await queue.enqueue({}, job_id="c", dedupe_key="m:us-east-1")).id == "a"  # active still dedupes
    await consumer.complete(claim.leases[0], {"ok": True})
    fresh = await queue.enqueue({}, job_id="d", dedupe_key="m:us-east-1")
    assert (fresh.id, fresh.existing) == ("d", False)
    assert first.id == "a"


async def test_enqueue_many_adds_all_in_order(queue: Queue, backend: aioredis.Redis) -> None:
    jobs = await queue.enqueue_many([JobSpec({"n": n}, job_id=f"j{n}") for n in range(25)], batch_size=10)
    assert [job.id for job in jobs] == [f"j{n}" for n in range(25)]
    assert await queue.ids("waiting", 0, 100) == [f"j{n}" for n in range(25)]
    await assert_each_in_one_place(backend, queue.keys, {f"j{n}" for n in range(25)})


async def test_delayed_job_waits_in_zset_until_due(
    queue: Queue, backend: aioredis.Redis, clock: FakeClock, consumer: object
) -> None:
    from certq.queue import Consumer

    assert isinstance(consumer, Consumer)
    job = await queue.enqueue({}, job_id="later", delay_ms=5_000)
    assert job.state is JobState.DELAYED and job.due_at == clock.now + 5_000
    assert await backend.zscore(queue.keys.delayed, "later") == clock.now + 5_000
    assert await consumer.promote_due() == (0, clock.now + 5_000)
    clock.advance(5_000)
    assert await consumer.promote_due() == (1, None)
    assert await queue.ids("waiting") == ["later"]


async def test_promote_runs_a_delayed_job_now(queue: Queue) -> None:
    await queue.enqueue({}, job_id="d", delay_ms=60_000)
    await queue.promote("d")
    assert (await queue.counts())["waiting"] == 1
    with pytest.raises(JobStateError):
        await queue.promote("d")


async def test_list_pages_each_state(queue: Queue) -> None:
    await queue.enqueue_many([JobSpec({}, job_id=f"h{n}", priority="high") for n in range(3)])
    await queue.enqueue_many([JobSpec({}, job_id=f"n{n}") for n in range(3)])
    assert await queue.ids("waiting", 0, 4) == ["h0", "h1", "h2", "n0"]
    assert await queue.ids("waiting", 2, 3) == ["h2", "n0", "n1"]
    assert [job.id for job in await queue.list("waiting", 5, 10)] == ["n2"]
    with pytest.raises(InvalidJob):
        await queue.list("bogus")


async def test_pause_keeps_enqueue_working_and_resume_restores(queue: Queue, consumer: object) -> None:
    from certq.queue import Consumer

    assert isinstance(consumer, Consumer)
    await queue.pause()
    assert await queue.is_paused()
    await queue.enqueue({}, job_id="p")
    claim = await consumer.claim(5)
    assert claim.paused and claim.leases == []
    assert (await queue.counts())["paused"] == 1
    await queue.resume()
    assert [lease.job.id for lease in (await consumer.claim(5)).leases] == ["p"]


async def test_remove_deletes_non_active_jobs(queue: Queue, backend: aioredis.Redis, consumer: object) -> None:
    from certq.queue import Consumer

    assert isinstance(consumer, Consumer)
    await queue.enqueue({}, job_id="r", dedupe_key="k")
    await queue.enqueue({}, job_id="act")
    assert await queue.remove("r")
    assert await queue.get("r") is None
    assert not await queue.remove("r")
    assert await backend.get(queue.keys.dedupe("k")) is None
    await consumer.claim(1)
    with pytest.raises(JobStateError):
        await queue.remove("act")


async def test_events_stream_records_state_changes_and_is_capped(
    backend: aioredis.Redis, key_prefix: str, clock: FakeClock
) -> None:
    queue = Queue(backend, QueueConfig(prefix=key_prefix, name="ev", events_maxlen=50), clock=clock)
    await queue.enqueue({}, job_id="e1")
    events = await queue.events("0", 10)
    assert [(fields["event"], fields["jobId"]) for _, fields in events] == [("added", "e1")]
    await queue.enqueue_many([JobSpec({}) for _ in range(500)])
    assert await backend.xlen(queue.keys.events) < 250
    assert await queue.events(events[-1][0], 5) != []


async def test_corrupt_hash_reads_back_as_failed_job_with_reason(queue: Queue, backend: aioredis.Redis) -> None:
    await backend.hset(queue.keys.job("bad"), mapping={"id": "bad", "state": "waiting", "payload": "{not json"})  # type: ignore[misc]
    job = await queue.get("bad")
    assert job is not None and job.state is JobState.FAILED and "corrupt" in (job.last_error or "")


async def test_clean_deletes_only_the_state_it_names(queue: Queue, consumer: Consumer, clock: FakeClock) -> None:
    await queue.enqueue_many([JobSpec({}, job_id="ok"), JobSpec({}, job_id="bad", max_attempts=1)])
    done, broken = sorted((await consumer.claim(2)).leases, key=lambda lease: lease.job.id != "ok")
    await consumer.complete(done)
    assert await consumer.fail(broken, "boom") is JobState.FAILED
    clock.advance(1)
    assert await queue.clean("failed", 0) == 1
    assert (await queue.ids("failed"), await queue.ids("completed")) == ([], ["ok"])
    assert await queue.get("bad") is None
    assert await queue.clean("completed", 0) == 1
    assert await queue.get("ok") is None
