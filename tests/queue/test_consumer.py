"""The consumer contract (claim, lease, complete, fail, release, stalls, limits), on fakeredis and real Redis."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from certq.queue import Consumer, JobSpec, JobState, JobStateError, LeaseLost, Queue, QueueConfig
from certq.queue.protocol import LeaseStatus, StartCall
from tests.support.queue_helpers import FakeClock, assert_each_in_one_place


async def stalled_pass(consumer: Consumer) -> tuple[list[str], list[str]] | None:
    """One stalled-check pass now (the interval guard is a real TTL, so drop it instead of waiting)."""
    await consumer.redis.delete(consumer.keys.stalled_check)
    return await consumer.recover_stalled()


async def test_claim_takes_priorities_strictly_and_fifo_within_each(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue_many(
        [
            JobSpec({}, job_id="low1", priority="low"),
            JobSpec({}, job_id="n1"),
            JobSpec({}, job_id="high1", priority="high"),
            JobSpec({}, job_id="n2"),
            JobSpec({}, job_id="high2", priority="high"),
            JobSpec({}, job_id="low2", priority="low"),
        ]
    )
    claim = await consumer.claim(10)
    assert [lease.job.id for lease in claim.leases] == ["high1", "high2", "n1", "n2", "low1", "low2"]


async def test_claim_moves_to_active_with_a_lease_that_expires_by_ttl(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue({"x": 1}, job_id="j")
    [lease] = (await consumer.claim(1)).leases
    assert (lease.job.state, lease.attempt, lease.job.payload) == (JobState.ACTIVE, 1, {"x": 1})
    assert await backend.get(queue.keys.lock("j")) == lease.token.encode()
    assert 0 < await backend.pttl(queue.keys.lock("j")) <= consumer.config.lease_ms
    await assert_each_in_one_place(backend, queue.keys, {"j"})


async def test_complete_stores_result_and_rejects_a_lost_lease(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis, clock: FakeClock
) -> None:
    await queue.enqueue({}, job_id="a")
    await queue.enqueue({}, job_id="b")
    first, second = (await consumer.claim(2)).leases
    await consumer.complete(first, {"score": 97})
    job = await queue.get("a")
    assert job is not None
    assert (job.state, job.result, job.finished_at) == (JobState.COMPLETED, {"score": 97}, clock.now)
    await backend.delete(queue.keys.lock("b"))  # the lease expired
    with pytest.raises(LeaseLost):
        await consumer.complete(second, None)
    with pytest.raises(LeaseLost):
        await consumer.fail(second, "late")
    with pytest.raises(LeaseLost):
        await consumer.progress(second, 5)
    await assert_each_in_one_place(backend, queue.keys, {"a", "b"})


async def test_fail_retries_with_backoff_until_max_attempts_then_failed(
    queue: Queue, consumer: Consumer, clock: FakeClock
) -> None:
    await queue.enqueue({}, job_id="f", max_attempts=3)
    for attempt in (1, 2):
        [lease] = (await consumer.claim(1)).leases
        assert lease.attempt == attempt
        assert await consumer.fail(lease, f"boom {attempt}", category="SERVER_ERROR") is JobState.DELAYED
        job = await queue.get("f")
        assert job is not None and job.due_at is not None
        assert clock.now <= job.due_at <= clock.now + 1_000 * 2 ** (attempt - 1)  # full jitter under the base
        assert (await consumer.claim(1)).leases == []
        clock.now = job.due_at
        assert (await consumer.promote_due())[0] == 1
    [lease] = (await consumer.claim(1)).leases
    assert await consumer.fail(lease, "boom 3", category="SERVER_ERROR") is JobState.FAILED
    job = await queue.get("f")
    assert job is not None and job.state is JobState.FAILED
    assert [(e["attempt"], e["message"]) for e in job.errors] == [(1, "boom 1"), (2, "boom 2"), (3, "boom 3")]
    assert (job.last_error, job.error_category) == ("boom 3", "SERVER_ERROR")


async def test_final_error_goes_straight_to_failed(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue({}, job_id="x", max_attempts=5)
    [lease] = (await consumer.claim(1)).leases
    assert await consumer.fail(lease, "bad key", final=True, category="AUTH_ERROR") is JobState.FAILED
    assert (await queue.counts())["failed"] == 1


async def test_an_attempt_error_keeps_its_stack_only_when_given(
    queue: Queue, consumer: Consumer, clock: FakeClock
) -> None:
    await queue.enqueue({}, job_id="s", max_attempts=2)
    [lease] = (await consumer.claim(1)).leases
    stack = 'Traceback (most recent call last):\n  File "h.py", line 1, in handler\nRuntimeError: bug "quoted"\n'
    assert await consumer.fail(lease, "RuntimeError: bug", stack=stack) is JobState.DELAYED
    clock.now = (await queue.get("s")).due_at or clock.now  # type: ignore[union-attr]
    await consumer.promote_due()
    [lease] = (await consumer.claim(1)).leases
    assert await consumer.fail(lease, "no access", final=True, category="AUTH_ERROR") is JobState.FAILED
    job = await queue.get("s")
    assert job is not None
    first, second = job.errors
    assert (first["message"], first["stack"]) == ("RuntimeError: bug", stack)
    assert second["message"] == "no access" and "stack" not in second


async def test_release_puts_job_first_in_line_without_counting_the_attempt(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue_many([JobSpec({}, job_id="r1", max_attempts=1), JobSpec({}, job_id="r2")])
    [lease] = (await consumer.claim(1)).leases
    assert await consumer.release(lease)
    [again] = (await consumer.claim(1)).leases
    assert again.job.id == "r1" and again.job.attempts_counted == 1 and again.attempt == 2
    assert await consumer.fail(again, "once") is JobState.FAILED  # the released start did not count


async def test_retry_replays_failed_jobs_with_fresh_attempts(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue_many([JobSpec({}, job_id=f"d{n}", max_attempts=1) for n in range(3)])
    for lease in (await consumer.claim(3)).leases:
        await consumer.fail(lease, "dead")
    await queue.retry("d0")
    with pytest.raises(JobStateError):
        await queue.retry("d0")
    assert await queue.retry_all_failed() == 2
    leases = (await consumer.claim(3)).leases
    assert sorted(lease.job.id for lease in leases) == ["d0", "d1", "d2"]
    assert all(lease.job.attempts_counted == 1 and lease.attempt == 2 for lease in leases)
    await assert_each_in_one_place(backend, queue.keys, {"d0", "d1", "d2"})


async def test_cancel_waiting_delayed_active_and_finished(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue_many(
        [JobSpec({}, job_id="w"), JobSpec({}, job_id="d", delay_ms=1_000), JobSpec({}, job_id="a")]
    )
    assert await queue.cancel("w") == "removed"
    assert await queue.cancel("d") == "removed"
    [lease] = (await consumer.claim(1)).leases
    assert await queue.cancel("a") == "flagged"
    assert await consumer.heartbeat([lease]) == [LeaseStatus.CANCEL_REQUESTED]
    assert await consumer.fail(lease, "stopped", final=True, category="CANCELLED") is JobState.FAILED
    assert await queue.cancel("a") == "finished"
    assert await queue.cancel("nope") == "not_found"
    for job_id in ("w", "d", "a"):
        job = await queue.get(job_id)
        assert job is not None and job.cancelled and job.state is JobState.FAILED and job.error_category == "CANCELLED"
    assert await queue.retry_all_failed() == 0  # cancelled jobs are not replayed in bulk
    await assert_each_in_one_place(backend, queue.keys, {"w", "d", "a"})


async def test_heartbeat_renews_leases_and_registers_the_worker(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue_many([JobSpec({}, job_id="h1"), JobSpec({}, job_id="h2")])
    first, second = (await consumer.claim(2)).leases
    await backend.pexpire(queue.keys.lock("h1"), 100)
    await backend.delete(queue.keys.lock("h2"))
    assert await consumer.heartbeat([first, second], {"concurrency": 2, "health_port": 3002}) == [
        LeaseStatus.RENEWED,
        LeaseStatus.LOST,
    ]
    assert await backend.pttl(queue.keys.lock("h1")) > 100
    [worker] = await queue.workers()
    assert (worker["id"], worker["concurrency"], worker["health_port"]) == ("c1", 2, 3002)
    await consumer.unregister()
    assert await queue.workers() == []


async def test_progress_is_recorded_and_streamed(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue({}, job_id="p")
    [lease] = (await consumer.claim(1)).leases
    await consumer.progress(lease, {"done": 3, "total": 10})
    job = await queue.get("p")
    assert job is not None and job.progress == {"done": 3, "total": 10}
    events = [fields for _, fields in await queue.events("0", 100)]
    assert {"event": "progress", "jobId": "p", "progress": '{"done":3,"total":10}'} in events


async def test_stalled_job_returns_to_wait_on_second_pass_only_without_lease(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue_many(
        [JobSpec({}, job_id="dead", priority="high"), JobSpec({}, job_id="alive"), JobSpec({}, job_id="next")]
    )
    dead, alive = (await consumer.claim(2)).leases
    assert await stalled_pass(consumer) == ([], [])  # first pass only marks
    await backend.delete(queue.keys.lock("dead"))  # its consumer crashed: the lease ran out
    assert await stalled_pass(consumer) == (["dead"], [])
    assert await queue.ids("waiting") == ["dead", "next"]
    job = await queue.get("dead")
    assert job is not None and job.stalls == 1 and job.attempts_left == job.max_attempts
    await consumer.complete(alive, None)
    await assert_each_in_one_place(backend, queue.keys, {"dead", "alive", "next"})
    assert dead.job.id == "dead"


async def test_recover_stalled_runs_once_per_interval(queue: Queue, consumer: Consumer) -> None:
    assert await stalled_pass(consumer) == ([], [])
    assert await consumer.recover_stalled() is None


async def test_job_stalling_too_often_goes_to_failed_with_reason(
    backend: aioredis.Redis, key_prefix: str, clock: FakeClock
) -> None:
    config = QueueConfig(prefix=key_prefix, name="s", max_stalls=1)
    queue, consumer = Queue(backend, config, clock=clock), Consumer(backend, config, clock=clock)
    await queue.enqueue({}, job_id="s")
    for _ in range(2):
        await consumer.claim(1)
        await stalled_pass(consumer)
        await backend.delete(config.keys.lock("s"))
        await stalled_pass(consumer)
    job = await queue.get("s")
    assert job is not None and job.state is JobState.FAILED and job.error_category == "STALLED"
    assert "stalled more than 1 times" in (job.last_error or "")


async def test_claim_lease_gap_is_not_taken_for_a_stall(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue({}, job_id="g")
    await backend.lmove(queue.keys.wait, queue.keys.active, "RIGHT", "LEFT")  # BLMOVE done, lease not yet taken
    await stalled_pass(consumer)  # marks "g" while it has no lease
    call = StartCall(
        "g", consumer.clock(), lease_ms=3000, token="tok", consumer_id="c1", rate_limits="", source="normal"
    )
    reply = await consumer.scripts.start(call)
    assert reply.status == "ok" and reply.claimed is not None and reply.claimed.job_id == "g"
    assert await stalled_pass(consumer) == ([], [])
    await assert_each_in_one_place(backend, queue.keys, {"g"})


async def test_rate_limited_group_waits_in_delayed_without_burning_attempts(
    backend: aioredis.Redis, key_prefix: str, clock: FakeClock
) -> None:
    config = QueueConfig(prefix=key_prefix, name="rl", rate_limits={"us-east-1": (2, 60.0), "*": (10, 1.0)})
    queue, consumer = Queue(backend, config, clock=clock), Consumer(backend, config, clock=clock)
    await queue.enqueue_many(
        [JobSpec({}, job_id=f"us{n}", group="us-east-1") for n in range(4)]
        + [JobSpec({}, job_id="eu", group="eu-west-1"), JobSpec({}, job_id="none")]
    )
    claimed = [lease.job.id for lease in (await consumer.claim(10)).leases]
    assert claimed == ["us0", "us1", "eu", "none"]  # other groups are not held up
    limited = await queue.list("delayed")
    assert [job.id for job in limited] == ["us2", "us3"]
    assert all(job.attempts == 0 for job in limited)
    assert [job.due_at for job in limited] == [clock.now + 30_000, clock.now + 60_000]  # one token per 30 s
    clock.advance(30_000)
    await consumer.promote_due()
    assert [lease.job.id for lease in (await consumer.claim(10)).leases] == ["us2"]  # its token was reserved


async def test_unknown_id_and_corrupt_hash_go_to_failed_and_claiming_goes_on(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue({}, job_id="good")
    await backend.rpush(queue.keys.wait, "ghost")  # type: ignore[misc]  # claimed first: popped from the right
    garbled = {"id": "garbled", "state": "waiting", "payload": "{oops"}
    await backend.hset(queue.keys.job("garbled"), mapping=garbled)  # type: ignore[misc]
    await backend.rpush(queue.keys.wait, "garbled")  # type: ignore[misc]
    claim = await consumer.claim(5)
    assert [lease.job.id for lease in claim.leases] == ["good"]
    for job_id in ("ghost", "garbled"):
        job = await queue.get(job_id)
        assert job is not None and job.state is JobState.FAILED and job.error_category == "CORRUPT_JOB"
        assert "corrupt job" in (job.last_error or "")
    await assert_each_in_one_place(backend, queue.keys, {"good", "ghost", "garbled"})


async def test_retention_keeps_last_n_completed_and_cleans_by_age(
    backend: aioredis.Redis, key_prefix: str, clock: FakeClock
) -> None:
    config = QueueConfig(prefix=key_prefix, name="ret", keep_completed=3, failed_max_age_ms=10_000)
    queue, consumer = Queue(backend, config, clock=clock), Consumer(backend, config, clock=clock)
    await queue.enqueue_many([JobSpec({}, job_id=f"c{n}") for n in range(5)])
    for lease in (await consumer.claim(5)).leases:
        await consumer.complete(lease, None)
    assert await queue.ids("completed") == ["c4", "c3", "c2"]
    assert await queue.get("c0") is None
    await queue.enqueue({}, job_id="old", max_attempts=1)
    [lease] = (await consumer.claim(1)).leases
    await consumer.fail(lease, "x")
    assert await consumer.apply_retention() == 0
    clock.advance(10_001)
    assert await consumer.apply_retention() == 1
    assert await queue.get("old") is None
    assert await queue.clean("completed", 0) == 3


async def test_complete_and_claim_settles_and_claims_in_one_call(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue_many([JobSpec({}, job_id=f"b{n}") for n in range(6)])
    first = (await consumer.claim(3)).leases
    statuses, more, paused = await consumer.complete_and_claim([(lease, {"n": 1}) for lease in first], 3)
    assert statuses == [True, True, True] and not paused
    assert [lease.job.id for lease in more] == ["b3", "b4", "b5"]
    job = await queue.get("b0")
    assert job is not None and orjson.dumps(job.result) == b'{"n":1}'


async def test_job_lost_in_the_claim_lease_gap_is_recovered_with_its_attempts_intact(
    queue: Queue, consumer: Consumer, backend: aioredis.Redis
) -> None:
    await queue.enqueue({}, job_id="gap", max_attempts=2)
    await backend.lmove(queue.keys.wait, queue.keys.active, "RIGHT", "LEFT")  # the consumer died right after BLMOVE
    await stalled_pass(consumer)
    assert await stalled_pass(consumer) == (["gap"], [])
    [lease] = (await consumer.claim(1)).leases
    assert (lease.attempt, lease.job.attempts_counted, lease.job.stalls) == (1, 1, 1)
