"""Small parts: SSE parsing, backoff, secret redaction, JSON answer extraction, inference-profile ids."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from certq.certification.bedrock import needs_no_profile, profile_prefix
from certq.certification.config import RunConfig
from certq.certification.probes import linear_credit, parse_json_answer
from certq.certification.redaction import Redactor
from certq.certification.sse import SseEvent, iter_sse


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_sse_reader_joins_data_lines_and_skips_comments() -> None:
    events = [
        e
        async for e in iter_sse(
            lines(": keep-alive", 'data: {"a":', "data: 1}", "", "event: error", "data:x", "", "data: [DONE]")
        )
    ]
    assert events == [SseEvent("message", '{"a":\n1}'), SseEvent("error", "x"), SseEvent("message", "[DONE]")]


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    config = RunConfig(rng=random.Random(1))
    delays = [config.backoff_s(n, None) for n in (1, 2, 3, 10)]
    for delay, nominal in zip(delays, (0.5, 1.0, 2.0, 8.0), strict=True):
        assert delay is not None and 0.75 * nominal <= delay <= nominal


def test_backoff_honours_retry_after_up_to_the_in_run_limit() -> None:
    config = RunConfig(max_retry_after_s=30)
    assert config.backoff_s(1, 2.0) == 2.0
    assert config.backoff_s(1, 3600.0) is None


def test_redactor_masks_known_secrets_and_credential_shapes() -> None:
    redact = Redactor(["my-very-secret-value"])
    text = redact(
        "key my-very-secret-value, Bearer abcdef123456, sk-proj-abcdefgh, AKIAABCDEFGHIJKLMNOP, api_key=hunter22"
    )
    assert "my-very-secret-value" not in text and "abcdef123456" not in text and "sk-proj" not in text
    assert "AKIAABCDEFGHIJKLMNOP" not in text and "hunter22" not in text
    assert len(redact("x" * 1000, 100)) == 100


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"name": "Alice", "age": 30}', {"name": "Alice", "age": 30}),
        ('```json\n{"name": "Alice", "age": 30}\n```', {"name": "Alice", "age": 30}),
        ('Sure! {"name": "Alice", "age": 30} Hope that helps.', {"name": "Alice", "age": 30}),
    ],
)
def test_json_answers_are_found_in_fences_and_prose(answer: str, expected: object) -> None:
    assert parse_json_answer(answer) == expected


def test_a_json_answer_without_an_object_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_json_answer("no json here")


def test_linear_credit_in_both_directions() -> None:
    assert linear_credit(1.0, 2.0, 10.0) == 1.0 and linear_credit(6.0, 2.0, 10.0) == 0.5
    assert linear_credit(12.0, 2.0, 10.0) == 0.0 and linear_credit(17.5, 30.0, 5.0) == 0.5


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "us."),
        ("eu-west-3", "eu."),
        ("ap-south-1", "apac."),
        ("us-gov-west-1", "us-gov."),
        ("sa-east-1", None),
    ],
)
def test_inference_profile_prefix_follows_the_region(region: str, prefix: str | None) -> None:
    assert profile_prefix(region) == prefix


def test_profile_ids_and_arns_are_used_as_given() -> None:
    assert needs_no_profile("us.anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert needs_no_profile("arn:aws:bedrock:us-east-1:123:inference-profile/x")
    assert not needs_no_profile("anthropic.claude-3-5-sonnet-20241022-v2:0")
