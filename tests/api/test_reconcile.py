"""Redis can lose everything: the reconciler puts every accepted certification back in the queue."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from certq.api import create_app
from certq.jobs import queue_config
from certq.queue.consumer import Consumer
from certq.queue.queue import Queue
from certq.reconcile import reconcile
from tests.api.conftest import CreateModel
from tests.conftest import api_settings, unlink_prefix
from tests.support.servers import serve_app

BASE = "/api/certification-queue"


async def test_certifications_lost_by_redis_are_enqueued_again(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any, key_prefix: str
) -> None:
    services = api_server.services
    model = await create_model(regions=["a", "b"])
    batch = (
        await client.post(f"{BASE}/certify-multiple", json={"modelIds": [model["id"]], "regions": ["a", "b"]})
    ).json()
    running_id, queued_id = batch["certificationIds"]
    assert await services.store.begin_attempt(running_id, 1)
    await unlink_prefix(services.redis, key_prefix)  # Redis restarted empty
    assert await services.queue.get(queued_id) is None

    report = await reconcile(services.store, services.queue, api_server.settings, older_than_s=0)
    assert report.requeued >= 2
    for certification_id in (running_id, queued_id):
        job = await services.queue.get(certification_id)
        assert job is not None and job.state.value == "waiting"
        assert job.payload["certificationId"] == certification_id
    assert not await services.store.finish_certification(running_id, 1, {"status": "CERTIFIED", "score": 99})
    assert await services.store.begin_attempt(running_id, 1)  # the new generation's first attempt owns the row
    record = await services.store.get_certification(running_id)
    assert record.generation == 2 and [e["outcome"] for e in record.attempt_log] == ["LOST"]

    await reconcile(services.store, services.queue, api_server.settings, older_than_s=0)
    for certification_id in (running_id, queued_id):  # present in Redis now: left alone
        record = await services.store.get_certification(certification_id)
        assert record.generation == 2


async def test_young_certifications_are_left_to_the_api(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any, key_prefix: str
) -> None:
    services = api_server.services
    model = await create_model(regions=["local"])
    created = (await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})).json()
    await unlink_prefix(services.redis, key_prefix)
    await reconcile(services.store, services.queue, api_server.settings, older_than_s=3600)
    assert await services.queue.get(created["certificationId"]) is None


def test_reconcile_command_reports_and_exits_zero(migrated_database_url: str, redis_url: str, key_prefix: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "certq",
            "reconcile",
            "--database-url",
            migrated_database_url,
            "--redis-url",
            redis_url,
            "--prefix",
            key_prefix,
            "--older-than",
            "3600",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "re-enqueued" in result.stdout


async def test_a_run_whose_queue_job_failed_without_an_outcome_is_closed_once(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    services = api_server.services
    model = await create_model(regions=["local"])
    created = (await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})).json()
    consumer = Consumer(services.redis, queue_config(api_server.settings))
    [lease] = (await consumer.claim()).leases
    assert await services.store.begin_attempt(created["certificationId"], lease.attempt)
    # The worker died after its queue job was failed for good (e.g. too many stalls), before writing PostgreSQL.
    await consumer.fail(lease, "stalled too often", final=True, category="TIMEOUT")
    job = await services.queue.get(created["certificationId"])
    assert job is not None and job.state.value == "failed"

    # older_than_s=-1: everything counts as settled, even a job that failed in this very millisecond.
    report = await reconcile(services.store, services.queue, api_server.settings, older_than_s=-1)
    assert report.closed >= 1
    detail = (await client.get(f"{BASE}/jobs/{created['jobId']}")).json()
    assert detail["status"] == "FAILED" and detail["failureCount"] == 1 and detail["processedModels"] == 1
    [run] = detail["certifications"]
    assert run["status"] == "FAILED" and run["errorCategory"] == "TIMEOUT" and run["passed"] is False
    await reconcile(services.store, services.queue, api_server.settings, older_than_s=-1)
    again = (await client.get(f"{BASE}/jobs/{created['jobId']}")).json()
    assert again["processedModels"] == 1


async def test_a_certification_accepted_while_redis_is_down_is_enqueued_later(
    migrated_database_url: str, redis_url: str, key_prefix: str, redis_client: Any, store: Any, make_model: Any
) -> None:
    token = "t-" + key_prefix
    down = api_settings(migrated_database_url, "redis://127.0.0.1:1/0", key_prefix, token)
    model = await make_model(regions=["local"])
    app = create_app(down)
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http,
    ):
        response = await http.post(f"{BASE}/certify-model", json={"modelId": str(model.id), "region": "local"})
        stats = await http.get(f"{BASE}/stats")
    assert response.status_code == 201, response.text  # recorded in PostgreSQL: accepted
    assert stats.status_code == 200 and stats.json()["queueAvailable"] is False
    assert app.state.services.metrics.enqueue_failures._value.get() == 1

    up = api_settings(migrated_database_url, redis_url, key_prefix, token)
    queue = Queue(redis_client, queue_config(up))
    await reconcile(store, queue, up, older_than_s=-1)
    job = await queue.get(response.json()["certificationId"])
    assert job is not None and job.payload["jobId"] == response.json()["jobId"]
