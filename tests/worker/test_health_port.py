"""A real worker's health port over real HTTP: the contract's shapes, and metrics parsed by prometheus_client."""

from __future__ import annotations

import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from certq.queue import Queue
from tests.worker.helpers import SpawnWorker, http_get, wait_finished, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_ready_live_and_metrics_of_a_running_worker(spawn_worker: SpawnWorker, queue: Queue) -> None:
    worker = spawn_worker("--concurrency", "3", "--queue", "model-certification")
    port = await worker.started()
    ready = await wait_status(port, "/ready", 200)
    assert ready.json()["ready"] is True

    health = await http_get(port, "/health")
    assert health.status_code == 200
    body = health.json()
    assert set(body) == {"status", "worker", "timestamp"}
    assert body["status"] == "healthy"
    assert body["worker"] == {"isRunning": True, "queueName": "model-certification", "concurrency": 3}
    assert (await http_get(port, "/live")).json()["alive"] is True

    jobs = [await queue.enqueue({"sleep": 0}) for _ in range(3)]
    jobs.append(await queue.enqueue({"fail": "nope", "final": True, "category": "AUTH_ERROR"}))
    jobs.append(await queue.enqueue({"fail": "flaky", "fail_attempts": 1, "category": "SERVER_ERROR"}))
    await wait_finished(queue, [job.id for job in jobs])
    await queue.enqueue({"sleep": 0}, delay_ms=600_000)

    metrics = await http_get(port, "/metrics", Accept="text/plain")
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = _samples(metrics.text)
    q = ("queue", "model-certification")
    assert samples[("certq_jobs_total", (("outcome", "completed"), q))] == 4
    assert samples[("certq_jobs_total", (("outcome", "failed"), q))] == 1
    assert samples[("certq_jobs_total", (("outcome", "retried"), q))] == 1
    assert samples[("certq_job_retries_total", (("category", "SERVER_ERROR"), q))] == 1
    assert samples[("certq_job_duration_seconds_count", (("outcome", "completed"), q))] == 4
    assert samples[("certq_queue_jobs", (q, ("state", "completed")))] == 4
    assert samples[("certq_queue_jobs", (q, ("state", "failed")))] == 1
    assert samples[("certq_queue_jobs", (q, ("state", "delayed")))] == 1
    assert samples[("certq_active_jobs", (q,))] == 0
    assert samples[("certq_worker_concurrency", (q,))] == 3
    assert samples[("certq_redis_up", ())] == 1 and samples[("certq_database_up", ())] == 1
    assert samples[("certq_redis_last_success_timestamp_seconds", ())] > 1.7e9
    assert ("process_resident_memory_bytes", ()) in samples

    as_json = await http_get(port, "/metrics", Accept="application/json")
    assert as_json.json()["queue"] == {"waiting": 0, "active": 0, "completed": 4, "failed": 1, "delayed": 1}
    assert as_json.json()["worker"]["concurrency"] == 3

    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


async def test_ready_is_503_while_draining(spawn_worker: SpawnWorker, queue: Queue) -> None:
    worker = spawn_worker("--concurrency", "1", "--shutdown-grace", "30")
    port = await worker.started()
    await wait_status(port, "/ready", 200)
    job = await queue.enqueue({"sleep": 1.5})
    await worker.wait_log("job started")
    worker.signal(signal.SIGTERM)
    await worker.wait_log("shutdown requested; draining")
    draining = await http_get(port, "/ready")
    assert draining.status_code == 503 and draining.json()["reason"] == "draining"
    assert (await http_get(port, "/live")).status_code == 200
    assert await worker.exit_code() == 0
    finished = await queue.get(job.id)
    assert finished is not None and finished.state.value == "completed"
