"""run_certification against a loopback OpenAI-compatible stub: the happy path and the whole error matrix."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from certq.certification import ErrorCategory, ModelEndpoint, RunConfig, run_certification
from certq.certification.openai_compat import OpenAICompatProvider
from tests.certification.conftest import SleepLog
from tests.certification.stubs import OpenAIHandler, serve

API_KEY = "sk-test-abcdef0123456789"


def endpoint(root: str, path: str = "/v1", key: str | None = API_KEY) -> ModelEndpoint:
    return ModelEndpoint(provider="openai", api_model_id="gpt-x", region="local", base_url=root + path, api_key=key)


async def test_a_healthy_endpoint_is_certified_with_metrics_and_progress(fast_config: RunConfig) -> None:
    progress: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:
        progress.append((done, total))

    with serve(OpenAIHandler) as (root, stub):
        verdict = await run_certification(endpoint(root), on_progress, config=fast_config)
    body = verdict.to_json()
    assert body["status"] == "CERTIFIED" and body["passed"] is True, body
    assert body["score"] >= 95 and body["rating"] == "A"
    assert body["errorCategory"] is None and body["retryable"] is False
    assert [p["name"] for p in body["testResults"]] == [
        "connectivity",
        "response_contract",
        "streaming",
        "deterministic_qa",
        "json_output",
        "system_and_multiturn",
        "generation_controls",
        "performance",
        "robustness",
        "capability_token_accounting",  # declared by default (capabilities.py)
    ]
    assert all(p["passed"] for p in body["testResults"]), body["testResults"]
    assert body["capabilities"] == {
        "verified": ["tokenAccounting"],
        "failed": [],
        "notDeclared": ["tools", "structuredOutput", "contextWindow"],
    }
    assert progress == [(n, 10) for n in range(1, 11)]
    metrics = body["metrics"]
    assert metrics["requests"] == len(stub.requests) == 20 + 3
    assert sum(p["requests"] for p in body["testResults"]) == metrics["requests"]  # the invalid one counted too
    assert metrics["httpStatusCounts"] == {"200": 22, "400": 1}
    # The capability probe's three answers count in tokens, not in the latency or stream samples.
    assert metrics["latencyMs"]["n"] == 17 and metrics["latencyMs"]["p95"] >= metrics["latencyMs"]["p50"] > 0
    assert metrics["ttftMs"]["n"] == 2 and metrics["outputTokensPerSecond"]["method"] == "usage"
    assert metrics["stream"]["usageInStream"] == 2 and metrics["tokens"]["total"] > 0
    assert stub.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in orjson.dumps(body).decode()
    # Performance prompts carry unique nonces so caches cannot flatter latency.
    perf = [
        r.body["messages"][-1]["content"] for r in stub.requests if "Request id" in r.body["messages"][-1]["content"]
    ]
    assert len(perf) == len(set(perf)) >= 5


async def test_a_mediocre_endpoint_gets_a_quality_warning_not_an_infrastructure_error(
    fast_config: RunConfig,
) -> None:
    with serve(OpenAIHandler, "mediocre") as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    results = {p["name"]: p for p in verdict.test_results}
    assert verdict.status == "QUALITY_WARNING" and not verdict.passed, verdict.error_message
    assert verdict.error_category == "QUALITY_BELOW_THRESHOLD" and not verdict.retryable
    assert (verdict.score, verdict.rating) == (78, "C")  # 100 - 5 (1 of 3 wrong) - 10 - 7.5 (1 of 4 checks)
    assert results["deterministic_qa"]["passed"] and results["deterministic_qa"]["score"] == 67
    assert not results["system_and_multiturn"]["passed"] and not results["generation_controls"]["passed"]
    assert "failed: deterministic_qa" not in (verdict.error_message or "")
    assert verdict.metrics["errorCounts"] == {}


# behaviour -> (category, retryable, requests the stub should see)
RETRIED = 1 + RunConfig().max_retries  # the first try and every in-run retry
MATRIX = {
    "401": (ErrorCategory.AUTH_ERROR, False, 1),
    "401-fastapi": (ErrorCategory.AUTH_ERROR, False, 1),
    "403": (ErrorCategory.PERMISSION_DENIED, False, 1),
    "403-plain": (ErrorCategory.PERMISSION_DENIED, False, 1),
    "404-model": (ErrorCategory.MODEL_NOT_FOUND, False, 1),
    "404-model-vllm": (ErrorCategory.MODEL_NOT_FOUND, False, 1),
    "404-model-ollama": (ErrorCategory.MODEL_NOT_FOUND, False, 1),
    "quota": (ErrorCategory.QUOTA_EXCEEDED, False, 1),
    "402": (ErrorCategory.QUOTA_EXCEEDED, False, 1),
    "400-context": (ErrorCategory.INVALID_REQUEST, False, 1),
    "429": (ErrorCategory.RATE_LIMITED, True, RETRIED),
    "429-bare": (ErrorCategory.RATE_LIMITED, True, RETRIED),
    "500": (ErrorCategory.SERVER_ERROR, True, RETRIED),
    "502": (ErrorCategory.SERVER_ERROR, True, RETRIED),
    "503": (ErrorCategory.MODEL_UNAVAILABLE, True, RETRIED),
    "503-loading": (ErrorCategory.MODEL_UNAVAILABLE, True, RETRIED),
    "529": (ErrorCategory.MODEL_UNAVAILABLE, True, RETRIED),
    "504": (ErrorCategory.TIMEOUT, True, RETRIED),
    "hang": (ErrorCategory.TIMEOUT, True, RETRIED),
    "non-json": (ErrorCategory.PROTOCOL_ERROR, False, 1),
    "no-choices": (ErrorCategory.PROTOCOL_ERROR, False, 1),
    "filtered": (ErrorCategory.CONTENT_FILTERED, False, 1),
}


@pytest.mark.parametrize("behaviour", sorted(MATRIX))
async def test_error_matrix_ends_the_run_with_its_category(behaviour: str, sleeps: SleepLog) -> None:
    category, retryable, requests = MATRIX[behaviour]
    config = RunConfig(read_timeout_s=0.3, stream_idle_timeout_s=0.3, request_deadline_s=2.0, sleep=sleeps)
    with serve(OpenAIHandler, behaviour) as (root, stub):
        verdict = await run_certification(endpoint(root), config=config)
    assert (verdict.error_category, verdict.retryable) == (category.value, retryable), verdict.error_message
    assert verdict.status == "FAILED" and not verdict.passed and verdict.score == 0 and verdict.rating == "F"
    assert len(stub.requests) == requests
    assert len(sleeps.delays) == requests - 1
    results = {p["name"]: p for p in verdict.test_results}
    assert results["connectivity"]["outcome"] == "error"
    assert results["connectivity"]["errorCategory"] == category.value
    # Nothing was scored as a wrong answer: the other probes did not run.
    assert all(p["outcome"] == "skipped" and p["score"] is None for n, p in results.items() if n != "connectivity")
    assert verdict.metrics["retries"] == requests - 1
    assert API_KEY not in orjson.dumps(verdict.to_json()).decode()


async def test_404_on_a_wrong_base_path_is_a_config_error(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler) as (root, _):
        verdict = await run_certification(endpoint(root, path=""), config=fast_config)
    assert verdict.error_category == "CONFIG_ERROR" and not verdict.retryable


async def test_retry_after_is_honoured_then_the_job_is_left_to_the_queue(
    sleeps: SleepLog, fast_config: RunConfig
) -> None:
    with serve(OpenAIHandler, "429") as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert sleeps.delays == [2.0] * (RETRIED - 1)
    assert verdict.error_category == "RATE_LIMITED" and verdict.retryable
    assert verdict.to_json()["retryAfterMs"] == 2000


async def test_retry_after_ms_wins_over_retry_after(sleeps: SleepLog, fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "429-ms") as (root, _):
        await run_certification(endpoint(root), config=fast_config)
    assert sleeps.delays == [0.25] * (RETRIED - 1)


async def test_without_retry_after_the_backoff_grows(sleeps: SleepLog, fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "429-bare") as (root, _):
        await run_certification(endpoint(root), config=fast_config)
    first, second, *_ = sleeps.delays
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


async def test_a_retry_after_longer_than_the_run_waits_goes_straight_to_the_queue(
    sleeps: SleepLog, fast_config: RunConfig
) -> None:
    with serve(OpenAIHandler, "429-long") as (root, stub):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert sleeps.delays == [] and len(stub.requests) == 1
    assert verdict.error_category == "RATE_LIMITED" and verdict.retryable
    assert verdict.retry_after_s == 3600.0


async def test_transient_errors_are_retried_and_the_run_still_certifies(
    sleeps: SleepLog, fast_config: RunConfig
) -> None:
    with serve(OpenAIHandler, "503", failures=2) as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.status == "CERTIFIED", verdict.error_message
    assert verdict.metrics["errorCounts"] == {"MODEL_UNAVAILABLE": 2}, verdict.metrics
    assert verdict.metrics["retries"] == 2
    assert verdict.metrics["httpStatusCounts"]["503"] == 2
    assert verdict.test_results[0]["requests"] == 3


@pytest.mark.parametrize(
    ("behaviour", "category"),
    [
        ("broken-sse", "PROTOCOL_ERROR"),
        ("sse-no-end", "PROTOCOL_ERROR"),
        ("sse-error", "SERVER_ERROR"),
        ("sse-reset", "CONNECTION_ERROR"),
        ("sse-stall", "TIMEOUT"),
        ("sse-done-no-finish", "PROTOCOL_ERROR"),
    ],
)
async def test_broken_streams_fail_the_run_not_the_answers(behaviour: str, category: str, sleeps: SleepLog) -> None:
    config = RunConfig(stream_idle_timeout_s=0.3, sleep=sleeps)
    with serve(OpenAIHandler, behaviour) as (root, _):
        verdict = await run_certification(endpoint(root), config=config)
    results = {p["name"]: p for p in verdict.test_results}
    assert verdict.error_category == category, verdict.error_message
    assert results["connectivity"]["outcome"] == "scored" and results["connectivity"]["passed"]
    assert results["streaming"]["outcome"] == "error"
    assert verdict.score == 0 and verdict.status == "FAILED"


async def test_a_rejected_stream_options_is_dropped_once(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "stream-options-400") as (root, stub):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.status == "CERTIFIED", verdict.error_message
    assert verdict.metrics["compatibilityFallbacks"] == ["no_stream_options"]
    assert verdict.metrics["outputTokensPerSecond"]["method"] == "chunk_count"
    assert sum(1 for r in stub.requests if "stream_options" in r.body) == 1


async def test_a_key_echoed_by_the_server_is_masked(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "echo-key") as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    text = orjson.dumps(verdict.to_json()).decode()
    assert verdict.error_category == "AUTH_ERROR"
    assert API_KEY not in text and "***" in text


async def test_connection_refused_is_a_retryable_connection_error(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler) as (root, _):
        pass  # the port is closed again
    verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.error_category == "CONNECTION_ERROR" and verdict.retryable


@pytest.mark.parametrize("base_url", ["not a url", "ftp://host/v1", ""])
async def test_a_bad_base_url_is_a_config_error(base_url: str, fast_config: RunConfig) -> None:
    verdict = await run_certification(ModelEndpoint("openai", "m", "local", base_url), config=fast_config)
    assert verdict.error_category == "CONFIG_ERROR" and not verdict.retryable


async def test_cancelling_a_run_leaves_nothing_running_and_closes_the_client(
    monkeypatch: pytest.MonkeyPatch, fast_config: RunConfig
) -> None:
    closed: list[bool] = []
    original = OpenAICompatProvider.aclose

    async def recording_close(self: OpenAICompatProvider) -> None:
        await original(self)
        closed.append(True)

    monkeypatch.setattr(OpenAICompatProvider, "aclose", recording_close)
    config = RunConfig(read_timeout_s=30, request_deadline_s=30, sleep=fast_config.sleep)
    with serve(OpenAIHandler, "hang") as (root, stub):
        task = asyncio.create_task(run_certification(endpoint(root), config=config))
        assert await asyncio.to_thread(stub.received.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert closed == [True]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_run_past_its_deadline_ends_as_a_retryable_timeout(fast_config: RunConfig) -> None:
    # Connectivity (0.3 s) fits in the deadline; the performance probe's 6 sequential requests (1.8 s) do not.
    config = RunConfig(run_deadline_s=1.5, sleep=fast_config.sleep)
    with serve(OpenAIHandler, delay_s=0.3) as (root, _):
        verdict = await run_certification(endpoint(root), config=config)
    results = {p["name"]: p for p in verdict.test_results}
    assert verdict.error_category == "TIMEOUT" and verdict.retryable and verdict.score == 0
    assert results["connectivity"]["outcome"] == "scored"
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_error_in_the_progress_callback_propagates_unchanged(fast_config: RunConfig) -> None:
    class LeaseLost(Exception):
        pass

    async def on_progress(done: int, total: int) -> None:
        raise LeaseLost("gone")

    with serve(OpenAIHandler) as (root, _), pytest.raises(LeaseLost):
        await run_certification(endpoint(root), on_progress, config=fast_config)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_bug_in_a_probe_is_an_internal_error_not_a_verdict_on_the_model(
    monkeypatch: pytest.MonkeyPatch, fast_config: RunConfig
) -> None:
    import dataclasses

    from certq.certification import runner
    from certq.certification.chat import Check
    from certq.certification.probes import SUITE, ProbeRun

    async def broken(run: ProbeRun) -> list[Check]:
        raise KeyError("bug")

    suite = tuple(dataclasses.replace(s, run=broken) if s.name == "json_output" else s for s in SUITE)
    monkeypatch.setattr(runner, "SUITE", suite)
    with serve(OpenAIHandler) as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.error_category == "INTERNAL_ERROR" and not verdict.retryable
    assert verdict.error_message == "the certifier failed; see the worker log"
    assert asyncio.all_tasks() == {asyncio.current_task()}
