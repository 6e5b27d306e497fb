"""Hostile model endpoints cannot exhaust a worker's memory: every read is capped and a breach is PROTOCOL_ERROR."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from certq.certification import ErrorCategory, ModelEndpoint, ResponseLimits, RunConfig, run_certification
from certq.certification.errors import ProviderError
from certq.certification.limits import depth_exceeds, iter_lines, loads, quote_endpoint, read_body
from tests.certification.stubs import HostileHandler, serve

pytestmark = pytest.mark.timeout(120)

RSS_BOUND_BYTES = 96 * 1024 * 1024  # the unbounded reader grew by 100-560 MB on each of these


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _peak_growth(work: asyncio.Task[object]) -> int:
    baseline = peak = _rss()
    while not work.done():
        peak = max(peak, _rss())
        await asyncio.sleep(0.02)
    return peak - baseline


@pytest.mark.parametrize("behaviour", ["huge-body", "endless-sse", "huge-line", "deep-json", "gzip-bomb"])
async def test_a_hostile_endpoint_is_a_protocol_error_within_a_memory_bound(
    fast_config: RunConfig, behaviour: str
) -> None:
    with serve(HostileHandler, behaviour) as (root, _):
        endpoint = ModelEndpoint(provider="openai", api_model_id="m", region="local", base_url=root + "/v1")
        run = asyncio.create_task(run_certification(endpoint, config=fast_config))
        growth = await _peak_growth(run)
        verdict = run.result().to_json()
    assert verdict["errorCategory"] == ErrorCategory.PROTOCOL_ERROR, verdict
    assert verdict["status"] == "FAILED"
    assert growth < RSS_BOUND_BYTES, f"RSS grew by {growth / 2**20:.0f} MB"
    assert any(word in verdict["errorMessage"] for word in ("exceeds", "nesting")), verdict["errorMessage"]


async def _response(chunks: list[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return httpx.Response(200, headers=headers or {}, content=body())


async def test_a_body_over_the_cap_stops_at_the_cap() -> None:
    limits = ResponseLimits(max_body_bytes=1000)
    assert await read_body(await _response([b"a" * 600, b"b" * 400]), limits) == b"a" * 600 + b"b" * 400
    with pytest.raises(ProviderError, match="exceeds 1000 bytes") as caught:
        await read_body(await _response([b"a" * 600, b"b" * 401]), limits)
    assert caught.value.category == ErrorCategory.PROTOCOL_ERROR


async def test_a_compressed_body_is_measured_by_what_it_inflates_to() -> None:
    limits = ResponseLimits(max_body_bytes=10_000)
    small = gzip.compress(b"z" * 9_000)
    assert await read_body(await _response([small], {"Content-Encoding": "gzip"}), limits) == b"z" * 9_000
    with pytest.raises(ProviderError, match="exceeds 10000 bytes"):
        await read_body(await _response([gzip.compress(b"z" * 10_001)], {"Content-Encoding": "gzip"}), limits)
    with pytest.raises(ProviderError, match="unsupported Content-Encoding"):
        await read_body(await _response([b"x"], {"Content-Encoding": "br"}), limits)


async def test_lines_are_split_on_bytes_and_an_endless_line_is_refused() -> None:
    limits = ResponseLimits(max_line_bytes=10, max_stream_bytes=1000)
    lines = [line async for line in iter_lines(await _response([b"ab\r\ncd", b"e\nf"]), limits)]
    assert lines == ["ab", "cde", "f"]
    with pytest.raises(ProviderError, match="line exceeds 10 bytes"):
        [line async for line in iter_lines(await _response([b"0123456", b"789ab"]), limits)]
    with pytest.raises(ProviderError, match="stream exceeds 1000 bytes"):
        [line async for line in iter_lines(await _response([b"short\n" * 100, b"more\n" * 100]), limits)]


def test_nesting_depth_is_counted_outside_strings_only() -> None:
    assert not depth_exceeds(b'{"a": [[1]], "b": "[[[[[[[[[["}', 3)
    assert depth_exceeds(b'{"a": [[[1]]]}', 3)
    assert not depth_exceeds(b"[[[]]]", 3) and depth_exceeds(b"[[[[]]]]", 3)
    assert depth_exceeds(b"[" * 100_000 + b"]" * 100_000, 64)
    with pytest.raises(ProviderError, match="nesting exceeds 64"):
        loads(b"[" * 100_000 + b"]" * 100_000, ResponseLimits())
    assert loads(b'{"ok": [1, {"x": "[["}]}', ResponseLimits()) == {"ok": [1, {"x": "[["}]}


def test_quoted_endpoint_text_is_redacted_before_it_is_cut_and_escapes_control_characters() -> None:
    secret = "sk-" + "s" * 40

    def redact(text: str, _limit: int) -> str:
        return text.replace(secret, "[REDACTED]")

    quoted = quote_endpoint("x" * 190 + secret + "\x1b[31m", redact, 200)
    assert "sk-" not in quoted and len(quoted) <= 200
    assert quote_endpoint("red \x1b[31m bell \x07", redact, 200) == "red \\x1b[31m bell \\x07"
