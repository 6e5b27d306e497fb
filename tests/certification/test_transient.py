"""An endpoint with transient errors is judged on its answers; a really unavailable one is an outage."""

from __future__ import annotations

import pytest

from certq.certification import RETRYABLE, ModelEndpoint, RunConfig, run_certification
from certq.certification.scoring import reliability_penalty
from tests.certification.conftest import SleepLog
from tests.certification.stubs import OpenAIHandler, serve


def _endpoint(root: str) -> ModelEndpoint:
    return ModelEndpoint(provider="openai", api_model_id="gpt-x", region="local", base_url=root + "/v1")


async def test_one_request_in_three_overloaded_is_certified_on_its_answers_at_a_reliability_cost(
    fast_config: RunConfig, sleeps: SleepLog
) -> None:
    with serve(OpenAIHandler, "flaky-1in3") as (root, stub):
        verdict = (await run_certification(_endpoint(root), config=fast_config)).to_json()
    reliability = verdict["metrics"]["reliability"]
    assert verdict["status"] == "CERTIFIED", verdict["errorMessage"]
    assert all(p["passed"] for p in verdict["testResults"]), [p["detail"] for p in verdict["testResults"]]
    assert reliability["requests"] == len(stub.requests)
    failed = sum(1 for n in range(len(stub.requests)) if n % 3 == 0)  # the stub's 1st, 4th, 7th... answer 503
    assert reliability["transientFailures"] == {"MODEL_UNAVAILABLE": failed}
    assert 0.6 < reliability["availability"] < 0.7 and reliability["retries"] == failed
    assert reliability["scorePenalty"] == reliability_penalty(reliability["availability"]) == 10
    assert verdict["score"] <= 90 and sleeps.delays  # backed off between tries


@pytest.mark.parametrize("behaviour", ["flaky-3in4", "flaky-1in1"])
async def test_an_endpoint_that_mostly_fails_ends_as_a_retryable_outage(fast_config: RunConfig, behaviour: str) -> None:
    with serve(OpenAIHandler, behaviour) as (root, stub):
        verdict = (await run_certification(_endpoint(root), config=fast_config)).to_json()
    assert verdict["status"] == "FAILED" and verdict["retryable"] is True
    assert verdict["errorCategory"] in {c.value for c in RETRYABLE}
    # Requests of sibling probes cancelled when the run ends are counted as sent but may never reach the stub.
    unseen = verdict["metrics"]["reliability"]["requests"] - len(stub.requests)
    assert 0 <= unseen <= 3, unseen
    if behaviour == "flaky-1in1":  # the gate probe cannot get an answer: 1 + max_retries tries
        assert len(stub.requests) == 1 + fast_config.max_retries


async def test_a_spent_retry_budget_ends_the_run_as_an_outage_naming_it(fast_config: RunConfig) -> None:
    config = RunConfig(**{**fast_config.__dict__, "retry_budget": 3})
    with serve(OpenAIHandler, "flaky-1in3") as (root, stub):
        verdict = (await run_certification(_endpoint(root), config=config)).to_json()
    assert verdict["status"] == "FAILED" and verdict["retryable"] is True
    assert "retry budget of 3 is spent" in verdict["errorMessage"], verdict["errorMessage"]
    assert verdict["metrics"]["retries"] == 3 and verdict["metrics"]["reliability"]["requests"] == len(stub.requests)


def test_the_reliability_penalty_is_linear_in_the_failed_share() -> None:
    assert [reliability_penalty(a) for a in (1.0, 0.99, 2 / 3, 0.5, 0.0)] == [0, 0, 10, 15, 30]
