"""The real daemon with its real certification handler: a loopback OpenAI-compatible model, PostgreSQL verdicts."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from certq.jobs import job_payload
from certq.queue import Queue
from certq.store import Store
from tests.certification.stubs import OpenAIHandler, serve
from tests.worker.helpers import SpawnWorker, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SECRET = "sk-e2e-secret-never-logged"


async def _submit(
    store: Store, queue: Queue, make_model: Callable[..., Awaitable[Any]], root: str, key_env: str = "CERTQ_E2E_KEY"
) -> str:
    model = await make_model(base_url=f"{root}/v1", api_key_env=key_env)
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    ref = created.certifications[0]  # type: ignore[union-attr]
    await queue.enqueue(job_payload(ref), job_id=str(ref.id), max_attempts=2, group="local")
    return str(ref.id)


async def test_a_healthy_model_is_certified_by_a_worker_process(
    spawn_worker: SpawnWorker, queue: Queue, store: Store, make_model: Callable[..., Awaitable[Any]]
) -> None:
    worker = spawn_worker(
        "--concurrency",
        "2",
        handler=None,
        env={"CERTQ_E2E_KEY": SECRET, "MODEL_CREDENTIALS": "CERTQ_E2E_KEY@127.0.0.1"},
    )
    await worker.started()
    with serve(OpenAIHandler) as (root, stub):
        certification_id = await _submit(store, queue, make_model, root)
        [job] = await wait_finished(queue, [certification_id], within=60)
    assert job.state.value == "completed", job.last_error
    assert job.result["status"] == "CERTIFIED" and job.progress["done"] == job.progress["total"]
    record = await store.get_certification(certification_id)
    assert record is not None and record.status == "CERTIFIED" and record.passed and record.rating in ("A", "B")
    assert record.test_results and record.attempts == 1
    parent = await store.get_job(record.job_id)
    assert parent is not None and parent.status == "COMPLETED" and parent.success_count == 1
    assert all(request.headers.get("Authorization") == f"Bearer {SECRET}" for request in stub.requests)
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert SECRET not in "".join(worker.raw)


async def test_a_rejected_key_fails_for_good_with_an_error_line_and_no_retry(
    spawn_worker: SpawnWorker, queue: Queue, store: Store, make_model: Callable[..., Awaitable[Any]]
) -> None:
    worker = spawn_worker(
        "--concurrency",
        "1",
        handler=None,
        env={"CERTQ_E2E_KEY": SECRET, "MODEL_CREDENTIALS": "CERTQ_E2E_KEY@127.0.0.1"},
    )
    await worker.started()
    with serve(OpenAIHandler, "401") as (root, _):
        certification_id = await _submit(store, queue, make_model, root)
        [job] = await wait_finished(queue, [certification_id], within=60)
    assert job.state.value == "failed" and job.error_category == "AUTH_ERROR" and job.attempts == 1
    record = await store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "AUTH_ERROR"
    alert = await worker.wait_log("job failed for good")
    assert alert["level"] == "error" and alert["alert"]["errorCategory"] == "AUTH_ERROR"
    assert alert["alert"]["certificationId"] == certification_id
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert SECRET not in "".join(worker.raw)


@pytest.mark.parametrize(
    ("key_env", "stub_host"),
    [
        ("CERTQ_E2E_KEY", "127.0.0.2"),  # a declared credential, a host outside its scope
        ("DATABASE_URL", "127.0.0.1"),  # a worker secret that is not a declared credential
    ],
)
async def test_no_credential_reaches_a_host_outside_its_scope(
    spawn_worker: SpawnWorker,
    queue: Queue,
    store: Store,
    make_model: Callable[..., Awaitable[Any]],
    key_env: str,
    stub_host: str,
) -> None:
    worker = spawn_worker(
        "--concurrency",
        "1",
        handler=None,
        env={"CERTQ_E2E_KEY": SECRET, "MODEL_CREDENTIALS": "CERTQ_E2E_KEY@127.0.0.1"},
    )
    await worker.started()
    with serve(OpenAIHandler, host=stub_host) as (root, stub):
        certification_id = await _submit(store, queue, make_model, root, key_env=key_env)
        [job] = await wait_finished(queue, [certification_id], within=60)
    assert job.state.value == "failed" and job.error_category == "CONFIG_ERROR" and job.attempts == 1
    assert key_env in (job.last_error or "") and "MODEL_CREDENTIALS" in (job.last_error or "")
    assert stub.requests == []  # nothing at all was sent, so no secret was either
    record = await store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "CONFIG_ERROR"
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert SECRET not in "".join(worker.raw)


async def test_an_endpoint_serving_another_model_ends_model_mismatch_until_its_served_name_is_declared(
    spawn_worker: SpawnWorker, queue: Queue, store: Store, make_model: Callable[..., Awaitable[Any]]
) -> None:
    worker = spawn_worker("--concurrency", "1", handler=None, env={"CERTIFICATION_VALIDITY": "2h"})
    await worker.started()
    with serve(OpenAIHandler, "wrong-model") as (root, _):
        model = await make_model(base_url=f"{root}/v1")
        outcomes = []
        for served in (None, "some-other-model"):
            if served is not None:
                await store.update_model(model.id, {"served_model": served})
            created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
            ref = created.certifications[0]  # type: ignore[union-attr]
            await queue.enqueue(job_payload(ref), job_id=str(ref.id), max_attempts=2, group="local")
            [job] = await wait_finished(queue, [str(ref.id)], within=60)
            outcomes.append((job, await store.get_certification(ref.id)))
    (mismatch_job, mismatch), (_, certified) = outcomes
    assert mismatch is not None and mismatch.status == "FAILED" and mismatch.error_category == "MODEL_MISMATCH"
    assert mismatch_job.attempts == 1  # final: not retried
    assert "'some-other-model'" in (mismatch.error_message or "")
    assert certified is not None and certified.status == "CERTIFIED", certified
    assert certified.valid_until is not None and certified.completed_at is not None
    assert (certified.valid_until - certified.completed_at).total_seconds() == 7200
    assert certified.attempt_log[-1]["durationMs"] >= 0
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
