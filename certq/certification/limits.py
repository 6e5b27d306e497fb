"""Caps on what an endpoint may send back: body and stream sizes, stream duration, line length, JSON depth."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from certq.certification.errors import ErrorCategory, ProviderError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ResponseLimits:
    """What one response may cost us; a breach stops the read, closes the response and is a PROTOCOL_ERROR.

    Sizes count decoded bytes (after Content-Encoding), so a compressed bomb is caught by what it inflates to.
    """

    max_body_bytes: int = 8 * MIB
    max_stream_bytes: int = 8 * MIB  # the whole of one streamed answer
    max_stream_seconds: float = 120.0
    max_line_bytes: int = 1 * MIB  # one SSE line, or one Bedrock event frame
    max_json_depth: int = 64
    max_error_chars: int = 200  # endpoint text quoted in our messages


def breach(message: str, status: int | None = None) -> ProviderError:
    return ProviderError(ErrorCategory.PROTOCOL_ERROR, message, status=status)


ACCEPT_ENCODING = "gzip, deflate"
"""What we ask for: the encodings `decoded_chunks` can inflate a bounded piece at a time."""

_PIECE = 64 * 1024
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


async def decoded_chunks(response: httpx.Response, limits: ResponseLimits) -> AsyncIterator[bytes]:
    """The body decoded at most 64 KiB at a time; httpx would inflate a whole network read at once, and one
    64 KiB read of a gzip bomb is 64 MB. Unknown encodings are refused rather than passed through undecoded."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        async for chunk in response.aiter_raw():
            for start in range(0, len(chunk), _PIECE):
                yield chunk[start : start + _PIECE]
        return
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise breach(f"unsupported Content-Encoding {encoding[:40]!r}", response.status_code)
    inflater = zlib.decompressobj(wbits)
    try:
        async for chunk in response.aiter_raw():
            data = chunk
            while data:
                piece = inflater.decompress(data, _PIECE)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
        tail = inflater.flush(_PIECE)
        if tail:
            yield tail
    except zlib.error:
        raise breach(f"undecodable {encoding} body", response.status_code) from None


async def read_body(response: httpx.Response, limits: ResponseLimits) -> bytes:
    """The whole body, or PROTOCOL_ERROR as soon as it passes `max_body_bytes` (checked before any read)."""
    cap = limits.max_body_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap and "content-encoding" not in response.headers:
        raise breach(f"response body exceeds {cap} bytes (Content-Length {declared})", response.status_code)
    body = bytearray()
    async for chunk in decoded_chunks(response, limits):
        body += chunk
        if len(body) > cap:
            raise breach(f"response body exceeds {cap} bytes", response.status_code)
    return bytes(body)


class StreamMeter:
    """Counts a stream's bytes against `max_stream_bytes`; `pending` is the unfinished line or frame."""

    def __init__(self, limits: ResponseLimits, status: int, unit: str) -> None:
        self.limits = limits
        self.status = status
        self.unit = unit
        self.total = 0

    def add(self, size: int) -> None:
        self.total += size
        if self.total > self.limits.max_stream_bytes:
            raise breach(f"stream exceeds {self.limits.max_stream_bytes} bytes", self.status)

    def check_pending(self, size: int) -> None:
        if size > self.limits.max_line_bytes:
            raise breach(f"stream {self.unit} exceeds {self.limits.max_line_bytes} bytes", self.status)


async def iter_lines(response: httpx.Response, limits: ResponseLimits) -> AsyncIterator[str]:
    """Lines of a streamed body, split on raw bytes: httpx's aiter_lines would buffer an endless line whole."""
    meter = StreamMeter(limits, response.status_code, "line")
    pending = b""
    async for chunk in decoded_chunks(response, limits):
        meter.add(len(chunk))
        pending += chunk
        if b"\n" not in chunk:
            meter.check_pending(len(pending))
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            meter.check_pending(len(line))
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        meter.check_pending(len(pending))
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


@asynccontextmanager
async def stream_deadline(limits: ResponseLimits, status: int) -> AsyncIterator[None]:
    """Bounds a stream's wall time; any outer deadline still raises its own TimeoutError."""
    timeout = asyncio.timeout(limits.max_stream_seconds)
    try:
        async with timeout:
            yield
    except TimeoutError:
        if timeout.expired():
            raise breach(f"stream did not finish within {limits.max_stream_seconds:g} s", status) from None
        raise


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # for depth alone, objects and arrays are the same


def depth_exceeds(data: bytes, limit: int) -> bool:
    """True when arrays/objects nest deeper than `limit`; strings are skipped, so `"[[["` does not count.

    Each pass deletes the innermost (empty) pairs, so it costs at most `limit` C-speed passes.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced, or already empty: the parser has the last word
        brackets = shorter
    return b"[]" in brackets


def depth_breach(limits: ResponseLimits, status: int | None = None) -> ProviderError:
    return breach(f"JSON nesting exceeds {limits.max_json_depth} levels", status)


def loads(data: bytes | str, limits: ResponseLimits, status: int | None = None) -> Any:
    """orjson.loads with a depth cap; other malformations still raise orjson.JSONDecodeError for the caller."""
    raw = data.encode() if isinstance(data, str) else data
    if depth_exceeds(raw, limits.max_json_depth):
        raise depth_breach(limits, status)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise depth_breach(limits, status) from None
        raise
    except RecursionError:
        raise depth_breach(limits, status) from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def quote_endpoint(text: str, redact: Callable[[str, int], str], limit: int) -> str:
    """Endpoint-supplied text fit for our messages: redacted, control characters escaped, at most `limit` chars.

    Redaction runs on a generous prefix before the cut, so a secret is never left half-visible by truncation.
    """
    text = redact(text[: limit * 4], limit * 4)
    text = _CONTROL.sub(_escape, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"
