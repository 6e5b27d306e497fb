"""DELETE /jobs/{id}: queued children leave the queue, the running one is stopped, all end CANCELLED."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from certq.jobs import queue_config
from certq.queue import ActiveJob, Runner
from tests.api.conftest import CreateModel

BASE = "/api/certification-queue"


async def test_cancel_of_a_batch_stops_running_and_removes_queued_children(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    services = api_server.services
    model = await create_model(regions=["a", "b", "c"])
    body = {"modelIds": [model["id"]], "regions": ["a", "b", "c"]}
    created = await client.post(f"{BASE}/certify-multiple", json=body)
    job_id = created.json()["jobId"]
    started = asyncio.Event()
    stopped = asyncio.Event()
    running: list[str] = []

    async def handler(active: ActiveJob) -> None:
        assert await services.store.begin_attempt(active.job.id, active.attempt)
        running.append(active.job.id)
        started.set()
        try:
            await asyncio.Event().wait()  # a certification that would take forever
        finally:
            stopped.set()

    config = queue_config(api_server.settings)
    runner = Runner(services.redis, config, handler, concurrency=1)
    stop = asyncio.Event()
    worker = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(15):
            await started.wait()
        response = await client.delete(f"{BASE}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "CANCELLED" and body["cancelled"] == 3
        assert (body["removedFromQueue"], body["stoppedRunning"]) == (2, 1)
        async with asyncio.timeout(15):
            await stopped.wait()
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await worker
    job = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    assert job["status"] == "CANCELLED" and job["cancelledCount"] == 3 and job["progress"] == 100
    assert {c["status"] for c in job["certifications"]} == {"CANCELLED"}
    counts = await services.queue.counts()
    assert counts["waiting"] == 0 and counts["active"] == 0
    [running_id] = running
    assert not await services.store.finish_certification(running_id, 1, {"status": "CERTIFIED", "score": 100})
    again = await client.delete(f"{BASE}/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["alreadyFinished"] is True and again.json()["cancelled"] == 0


async def test_cancel_of_a_single_job_removes_its_queued_certification(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    model = await create_model(regions=["local"])
    created = (await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})).json()
    response = await client.delete(f"{BASE}/jobs/{created['jobId']}")
    assert response.status_code == 200 and response.json()["removedFromQueue"] == 1
    queued = await api_server.services.queue.get(created["certificationId"])
    assert queued is not None and queued.cancelled
    again = await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})
    assert again.status_code == 201 and again.json()["jobId"] != created["jobId"]


async def test_a_finished_job_stays_as_it_is(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    store = api_server.services.store
    model = await create_model(regions=["local"])
    created = (await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})).json()
    await store.begin_attempt(created["certificationId"], 1)
    await store.finish_certification(
        created["certificationId"], 1, {"status": "CERTIFIED", "score": 95, "rating": "A", "passed": True}
    )
    response = await client.delete(f"{BASE}/jobs/{created['jobId']}")
    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETED" and response.json()["alreadyFinished"] is True
    job = (await client.get(f"{BASE}/jobs/{created['jobId']}")).json()
    assert job["certifications"][0]["status"] == "CERTIFIED" and job["certifications"][0]["passed"] is True
