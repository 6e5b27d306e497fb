"""Drift: a pair that degrades, recovers or expires is recorded once and sent to a real webhook."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certq.drift import transition
from certq.health import HealthServer
from certq.jobs import job_payload
from certq.queue import Queue
from certq.store import Store
from tests.certification.stubs import OpenAIHandler, serve
from tests.worker.helpers import SpawnWorker, wait_finished

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (("CERTIFIED", 95), ("QUALITY_WARNING", 75), "degraded"),
        (("CERTIFIED", 95), ("FAILED", 0), "degraded"),
        (("QUALITY_WARNING", 70), ("FAILED", 40), "degraded"),
        (("FAILED", 0), ("CERTIFIED", 90), "recovered"),
        (("CERTIFIED", 99), ("CERTIFIED", 85), "degraded"),
        (("CERTIFIED", 95), ("CERTIFIED", 90), None),
        ((None, None), ("CERTIFIED", 90), None),
        (("CERTIFIED", 90), ("CERTIFIED", 92), None),
    ],
)
def test_the_drift_rule(before: tuple[Any, Any], after: tuple[str, int], kind: str | None) -> None:
    assert transition(*before, *after, margin=10) == kind


def test_certified_again_after_an_expiry_is_a_recovery() -> None:
    assert transition("CERTIFIED", 90, "CERTIFIED", 90, margin=10, previous_expired=True) == "recovered"
    assert transition("FAILED", 0, "FAILED", 0, margin=10, previous_expired=True) is None


async def _verdict(store: Store, model_id: Any, status: str, score: float) -> Any:
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model_id, "local")])
    run = created.certifications[0]  # type: ignore[union-attr]
    assert await store.begin_attempt(run.id, 1)
    verdict = {"status": status, "passed": status == "CERTIFIED", "score": score, "rating": "A", "durationMs": 1}
    assert await store.finish_certification(run.id, 1, verdict)
    return run.id


async def test_an_event_is_recorded_once_whoever_asks_and_an_expiry_once_per_verdict(
    store: Store, make_model: Callable[..., Awaitable[Any]]
) -> None:
    model = await make_model()
    first = await _verdict(store, model.id, "CERTIFIED", 95)
    assert await store.record_drift(first) is None  # a first verdict is no change
    second = await _verdict(store, model.id, "FAILED", 0)
    events = await asyncio.gather(*(store.record_drift(second) for _ in range(4)))
    [event] = [e for e in events if e is not None]
    assert (event.kind, event.previous_status, event.status) == ("degraded", "CERTIFIED", "FAILED")
    assert event.to_json()["event"] == "certification.degraded" and event.to_json()["modelName"] == model.name
    await store.pool.execute("UPDATE certifications SET valid_until = now() - interval '1 s' WHERE id = $1", second)
    expired = [e for e in await store.record_expiries() if e.model_id == model.id]
    assert [(e.kind, e.previous_status) for e in expired] == [("expired", "FAILED")]
    assert [e for e in await store.record_expiries() if e.model_id == model.id] == []


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def receive(request: Request) -> Response:
        received.append(await request.json())
        return JSONResponse({})

    server = HealthServer(Starlette(routes=[Route("/hook", receive, methods=["POST"])]), "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/hook", received
    finally:
        await server.stop()


@pytest.mark.slow
async def test_a_worker_sends_degraded_then_recovered_to_the_webhook(
    spawn_worker: SpawnWorker,
    queue: Queue,
    store: Store,
    make_model: Callable[..., Awaitable[Any]],
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    worker = spawn_worker("--concurrency", "1", handler=None, env={"ALERT_WEBHOOK_URL": url})
    await worker.started()
    with serve(OpenAIHandler) as (root, stub):
        model = await make_model(base_url=f"{root}/v1")
        for behaviour in ("ok", "mediocre", "ok"):
            stub.behaviour = behaviour
            created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
            ref = created.certifications[0]  # type: ignore[union-attr]
            await queue.enqueue(job_payload(ref), job_id=str(ref.id), max_attempts=1, group="local")
            await wait_finished(queue, [str(ref.id)], within=60)
        await worker.wait_log("certification recovered")
    for _ in range(100):
        if len(received) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [(e["event"], e["previous"]["status"], e["current"]["status"]) for e in received] == [
        ("certification.degraded", "CERTIFIED", "QUALITY_WARNING"),
        ("certification.recovered", "QUALITY_WARNING", "CERTIFIED"),
    ]
    assert all(e["modelId"] == str(model.id) and e["region"] == "local" for e in received)
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert uuid.UUID(received[0]["current"]["certificationId"])
