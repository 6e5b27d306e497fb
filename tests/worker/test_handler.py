"""The certification handler on a real Runner, real Redis and real PostgreSQL, with a scripted certifier."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from certq.certification import ModelEndpoint, Verdict
from certq.certification.capabilities import Capabilities
from certq.credentials import parse_credentials
from certq.jobs import job_payload, job_view
from certq.metrics import Metrics
from certq.queue import Queue, QueueConfig, Runner
from certq.store import Store
from certq.worker.alerts import Alerter
from certq.worker.dependencies import Database
from certq.worker.handler import CertificationHandler
from certq.worker.observer import WorkerHooks
from tests.worker.helpers import wait_finished

pytestmark = pytest.mark.timeout(30)


def verdict(
    status: str = "CERTIFIED", *, category: str | None = None, retryable: bool = False, score: int = 95
) -> Verdict:
    return Verdict(
        status=status,  # type: ignore[arg-type]
        passed=status == "CERTIFIED",
        score=score if category is None else 0,
        rating="A" if status == "CERTIFIED" else "F",
        test_results=[{"name": "hello", "passed": status == "CERTIFIED", "score": score}],
        metrics={"latencyP50Ms": 12},
        error_category=category,
        error_message=None if category is None else f"{category} happened",
        retryable=retryable,
        duration_ms=5,
        started_at="2026-01-01T00:00:00.000Z",
        finished_at="2026-01-01T00:00:00.005Z",
        suite_version="test",
        provider="openai",
        api_model_id="tiny",
        region="local",
    )


@dataclass
class Certifier:
    """Stands in for run_certification: returns the next scripted verdict (or sleeps), records endpoints."""

    verdicts: list[Verdict] = field(default_factory=list)
    sleep: float = 0.0
    endpoints: list[ModelEndpoint] = field(default_factory=list)

    async def __call__(
        self, endpoint: ModelEndpoint, on_progress: Callable[[int, int], Awaitable[None]], *, config: Any = None
    ) -> Verdict:
        self.endpoints.append(endpoint)
        await on_progress(1, 2)
        await asyncio.sleep(self.sleep)
        await on_progress(2, 2)
        return self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]


class RecordingAlerter(Alerter):
    def __init__(self, url: str | None) -> None:
        super().__init__(url)
        self.sent: list[dict[str, Any]] = []

    def job_failed(self, alert: dict[str, Any]) -> None:
        self.sent.append(alert)


TEST_CREDENTIALS = parse_credentials("CERTQ_TEST_KEY@127.0.0.1,CERTQ_TEST_UNSET_KEY@127.0.0.1")


@dataclass
class Rig:
    store: Store
    queue: Queue
    certifier: Certifier
    alerts: list[dict[str, Any]]
    make_model: Callable[..., Awaitable[Any]]
    max_attempts: int = 2

    async def submit(self, **model_fields: Any) -> str:
        model = await self.make_model(**model_fields)
        created = await self.store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
        ref = created.certifications[0]  # type: ignore[union-attr]
        await self.queue.enqueue(job_payload(ref), job_id=str(ref.id), max_attempts=self.max_attempts)
        return str(ref.id)


@pytest.fixture
async def rig(
    store: Store, redis_client: aioredis.Redis, key_prefix: str, make_model: Callable[..., Awaitable[Any]]
) -> AsyncIterator[Rig]:
    config = QueueConfig(prefix=key_prefix, backoff_base_ms=20, backoff_cap_ms=50)
    database = Database("unused", Metrics(CollectorRegistry()))
    database.store = store
    database.up.set()
    certifier = Certifier([verdict()])
    alerter = RecordingAlerter(None)
    alerts = alerter.sent
    hooks = WorkerHooks(config.name, Metrics(CollectorRegistry()), alerter)
    handler = CertificationHandler(database, certify=certifier, credentials=TEST_CREDENTIALS)
    runner = Runner(redis_client, config, handler, concurrency=2, job_timeout_ms=2_000, hooks=hooks)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    try:
        yield Rig(store, Queue(redis_client, config), certifier, alerts, make_model)
    finally:
        stop.set()
        await running


async def test_a_certified_verdict_is_stored_and_completes_the_job(rig: Rig) -> None:
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "completed" and job.result["status"] == "CERTIFIED"
    assert job.progress == {"done": 2, "total": 2}
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "CERTIFIED" and record.passed is True and record.score == 95
    parent = await rig.store.get_job(record.job_id)
    assert parent is not None and parent.success_count == 1 and parent.processed_models == 1


async def test_the_api_key_comes_from_the_variable_the_model_names(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTQ_TEST_KEY", "sk-secret-value")
    certification_id = await rig.submit(api_key_env="CERTQ_TEST_KEY")
    [job] = await wait_finished(rig.queue, [certification_id])
    assert rig.certifier.endpoints[0].api_key == "sk-secret-value"
    assert "sk-secret-value" not in repr(job_view(job))
    assert "sk-secret-value" not in repr(rig.certifier.endpoints[0])


async def test_the_engine_gets_the_capabilities_the_model_declares(rig: Rig) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    declared = {"tools": True, "structuredOutput": schema, "contextWindow": 8192, "tokenAccounting": False}
    first = await rig.submit(capabilities=declared)
    await wait_finished(rig.queue, [first])
    second = await rig.submit()
    await wait_finished(rig.queue, [second])
    probed, plain = (endpoint.capabilities for endpoint in rig.certifier.endpoints)
    assert probed == Capabilities(
        tools=True, structured_output=True, context_window=8192, token_accounting=False, output_schema=schema
    )
    assert probed.declared() == ("tools", "structuredOutput", "contextWindow")
    assert plain == Capabilities() and plain.declared() == ("tokenAccounting",)


async def test_a_missing_key_variable_fails_for_good_naming_it_without_running(rig: Rig) -> None:
    certification_id = await rig.submit(api_key_env="CERTQ_TEST_UNSET_KEY")
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "failed" and job.error_category == "CONFIG_ERROR" and job.attempts == 1
    assert "CERTQ_TEST_UNSET_KEY" in (job.last_error or "")
    assert rig.certifier.endpoints == []
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "CONFIG_ERROR"
    assert [alert["errorCategory"] for alert in rig.alerts] == ["CONFIG_ERROR"]


async def test_a_retryable_verdict_is_retried_then_failed_once_with_its_category(rig: Rig) -> None:
    rig.certifier.verdicts = [verdict("FAILED", category="CONNECTION_ERROR", retryable=True)]
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "failed" and job.attempts == 2 and job.error_category == "CONNECTION_ERROR"
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "CONNECTION_ERROR"
    parent = await rig.store.get_job(record.job_id)
    assert parent is not None and parent.failure_count == 1 and parent.processed_models == 1
    assert len(rig.alerts) == 1


async def test_a_retryable_failure_that_passes_later_ends_certified(rig: Rig) -> None:
    rig.certifier.verdicts = [verdict("FAILED", category="RATE_LIMITED", retryable=True), verdict()]
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "completed" and job.attempts == 2
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "CERTIFIED"
    parent = await rig.store.get_job(record.job_id)
    assert parent is not None and (parent.success_count, parent.failure_count) == (1, 0)


async def test_a_final_error_fails_the_job_at_once(rig: Rig) -> None:
    rig.certifier.verdicts = [verdict("FAILED", category="AUTH_ERROR")]
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "failed" and job.attempts == 1 and job.error_category == "AUTH_ERROR"
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "AUTH_ERROR"


async def test_a_verdict_postgresql_refuses_fails_the_run_instead_of_leaving_it_processing(rig: Rig) -> None:
    refused = dataclasses.replace(verdict(), duration_ms=2**40)  # over the integer column's range
    rig.certifier.verdicts = [refused]
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "failed" and job.attempts == 1 and job.error_category == "INTERNAL_ERROR"
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "INTERNAL_ERROR"
    assert record.error_message is not None and "the verdict could not be stored" in record.error_message


async def test_a_model_that_answers_badly_is_a_verdict_not_a_failed_job(rig: Rig) -> None:
    rig.certifier.verdicts = [verdict("FAILED", category="QUALITY_BELOW_THRESHOLD")]
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "completed" and rig.alerts == []
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "QUALITY_BELOW_THRESHOLD"


async def test_a_cancelled_certification_is_skipped(rig: Rig) -> None:
    model = await rig.make_model()
    created = await rig.store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    ref = created.certifications[0]  # type: ignore[union-attr]
    assert await rig.store.mark_cancelled(ref.id)
    await rig.queue.enqueue(job_payload(ref), job_id=str(ref.id))
    [job] = await wait_finished(rig.queue, [str(ref.id)])
    assert job.result == {"certificationId": str(ref.id), "skipped": True}
    assert rig.certifier.endpoints == []


async def test_a_timed_out_run_is_recorded_as_timeout(rig: Rig) -> None:
    rig.certifier.sleep = 30
    rig.max_attempts = 1
    certification_id = await rig.submit()
    [job] = await wait_finished(rig.queue, [certification_id])
    assert job.state.value == "failed" and job.error_category == "TIMEOUT"
    record = await rig.store.get_certification(certification_id)
    assert record is not None and record.status == "FAILED" and record.error_category == "TIMEOUT"


SOME_UUID = "0b0e7f7e-8c1a-4d7e-9d44-1f6a2b3c4d5e"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"certificationId": "not-a-uuid", "modelId": "m", "region": "local"}, "'certificationId' must be a UUID"),
        ({"certificationId": SOME_UUID, "jobId": SOME_UUID, "modelId": SOME_UUID}, "'region' is missing"),
    ],
)
async def test_a_payload_that_is_not_a_certification_job_fails_for_good_naming_the_field(
    rig: Rig, payload: dict[str, Any], reason: str
) -> None:
    job = await rig.queue.enqueue(payload)
    [failed] = await wait_finished(rig.queue, [job.id])
    assert failed.state.value == "failed" and failed.attempts == 1 and failed.error_category == "CONFIG_ERROR"
    assert reason in (failed.last_error or "")
    assert rig.certifier.endpoints == []


async def test_a_job_for_a_certification_that_does_not_exist_fails_naming_it(rig: Rig) -> None:
    missing = SOME_UUID
    model = await rig.make_model()
    await rig.queue.enqueue(
        {"certificationId": missing, "jobId": missing, "modelId": str(model.id), "region": "local"}, job_id=missing
    )
    [job] = await wait_finished(rig.queue, [missing])
    assert job.state.value == "failed" and job.attempts == 1 and job.error_category == "CONFIG_ERROR"
    assert f"no certification {missing} in PostgreSQL" in (job.last_error or "")
    assert rig.certifier.endpoints == []


async def test_a_payload_naming_another_model_or_region_is_corrupt_and_certifies_nothing(rig: Rig) -> None:
    model = await rig.make_model(regions=["local", "elsewhere"])
    other = await rig.make_model()
    created = await rig.store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    ref = created.certifications[0]  # type: ignore[union-attr]
    wrong_model = {**job_payload(ref), "modelId": str(other.id)}
    wrong_region = {**job_payload(ref), "region": "elsewhere"}
    first = await rig.queue.enqueue(wrong_model)
    second = await rig.queue.enqueue(wrong_region)
    jobs = await wait_finished(rig.queue, [first.id, second.id])
    for job in jobs:
        assert job.state.value == "failed" and job.attempts == 1 and job.error_category == "CONFIG_ERROR"
        assert "corrupt job" in (job.last_error or "")
    assert rig.certifier.endpoints == []
    record = await rig.store.get_certification(ref.id)
    assert record is not None and record.status == "QUEUED"
