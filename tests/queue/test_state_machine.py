"""Random sequences of queue moves against the real Redis: every job id is in exactly one structure."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from certq.queue import Consumer, Lease, LeaseLost, Queue, QueueConfig
from tests.support.queue_helpers import FakeClock, assert_each_in_one_place

pytestmark = pytest.mark.real_redis


class QueueMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.client = aioredis.from_url(self.redis_url)
        # Leases never run out by wall time here (`crash` deletes them), so a slow example replays the same.
        self.config = QueueConfig(
            prefix=f"{{sm{uuid.uuid4().hex[:10]}}}",
            name="sm",
            max_stalls=2,
            rate_limits={"limited": (1, 60.0)},
            lease_ms=600_000,
        )
        self.clock = FakeClock()
        self.queue = Queue(self.client, self.config, clock=self.clock)
        self.consumers = [Consumer(self.client, self.config, consumer_id=f"c{i}", clock=self.clock) for i in range(2)]
        self.held: list[tuple[int, Lease]] = []
        self.ids: set[str] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def clean() -> None:
            keys = [key async for key in self.client.scan_iter(match=f"{self.config.prefix}*", count=1000)]
            if keys:
                await self.client.unlink(*keys)
            await self.client.aclose()

        self.run(clean())
        self.loop.close()

    @rule(
        priority=st.sampled_from(["high", "normal", "low"]),
        delay=st.sampled_from([0, 0, 1_000]),
        group=st.sampled_from([None, None, "limited"]),
        max_attempts=st.integers(1, 3),
    )
    def enqueue(self, priority: Any, delay: int, group: str | None, max_attempts: int) -> None:
        job = self.run(
            self.queue.enqueue(
                {"n": len(self.ids)},
                job_id=f"j{len(self.ids)}",
                priority=priority,
                delay_ms=delay,
                group=group,
                max_attempts=max_attempts,
            )
        )
        self.ids.add(job.id)

    @rule(who=st.integers(0, 1), count=st.integers(1, 3))
    def claim(self, who: int, count: int) -> None:
        claim = self.run(self.consumers[who].claim(count))
        self.held.extend((who, lease) for lease in claim.leases)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "fail_final", "release", "progress"]))
    def settle(self, data: st.DataObject, outcome: str) -> None:
        who, lease = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        consumer = self.consumers[who]
        try:
            if outcome == "complete":
                self.run(consumer.complete(lease, {"ok": True}))
            elif outcome == "release":
                assert self.run(consumer.release(lease))
            elif outcome == "progress":
                self.run(consumer.progress(lease, 1))
                self.held.append((who, lease))
            else:
                self.run(consumer.fail(lease, "boom", final=outcome == "fail_final"))
        except LeaseLost:
            raise AssertionError("a held lease was reported lost") from None

    @precondition(lambda self: self.held)
    @rule(who=st.integers(0, 1))
    def crash(self, who: int) -> None:
        """The consumer dies: its leases run out (their keys expire) and it forgets them."""
        for owner, lease in self.held:
            if owner == who:
                self.run(self.client.delete(self.config.keys.lock(lease.job.id)))
        self.held = [(owner, lease) for owner, lease in self.held if owner != who]

    @rule()
    def recover(self) -> None:
        for _ in range(2):
            self.run(self.client.delete(self.config.keys.stalled_check))
            self.run(self.consumers[0].recover_stalled())

    @rule(ms=st.sampled_from([500, 70_000]))
    def promote(self, ms: int) -> None:
        self.clock.advance(ms)
        self.run(self.consumers[1].promote_due())

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.ids)))
        outcome = self.run(self.queue.cancel(job_id))
        assert outcome in ("removed", "flagged", "finished")

    @rule()
    def retry_all(self) -> None:
        self.run(self.queue.retry_all_failed())

    @invariant()
    def each_job_in_exactly_one_place(self) -> None:
        where = self.run(assert_each_in_one_place(self.client, self.config.keys, self.ids))
        for _, lease in self.held:
            assert where[lease.job.id] == "active"


def test_random_moves_keep_every_job_in_exactly_one_place(redis_url: str) -> None:
    QueueMachine.redis_url = redis_url
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=80, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
