"""Test helpers: a fake clock, and where each job id is (the "exactly one structure" invariant)."""

from __future__ import annotations

import redis.asyncio as aioredis

from certq.queue import QueueKeys


class FakeClock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start: int = 1_800_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


async def locate(redis: aioredis.Redis, keys: QueueKeys) -> dict[str, list[str]]:
    """job id -> every structure holding it (lists may hold an id twice: that is a bug too)."""
    where: dict[str, list[str]] = {}
    for name, key in (
        ("wait_high", keys.wait_high),
        ("wait", keys.wait),
        ("wait_low", keys.wait_low),
        ("active", keys.active),
        ("completed", keys.completed),
        ("failed", keys.failed),
    ):
        for raw in await redis.lrange(key, 0, -1):  # type: ignore[misc]
            where.setdefault(raw.decode(), []).append(name)
    for raw in await redis.zrange(keys.delayed, 0, -1):
        where.setdefault(raw.decode(), []).append("delayed")
    return where


STRUCTURE_STATE = {
    "wait_high": "waiting",
    "wait": "waiting",
    "wait_low": "waiting",
    "active": "active",
    "delayed": "delayed",
    "completed": "completed",
    "failed": "failed",
}


async def assert_each_in_one_place(redis: aioredis.Redis, keys: QueueKeys, ids: set[str]) -> dict[str, str]:
    """Every id in exactly one structure, matching its hash's state; no other ids. Returns id -> structure."""
    where = await locate(redis, keys)
    assert set(where) == ids, f"lost {ids - set(where)}, unknown {set(where) - ids}"
    out: dict[str, str] = {}
    for job_id, places in where.items():
        assert len(places) == 1, f"{job_id} is in {places}"
        state = await redis.hget(keys.job(job_id), "state")  # type: ignore[misc]
        assert state is not None and state.decode() == STRUCTURE_STATE[places[0]], (job_id, places, state)
        out[job_id] = places[0]
    return out
