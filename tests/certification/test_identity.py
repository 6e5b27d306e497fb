"""A certificate is for the model asked for: what the endpoint says it served is compared with it."""

from __future__ import annotations

import orjson
import pytest

from certq.certification import ErrorCategory, ModelEndpoint, RunConfig, run_certification
from certq.certification.identity import judge, names_match
from tests.certification.stubs import OpenAIHandler, serve


@pytest.mark.parametrize(
    ("expected", "reported"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o", "GPT-4o"),
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("gpt-4", "gpt-4-0613"),
        ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct"),
        ("qwen2.5-7b-instruct", "/models/Qwen2.5-7B-Instruct.gguf"),
        ("llama3", "llama3:latest"),
    ],
)
def test_the_same_model_or_a_dated_snapshot_of_it_matches(expected: str, reported: str) -> None:
    assert names_match(expected, reported)


@pytest.mark.parametrize(
    ("expected", "reported"),
    [
        ("gpt-4o", "gpt-4o-mini"),
        ("gpt-4o", "gpt-4"),
        ("llama-3-70b", "llama-3-8b"),
        ("tiny", "tiny-scripted"),
        ("gpt-4o", ""),
        ("", "gpt-4o"),
    ],
)
def test_another_model_does_not_match(expected: str, reported: str) -> None:
    assert not names_match(expected, reported)


def test_a_declared_served_name_replaces_the_asked_one_and_bedrock_is_checked_by_its_path() -> None:
    assert judge("openai", "my-deployment", "llama-3.1-8b", ["llama-3.1-8b"]).finding == "matched"
    assert judge("openai", "my-deployment", None, ["llama-3.1-8b"]).finding == "mismatch"
    assert judge("bedrock", "anthropic.claude-v2", None, []).finding == "by-path"
    assert judge("openai", "m", None, []).finding == "unreported"


def _endpoint(root: str, served: str | None = None) -> ModelEndpoint:
    return ModelEndpoint(
        provider="openai", api_model_id="gpt-x", region="local", base_url=root + "/v1", served_model=served
    )


async def test_an_endpoint_serving_another_model_is_not_certified_and_says_both_names(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "wrong-model") as (root, _):
        verdict = (await run_certification(_endpoint(root), config=fast_config)).to_json()
    assert verdict["status"] == "FAILED" and verdict["passed"] is False
    assert verdict["errorCategory"] == ErrorCategory.MODEL_MISMATCH and verdict["retryable"] is False
    assert "'some-other-model'" in verdict["errorMessage"] and "'gpt-x'" in verdict["errorMessage"]
    assert verdict["score"] <= 59 and verdict["rating"] == "F"
    assert all(p["passed"] for p in verdict["testResults"])  # the answers were fine: another model's
    assert verdict["metrics"]["modelIdentity"] == {
        "finding": "mismatch",
        "expected": "gpt-x",
        "reported": ["some-other-model"],
    }


async def test_a_declared_served_name_lets_that_endpoint_be_certified(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "wrong-model") as (root, _):
        verdict = (await run_certification(_endpoint(root, "some-other-model"), config=fast_config)).to_json()
    assert verdict["status"] == "CERTIFIED", verdict["errorMessage"]
    assert verdict["metrics"]["modelIdentity"]["finding"] == "matched"


async def test_a_snapshot_name_is_certified(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "snapshot-model") as (root, _):
        verdict = (await run_certification(_endpoint(root), config=fast_config)).to_json()
    assert verdict["status"] == "CERTIFIED"
    assert verdict["metrics"]["modelIdentity"]["reported"] == ["gpt-x-2024-08-06"]


async def test_an_endpoint_that_names_no_model_is_certified_with_a_visible_warning(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, "no-model") as (root, _):
        verdict = (await run_certification(_endpoint(root), config=fast_config)).to_json()
    assert verdict["status"] == "CERTIFIED"
    assert verdict["metrics"]["modelIdentity"]["finding"] == "unreported"
    assert any("reported no model name" in w for w in verdict["metrics"]["warnings"])


async def test_a_key_echoed_as_the_model_name_is_masked_in_the_verdict(fast_config: RunConfig) -> None:
    key = "sk-echoed-0123456789abcdef"
    with serve(OpenAIHandler, "key-as-model") as (root, _):
        endpoint = ModelEndpoint("openai", "gpt-x", "local", root + "/v1", key)
        verdict = (await run_certification(endpoint, config=fast_config)).to_json()
    assert verdict["errorCategory"] == ErrorCategory.MODEL_MISMATCH
    assert key not in orjson.dumps(verdict).decode(), "the key reached the stored verdict"
    assert verdict["metrics"]["modelIdentity"]["reported"] == ["***"]
