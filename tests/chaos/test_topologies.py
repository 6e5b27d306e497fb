"""The API, its dashboard and the worker run unchanged on Redis Sentinel and Redis Cluster."""

from __future__ import annotations

import httpx
import pytest

from certq.chaos.world import Topology, World

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
async def test_api_dashboard_and_worker_serve_a_run_on(topology: Topology) -> None:
    world = await World.start(topology=topology, workers=1, concurrency=3)
    try:
        accepted = await world.submit(8)
        assert await world.wait_finished(len(accepted), within_s=60)
        base = f"http://127.0.0.1:{world.api_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            board = {"auth": ("admin", "admin123")}
            overview = await client.get("/admin/queues/api/overview", **board)  # type: ignore[arg-type]
            completed = await client.get("/admin/queues/api/jobs", params={"state": "completed"}, **board)  # type: ignore[arg-type]
            workers = await client.get("/admin/queues/api/workers", **board)  # type: ignore[arg-type]
            stats = await client.get("/api/certification-queue/stats", headers={"Authorization": "Bearer chaos"})
            ready = await client.get("/ready")
        assert [r.status_code for r in (overview, completed, workers, stats, ready)] == [200] * 5
        assert overview.json()["counts"]["completed"] == 8
        assert {item["id"] for item in completed.json()["items"]} == {str(cid) for cid in accepted}
        assert len(workers.json()["workers"]) == 1
        assert stats.json()["queue"]["completed"] == 8
    finally:
        await world.stop()
