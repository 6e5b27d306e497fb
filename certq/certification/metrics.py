"""What a run measured: request counts, latency/TTFT/throughput samples and their summaries."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from certq.certification.chat import ChatResult
from certq.certification.errors import ErrorCategory


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation): with few samples it reports a value that was seen."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def output_tokens_per_s(result: ChatResult) -> tuple[float, str] | None:
    """Decode speed of a stream after its first content token, by usage if the stream had it, else by chunks."""
    if result.ttft_s is None or result.last_content_s is None:
        return None
    span = result.last_content_s - result.ttft_s
    if span <= 0:
        return None
    if result.usage_in_stream and result.usage is not None and result.usage.completion_tokens > 1:
        return (result.usage.completion_tokens - 1) / span, "usage"
    if result.content_chunks > 1:
        return (result.content_chunks - 1) / span, "chunk_count"
    return None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


@dataclass
class RunRecorder:
    """Counts every request of a run and keeps the samples of successful ones."""

    requests: int = 0
    retries: int = 0
    status_counts: Counter[str] = field(default_factory=Counter)
    error_counts: Counter[str] = field(default_factory=Counter)
    transient_counts: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    first_chunks_s: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    speed_methods: set[str] = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    server_latencies_ms: list[float] = field(default_factory=list)
    streams: int = 0
    stream_chunks: int = 0
    streams_with_usage: int = 0
    streams_with_done: int = 0
    models_reported: set[str] = field(default_factory=set)
    answers: int = 0

    def on_request(self) -> None:
        self.requests += 1

    def on_status(self, status: int | None) -> None:
        self.status_counts[str(status) if status is not None else "none"] += 1

    def on_error(self, category: ErrorCategory) -> None:
        self.error_counts[category.value] += 1
        if category.retryable:
            self.transient_counts[category.value] += 1

    @property
    def availability(self) -> float:
        """Share of requests that did not fail transiently (1.0 before any request)."""
        if self.requests == 0:
            return 1.0
        return max(0.0, 1.0 - sum(self.transient_counts.values()) / self.requests)

    def on_retry(self) -> None:
        self.retries += 1

    def on_result(self, result: ChatResult, timed: bool = True) -> None:
        """Counts the answer; `timed` False keeps it out of the latency and stream samples (capability probes
        send prompts of very different sizes, which would say nothing about the endpoint's usual speed)."""
        self.answers += 1
        if result.usage is not None:
            self.prompt_tokens += result.usage.prompt_tokens
            self.completion_tokens += result.usage.completion_tokens
        if result.model:
            self.models_reported.add(result.model)
        if not timed:
            return
        if result.server_latency_ms is not None:
            self.server_latencies_ms.append(result.server_latency_ms)
        if not result.streamed:
            self.latencies_s.append(result.latency_s)
            return
        self.streams += 1
        self.stream_chunks += result.chunks
        self.streams_with_usage += int(result.usage_in_stream)
        self.streams_with_done += int(result.done_marker)
        if result.ttft_s is not None:
            self.ttfts_s.append(result.ttft_s)
        if result.first_chunk_s is not None:
            self.first_chunks_s.append(result.first_chunk_s)
        speed = output_tokens_per_s(result)
        if speed is not None:
            self.speeds.append(speed[0])
            self.speed_methods.add(speed[1])

    def summary(self) -> dict[str, Any]:
        """The `metrics` object of a verdict (camelCase, milliseconds)."""
        speed = percentile(self.speeds, 50)
        return {
            "latencyMs": {
                "p50": _ms(percentile(self.latencies_s, 50)),
                "p95": _ms(percentile(self.latencies_s, 95)),
                "max": _ms(max(self.latencies_s, default=None)),
                "n": len(self.latencies_s),
            },
            "ttftMs": {"p50": _ms(percentile(self.ttfts_s, 50)), "n": len(self.ttfts_s)},
            "firstChunkMs": {"p50": _ms(percentile(self.first_chunks_s, 50)), "n": len(self.first_chunks_s)},
            "outputTokensPerSecond": {
                "p50": None if speed is None else round(speed, 1),
                "n": len(self.speeds),
                "method": "/".join(sorted(self.speed_methods)) or None,
            },
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
            },
            "serverLatencyMs": {
                "p50": percentile(self.server_latencies_ms, 50),
                "n": len(self.server_latencies_ms),
            },
            "requests": self.requests,
            "retries": self.retries,
            "httpStatusCounts": dict(sorted(self.status_counts.items())),
            "errorCounts": dict(sorted(self.error_counts.items())),
            "reliability": {
                "requests": self.requests,
                "transientFailures": dict(sorted(self.transient_counts.items())),
                "retries": self.retries,
                "availability": round(self.availability, 4),
            },
            "stream": {
                "streams": self.streams,
                "chunks": self.stream_chunks,
                "usageInStream": self.streams_with_usage,
                "doneMarker": self.streams_with_done,
            },
            "modelReported": sorted(self.models_reported),
        }
