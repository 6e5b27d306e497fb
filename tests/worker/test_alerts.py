"""Final-failure alerts: always logged at ERROR, posted to a real webhook with bounded tries, never blocking."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certq.health import HealthServer
from certq.metrics import Metrics
from certq.worker.alerts import Alerter

ALERT = {
    "jobId": "c-1",
    "modelId": "m-1",
    "region": "us-east-1",
    "errorCategory": "AUTH_ERROR",
    "errorMessage": "bad key",
    "attempts": 1,
}


@dataclass
class Webhook:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    hang: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()

    async def receive(request: Request) -> Response:
        hook.received.append(await request.json())
        hook.arrived.set()
        if hook.hang:
            await asyncio.Event().wait()
        status = hook.statuses.pop(0) if hook.statuses else 200
        return JSONResponse({}, status_code=status)

    server = HealthServer(Starlette(routes=[Route("/hook", receive, methods=["POST"])]), "127.0.0.1", 0)
    await server.start()
    hook.url = f"http://127.0.0.1:{server.port}/hook"
    try:
        yield hook
    finally:
        await server.stop()


def _sent(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("certq_alerts_total", {"outcome": outcome})
    return value or 0.0


async def test_final_failure_posts_the_alert_json_and_logs_an_error(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    alerter = Alerter(webhook.url, metrics=metrics)
    with caplog.at_level(logging.ERROR, "certq.worker.alerts"):
        alerter.job_failed(ALERT)
    await alerter.close(wait_s=10)
    assert webhook.received == [ALERT]
    assert _sent(metrics, "sent") == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["job failed for good"]


async def test_server_errors_are_retried_a_bounded_number_of_times(webhook: Webhook) -> None:
    webhook.statuses = [503, 500, 200]
    metrics = Metrics(CollectorRegistry())
    alerter = Alerter(webhook.url, metrics=metrics, tries=3, retry_delay_s=0.01)
    alerter.job_failed(ALERT)
    await alerter.close(wait_s=10)
    assert len(webhook.received) == 3 and _sent(metrics, "sent") == 1

    webhook.received.clear()
    webhook.statuses = [500, 500, 500, 500]
    alerter = Alerter(webhook.url, metrics=metrics, tries=2, retry_delay_s=0.01)
    alerter.job_failed(ALERT)
    await alerter.close(wait_s=10)
    assert len(webhook.received) == 2 and _sent(metrics, "failed") == 1


async def test_a_client_error_is_not_retried(webhook: Webhook) -> None:
    webhook.statuses = [400]
    alerter = Alerter(webhook.url, tries=3, retry_delay_s=0.01)
    alerter.job_failed(ALERT)
    await alerter.close(wait_s=10)
    assert len(webhook.received) == 1


async def test_a_hanging_webhook_never_blocks_the_caller_and_close_is_bounded(webhook: Webhook) -> None:
    webhook.hang = True
    alerter = Alerter(webhook.url, timeout_s=30, tries=1)
    alerter.job_failed(ALERT)  # returns at once: the POST runs in the background
    assert alerter.pending == 1
    await asyncio.wait_for(webhook.arrived.wait(), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await alerter.close(wait_s=0.2)
    assert loop.time() - started < 5
    assert alerter.pending == 0


async def test_the_backlog_is_bounded_and_overflow_is_counted(webhook: Webhook) -> None:
    webhook.hang = True
    metrics = Metrics(CollectorRegistry())
    alerter = Alerter(webhook.url, metrics=metrics, timeout_s=30, tries=1, max_pending=2)
    for _ in range(5):
        alerter.job_failed(ALERT)
    assert alerter.pending == 2 and _sent(metrics, "dropped") == 3
    await alerter.close(wait_s=0.1)


async def test_without_a_webhook_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter(None)
    with caplog.at_level(logging.ERROR, "certq.worker.alerts"):
        alerter.job_failed(ALERT)
    assert alerter.pending == 0 and len(caplog.records) == 1
    await alerter.close()
