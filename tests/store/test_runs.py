"""The worker's writes: fenced by attempt, safe to repeat, counted once per final outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from certq.store import CertificationRef, JobCreated, Store

MakeModel = Callable[..., Awaitable[Any]]

CERTIFIED = {
    "status": "CERTIFIED",
    "passed": True,
    "score": 96.0,
    "rating": "A",
    "durationMs": 1200,
    "testResults": [{"name": "basic", "passed": True, "score": 100, "latencyMs": 12, "detail": ""}],
    "metrics": {"latencyP50Ms": 10},
}
WARNING = {
    "status": "QUALITY_WARNING",
    "passed": False,
    "score": 70.0,
    "rating": "C",
    "testResults": [],
    "metrics": {},
    "errorCategory": "QUALITY_BELOW_THRESHOLD",
    "errorMessage": "2 probes failed",
}


async def _job(store: Store, make_model: MakeModel, regions: list[str]) -> tuple[Any, list[CertificationRef]]:
    model = await make_model(regions=regions)
    created = await store.create_job(type="MULTIPLE_MODELS", pairs=[(model.id, r) for r in regions])
    assert isinstance(created, JobCreated) and created.job is not None
    return created.job, created.certifications


async def test_begin_attempt_is_repeatable_and_rejects_older_attempts(store: Store, make_model: MakeModel) -> None:
    job, [run] = await _job(store, make_model, ["local"])
    assert await store.begin_attempt(run.id, 1)
    assert await store.begin_attempt(run.id, 1)
    assert not await store.begin_attempt(run.id, 0)
    record = await store.get_certification(run.id)
    assert record is not None and record.status == "PROCESSING" and record.attempts == 1
    parent = await store.get_job(job.id)
    assert parent is not None and parent.status == "PROCESSING" and parent.started_at is not None


async def test_parent_started_at_is_set_by_the_first_child_only(store: Store, make_model: MakeModel) -> None:
    job, [first, second] = await _job(store, make_model, ["a", "b"])
    await store.begin_attempt(first.id, 1)
    started = (await store.get_job(job.id)).started_at  # type: ignore[union-attr]
    await store.begin_attempt(second.id, 1)
    assert (await store.get_job(job.id)).started_at == started  # type: ignore[union-attr]


async def test_stale_attempt_cannot_overwrite_a_newer_result(store: Store, make_model: MakeModel) -> None:
    _, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 1)
    await store.begin_attempt(run.id, 2)  # attempt 1's worker stalled; the queue handed the job out again
    assert await store.finish_certification(run.id, 2, CERTIFIED)
    assert not await store.finish_certification(run.id, 1, {**CERTIFIED, "status": "FAILED", "passed": False})
    assert not await store.record_attempt_failure(run.id, 1, "TIMEOUT", "late", final=True)
    record = await store.get_certification(run.id)
    assert record is not None and record.status == "CERTIFIED" and record.score == 96.0
    assert [entry["outcome"] for entry in record.attempt_log] == ["LOST", "CERTIFIED"]


async def test_retries_then_success_count_once_and_progress_stays_within_total(
    store: Store, make_model: MakeModel
) -> None:
    job, [run, other] = await _job(store, make_model, ["a", "b"])
    for attempt in (1, 2, 3):
        assert await store.begin_attempt(run.id, attempt)
        assert await store.record_attempt_failure(run.id, attempt, "RATE_LIMITED", "429", final=False)
        assert await store.record_attempt_failure(run.id, attempt, "RATE_LIMITED", "429", final=False)
    assert await store.begin_attempt(run.id, 4)
    assert await store.finish_certification(run.id, 4, CERTIFIED)
    assert await store.finish_certification(run.id, 4, CERTIFIED)  # a repeat after a crash is a no-op
    parent = await store.get_job(job.id)
    assert parent is not None
    assert (parent.processed_models, parent.success_count, parent.failure_count) == (1, 0 + 1, 0)
    assert parent.status == "PROCESSING" and parent.progress == 50.0
    record = await store.get_certification(run.id)
    assert record is not None and record.attempts == 4 and record.error_category is None


async def test_last_outcome_completes_the_job_and_warnings_are_not_failures(
    store: Store, make_model: MakeModel
) -> None:
    job, [first, second] = await _job(store, make_model, ["a", "b"])
    await store.begin_attempt(first.id, 1)
    await store.finish_certification(first.id, 1, WARNING)
    await store.begin_attempt(second.id, 1)
    assert await store.record_attempt_failure(second.id, 1, "AUTH_ERROR", "401", final=True)
    assert await store.record_attempt_failure(second.id, 1, "AUTH_ERROR", "401", final=True)
    parent = await store.get_job(job.id)
    assert parent is not None and parent.status == "COMPLETED" and parent.completed_at is not None
    assert (parent.processed_models, parent.warning_count, parent.failure_count, parent.progress) == (2, 1, 1, 100.0)


async def test_job_whose_every_run_failed_ends_failed(store: Store, make_model: MakeModel) -> None:
    job, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 1)
    await store.record_attempt_failure(run.id, 1, "NOT_A_CATEGORY", "boom", final=True)
    parent = await store.get_job(job.id)
    record = await store.get_certification(run.id)
    assert parent is not None and parent.status == "FAILED"
    assert record is not None and record.error_category == "INTERNAL_ERROR" and record.passed is False


async def test_concurrent_duplicate_finishes_count_once(store: Store, make_model: MakeModel) -> None:
    job, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 1)
    results = await asyncio.gather(*(store.finish_certification(run.id, 1, CERTIFIED) for _ in range(8)))
    assert all(results)
    parent = await store.get_job(job.id)
    assert parent is not None and (parent.processed_models, parent.success_count) == (1, 1)


async def test_cancelled_run_refuses_new_attempts_and_results(store: Store, make_model: MakeModel) -> None:
    job, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 1)
    assert await store.mark_cancelled(run.id)
    assert not await store.mark_cancelled(run.id)
    assert not await store.finish_certification(run.id, 1, CERTIFIED)
    assert not await store.begin_attempt(run.id, 2)
    parent = await store.get_job(job.id)
    assert parent is not None and parent.status == "CANCELLED" and parent.cancelled_count == 1


async def test_requeue_starts_a_new_generation_that_fences_out_the_old_worker(
    store: Store, make_model: MakeModel
) -> None:
    _, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 2)
    ref = await store.requeue_certification(run.id)
    assert ref is not None and ref.status == "QUEUED"
    assert not await store.finish_certification(run.id, 2, CERTIFIED)
    assert await store.begin_attempt(run.id, 1)
    assert await store.finish_certification(run.id, 1, CERTIFIED)
    record = await store.get_certification(run.id)
    assert record is not None and record.generation == 2
    assert [(e["generation"], e["outcome"]) for e in record.attempt_log] == [(1, "LOST"), (2, "CERTIFIED")]
    assert await store.requeue_certification(run.id) is None


async def test_unfinished_certifications_lists_only_live_runs(store: Store, make_model: MakeModel) -> None:
    _, [live, done] = await _job(store, make_model, ["a", "b"])
    await store.begin_attempt(done.id, 1)
    await store.finish_certification(done.id, 1, CERTIFIED)
    ids = {ref.id for ref in await store.unfinished_certifications(older_than_s=0)}
    assert live.id in ids and done.id not in ids
    assert live.id not in {ref.id for ref in await store.unfinished_certifications(older_than_s=3600)}


async def test_latest_verdict_is_the_newest_finished_run(store: Store, make_model: MakeModel) -> None:
    model = await make_model(regions=["local"])
    for verdict in (CERTIFIED, WARNING):
        created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
        assert isinstance(created, JobCreated)
        [run] = created.certifications
        await store.begin_attempt(run.id, 1)
        await store.finish_certification(run.id, 1, verdict)
    [latest] = await store.latest_verdicts(model.id)
    assert latest.status == "QUALITY_WARNING" and latest.model_name == model.name


async def test_nul_characters_from_a_model_answer_are_stored_replaced(store: Store, make_model: MakeModel) -> None:
    _, [run] = await _job(store, make_model, ["local"])
    await store.begin_attempt(run.id, 1)
    verdict = {
        **CERTIFIED,
        "testResults": [{"name": "basic", "detail": "said a\x00b"}],
        "metrics": {"sample\x00": "x\x00"},
        "errorMessage": "nul\x00here",
    }
    assert await store.finish_certification(run.id, 1, verdict)
    record = await store.get_certification(run.id)
    assert record is not None and record.test_results == [{"name": "basic", "detail": "said a\ufffdb"}]
    assert record.metrics == {"sample\ufffd": "x\ufffd"} and record.error_message == "nul\ufffdhere"


async def test_a_verdict_keeps_its_capability_findings_and_one_without_them_keeps_none(
    store: Store, make_model: MakeModel
) -> None:
    _, [probed, plain, in_metrics] = await _job(store, make_model, ["a", "b", "c"])
    found = {"verified": ["tools"], "failed": ["contextWindow"], "notDeclared": ["structuredOutput"]}
    for run in (probed, plain, in_metrics):
        assert await store.begin_attempt(run.id, 1)
    assert await store.finish_certification(probed.id, 1, {**CERTIFIED, "capabilities": found})
    assert await store.finish_certification(plain.id, 1, CERTIFIED)
    metrics = {**CERTIFIED["metrics"], "capabilities": {"verified": [], "failed": ["tools\x00"]}}  # type: ignore[dict-item]
    assert await store.finish_certification(in_metrics.id, 1, {**CERTIFIED, "metrics": metrics})
    records = {r.id: await store.get_certification(r.id) for r in (probed, plain, in_metrics)}
    assert records[probed.id].capabilities == found  # type: ignore[union-attr]
    assert records[plain.id].capabilities is None  # type: ignore[union-attr]
    assert records[in_metrics.id].capabilities == {"verified": [], "failed": ["tools\ufffd"]}  # type: ignore[union-attr]
    latest = await store.pool.fetchval("SELECT capabilities FROM latest_certifications WHERE id = $1", probed.id)
    assert latest == found
