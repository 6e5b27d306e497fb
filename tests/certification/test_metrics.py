"""Metric maths: nearest-rank percentiles, decode speed, and the recorder's summary."""

from __future__ import annotations

import pytest

from certq.certification.chat import ChatResult, Usage
from certq.certification.metrics import RunRecorder, output_tokens_per_s, percentile


@pytest.mark.parametrize(
    ("samples", "pct", "expected"),
    [
        ([], 50, None),
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 95, 4.0),
        ([float(i) for i in range(1, 21)], 95, 19.0),
        ([float(i) for i in range(1, 21)], 50, 10.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
    ],
)
def test_percentile_is_nearest_rank(samples: list[float], pct: float, expected: float | None) -> None:
    assert percentile(samples, pct) == expected


def stream(**kwargs: object) -> ChatResult:
    base: dict[str, object] = dict(
        text="x",
        finish_reason="stop",
        raw_finish_reason="stop",
        usage=None,
        model=None,
        status=200,
        latency_s=1.0,
        streamed=True,
    )
    return ChatResult(**(base | kwargs))  # type: ignore[arg-type]


def test_decode_speed_uses_stream_usage_after_the_first_token() -> None:
    result = stream(ttft_s=0.5, last_content_s=1.5, usage=Usage(10, 51, 61), usage_in_stream=True, content_chunks=20)
    assert output_tokens_per_s(result) == (50.0, "usage")


def test_decode_speed_falls_back_to_chunk_count() -> None:
    result = stream(ttft_s=0.2, last_content_s=0.7, content_chunks=11)
    assert output_tokens_per_s(result) == pytest.approx((20.0, "chunk_count"))


def test_decode_speed_needs_two_content_chunks() -> None:
    assert output_tokens_per_s(stream(ttft_s=0.2, last_content_s=0.2, content_chunks=1)) is None
    assert output_tokens_per_s(stream()) is None


def test_summary_counts_requests_statuses_tokens_and_samples() -> None:
    recorder = RunRecorder()
    for latency in (0.1, 0.2, 0.3):
        recorder.on_request()
        recorder.on_status(200)
        recorder.on_result(ChatResult("pong", "stop", "stop", Usage(5, 1, 6), "m", 200, latency))
    recorder.on_request()
    recorder.on_status(429)
    recorder.on_retry()
    recorder.on_result(
        stream(ttft_s=0.05, first_chunk_s=0.04, last_content_s=0.25, content_chunks=5, chunks=7, done_marker=True)
    )
    summary = recorder.summary()
    assert summary["latencyMs"] == {"p50": 200.0, "p95": 300.0, "max": 300.0, "n": 3}
    assert summary["ttftMs"] == {"p50": 50.0, "n": 1}
    assert summary["outputTokensPerSecond"] == {"p50": 20.0, "n": 1, "method": "chunk_count"}
    assert summary["tokens"] == {"prompt": 15, "completion": 3, "total": 18}
    assert summary["requests"] == 4 and summary["retries"] == 1
    assert summary["httpStatusCounts"] == {"200": 3, "429": 1}
    assert summary["stream"] == {"streams": 1, "chunks": 7, "usageInStream": 0, "doneMarker": 1}
    assert summary["modelReported"] == ["m"]
