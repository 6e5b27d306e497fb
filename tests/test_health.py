"""The health app over real HTTP: contract shapes, status codes, content negotiation, bounded checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from certq.health import Check, HealthProbes, HealthServer, build_health_app
from certq.metrics import Metrics


@dataclass
class World:
    redis_ok: bool = True
    ready: Check = field(default_factory=lambda: Check(True))
    counts: Mapping[str, int] = field(
        default_factory=lambda: {"waiting": 5, "active": 2, "completed": 150, "failed": 3, "delayed": 0, "paused": 0}
    )
    hang: bool = False
    scrapes: int = 0


@pytest.fixture
async def served() -> AsyncIterator[tuple[World, Metrics, httpx.AsyncClient]]:
    world = World()
    metrics = Metrics(CollectorRegistry())

    async def health() -> Check:
        if world.hang:
            await asyncio.Event().wait()
        return Check(True) if world.redis_ok else Check(False, "redis: connection refused")

    async def ready() -> Check:
        return world.ready

    async def counts() -> Mapping[str, int]:
        if not world.redis_ok:
            raise ConnectionError("connection refused")
        return world.counts

    async def before_scrape() -> None:
        world.scrapes += 1
        metrics.set_queue_counts("q", await counts())

    probes = HealthProbes(
        describe=lambda: {"isRunning": True, "queueName": "model-certification", "concurrency": 3},
        health=health,
        ready=ready,
        queue_counts=counts,
        registry=metrics.registry,
        before_scrape=before_scrape,
    )
    server = HealthServer(build_health_app(probes), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield world, metrics, client
    finally:
        await server.stop()


def _is_iso(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text.replace("Z", "+00:00")) is not None


async def test_health_answers_the_seed_shape_when_healthy(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    _, _, client = served
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["worker"] == {"isRunning": True, "queueName": "model-certification", "concurrency": 3}
    assert _is_iso(body["timestamp"])


async def test_health_is_503_with_reason_when_redis_is_unreachable(
    served: tuple[World, Metrics, httpx.AsyncClient],
) -> None:
    world, _, client = served
    world.redis_ok = False
    response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "redis" in response.json()["reason"]


async def test_a_hanging_check_answers_503_within_the_bound(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    world, _, client = served
    world.hang = True
    response = await client.get("/health")
    assert response.status_code == 503
    assert "did not answer" in response.json()["reason"]


async def test_ready_reports_the_reason_it_is_not_ready(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    world, _, client = served
    assert (await client.get("/ready")).status_code == 200
    world.ready = Check(False, "draining")
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["ready"] is False and response.json()["reason"] == "draining"


async def test_live_answers_while_other_checks_fail(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    world, _, client = served
    world.redis_ok = False
    world.ready = Check(False, "redis down")
    response = await client.get("/live")
    assert response.status_code == 200 and response.json()["alive"] is True


async def test_metrics_is_prometheus_text_with_queue_states_read_at_scrape_time(
    served: tuple[World, Metrics, httpx.AsyncClient],
) -> None:
    world, _, client = served
    response = await client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("certq_queue_jobs", "waiting")] == 5
    assert samples[("certq_queue_jobs", "completed")] == 150
    world.counts = {"waiting": 7}
    response = await client.get("/metrics")
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("certq_queue_jobs", "waiting")] == 7
    assert world.scrapes == 2


async def test_metrics_speaks_openmetrics_when_asked(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    _, _, client = served
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_metrics_still_renders_when_redis_is_away(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    world, _, client = served
    world.redis_ok = False
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "certq_jobs_total" in response.text or "certq_jobs" in response.text


async def test_metrics_json_is_the_seed_shape(served: tuple[World, Metrics, httpx.AsyncClient]) -> None:
    _, _, client = served
    response = await client.get("/metrics", headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"worker", "queue", "timestamp"}
    assert body["queue"] == {"waiting": 5, "active": 2, "completed": 150, "failed": 3, "delayed": 0}
    assert body["worker"]["queueName"] == "model-certification"


async def test_metrics_json_is_503_when_counts_cannot_be_read(
    served: tuple[World, Metrics, httpx.AsyncClient],
) -> None:
    world, _, client = served
    world.redis_ok = False
    response = await client.get("/metrics", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.json()["queue"] is None


def test_binding_a_port_in_use_fails_before_serving() -> None:
    first = HealthServer(build_health_app(_idle_probes()), "127.0.0.1", 0)
    first.bind()
    try:
        second = HealthServer(build_health_app(_idle_probes()), "127.0.0.1", first.port)
        with pytest.raises(OSError):
            second.bind()
    finally:
        asyncio.run(first.stop())


def _idle_probes() -> HealthProbes:
    async def ok() -> Check:
        return Check(True)

    async def counts() -> Mapping[str, int]:
        return {}

    return HealthProbes(describe=dict, health=ok, ready=ok, queue_counts=counts, registry=CollectorRegistry())


@pytest.mark.parametrize(
    ("method", "path", "status", "kind", "detail"),
    [
        ("GET", "/nope", 404, "not-found", "no such endpoint /nope"),
        ("GET", "/metrics/extra", 404, "not-found", "no such endpoint /metrics/extra"),
        ("POST", "/health", 405, "method-not-allowed", "POST is not allowed on /health"),
        ("DELETE", "/metrics", 405, "method-not-allowed", "DELETE is not allowed on /metrics"),
    ],
)
async def test_unknown_paths_and_methods_answer_problem_json(
    served: tuple[World, Metrics, httpx.AsyncClient], method: str, path: str, status: int, kind: str, detail: str
) -> None:
    _, _, client = served
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{kind}" and body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status and detail in body["detail"] and body["instance"] == path
    if status == 405:
        assert "GET" in response.headers["allow"]
