"""The chaos scenarios: each runs N certifications end to end through a fault and returns the Ledger."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from certq.chaos.ledger import Ledger
from certq.chaos.world import ReadyWatch, Topology, World

LEASE_S = 3.0
"""The queue's default lease (QueueConfig.lease_ms): a frozen worker must stay frozen longer than this."""


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    fault: Callable[[World], Awaitable[dict[str, object]]]
    topology: Topology = "single"
    job_timeout_ms: int = 30_000
    watch_ready: bool = False


async def _worker_sigkill(world: World) -> dict[str, object]:
    victim = world.workers[0]
    victim.signal(signal.SIGKILL)
    replacement = world.add_worker()  # what Kubernetes does; the other worker also recovers the leases
    return {"killed_pid": victim.process.pid if victim.process else None, "replacement_port": replacement.health_port}


async def _worker_sigstop(world: World) -> dict[str, object]:
    victim = world.workers[0]
    victim.signal(signal.SIGSTOP)
    await asyncio.sleep(LEASE_S * 2 + 1)  # the fault itself: frozen past its leases, then resumed
    victim.signal(signal.SIGCONT)
    return {"frozen_s": LEASE_S * 2 + 1}


async def _redis_restart(world: World) -> dict[str, object]:
    await world.restart_redis_empty(down_s=2.0)
    return {"down_s": 2.0}


async def _sentinel_failover(world: World) -> dict[str, object]:
    assert world.sentinels is not None
    batch = max(2, len(world.accepted) // 5)

    async def accept_more() -> None:
        await world.submit(batch)

    # The last batch is acknowledged by the master alone (the replica is frozen meanwhile), then the
    # master dies: Redis loses those jobs, PostgreSQL still has the runs, the reconciler brings them back.
    _, new, seconds = await world.sentinels.kill_master(unreplicated=accept_more)
    return {"promoted": new.address, "promotion_s": round(seconds, 2), "accepted_unreplicated": batch}


async def _postgres_restart(world: World) -> dict[str, object]:
    await world.restart_postgres()
    return {}


async def _provider_hang(world: World) -> dict[str, object]:
    world.hang_provider()
    await asyncio.sleep(8.0)  # the fault itself: the endpoint answers nothing for 8 s
    world.release_provider()
    return {"hung_s": 8.0}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("worker-sigkill", "a worker is SIGKILLed mid-run; a replacement starts", _worker_sigkill),
        Scenario(
            "worker-sigstop", "a worker is frozen past its leases (SIGSTOP), then resumed (SIGCONT)", _worker_sigstop
        ),
        Scenario(
            "redis-restart",
            "Redis is SIGKILLed, stays down 2 s and restarts empty (no persistence)",
            _redis_restart,
            watch_ready=True,
        ),
        Scenario(
            "sentinel-failover",
            "the Sentinel master is SIGKILLed right after accepting a batch its replica "
            "never got; the replica is promoted",
            _sentinel_failover,
            topology="sentinel",
            watch_ready=True,
        ),
        Scenario(
            "postgres-restart",
            "PostgreSQL shuts down immediately (SIGQUIT) and restarts",
            _postgres_restart,
            watch_ready=True,
        ),
        Scenario(
            "provider-hang",
            "the model endpoint answers nothing for 8 s (job timeout 4 s)",
            _provider_hang,
            job_timeout_ms=4_000,
        ),
    ]
}


def topologies(name: str) -> tuple[Topology, ...]:
    """The Redis topologies a scenario can run on (its fault may need a particular one)."""
    fixed: dict[str, tuple[Topology, ...]] = {"redis-restart": ("single",), "sentinel-failover": ("sentinel",)}
    return fixed.get(name, ("single", "sentinel", "cluster"))


async def run_scenario(
    name: str,
    n: int = 40,
    timeout_s: float = 120.0,
    workers: int = 2,
    concurrency: int = 3,
    topology: Topology | None = None,
) -> Ledger:
    """Start a private certq, accept `n` certifications, strike once a quarter have finished, wait (bounded
    by `timeout_s` after the fault) until every accepted one is final, and count."""
    scenario = SCENARIOS[name]
    topology = topology or scenario.topology
    if topology not in topologies(name):
        raise ValueError(f"{name} runs on {' or '.join(topologies(name))}, not {topology}")
    started = time.monotonic()
    world = await World.start(
        topology=topology, workers=workers, concurrency=concurrency, job_timeout_ms=scenario.job_timeout_ms
    )
    stop_watch = asyncio.Event()
    watch = ReadyWatch([worker.health_port for worker in world.workers])
    api_watch = ReadyWatch([world.api_port])
    watchers = [asyncio.create_task(watch.run(stop_watch)), asyncio.create_task(api_watch.run(stop_watch))]
    fault_at = fault_over_at = None
    notes: dict[str, object] = {}
    try:
        await world.submit(n)
        await world.wait_finished(max(1, n // 4), within_s=timeout_s)
        fault_at = time.time()
        notes = await scenario.fault(world)
        fault_over_at = time.time()
        await world.wait_finished(len(world.accepted), within_s=timeout_s)
        ledger = await world.ledger(name, world.accepted, fault_at, fault_over_at, time.monotonic() - started)
        if scenario.watch_ready:
            await watch.wait_recovered(fault_at, within_s=30)
            await api_watch.wait_recovered(fault_at, within_s=30)
    finally:
        stop_watch.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*watchers)
        await world.stop()
    if scenario.watch_ready and fault_at is not None:
        for prefix, watched in (("ready", watch), ("api_ready", api_watch)):
            seen, back_s = watched.outage_after(fault_at)
            notes |= {f"{prefix}_503_seen": seen, f"{prefix}_back_s": None if back_s is None else round(back_s, 1)}
    ledger.notes |= notes | {"n": n, "workers": workers, "concurrency": concurrency, "topology": topology}
    return ledger
