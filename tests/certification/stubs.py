"""Loopback stand-ins for model servers: an OpenAI-compatible one and Bedrock Runtime (Converse/ConverseStream).

Both answer the probe prompts correctly in their "ok" behaviour and misbehave on purpose otherwise. They run
on 127.0.0.1 in a thread of the test process and record every request they receive.
"""

from __future__ import annotations

import binascii
import functools
import hmac
import json
import re
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDEXAMPLESTUBKEY01"
SECRET_KEY = "stub-secret-key-never-printed"


def answer_for(messages: list[dict[str, Any]], system: str, max_tokens: int, stop: list[str]) -> tuple[str, str]:
    """A correct answer to each probe prompt, as (text, finish); finish is "stop", "stop_sequence" or "length"."""
    last = str(messages[-1]["content"]) if messages else ""
    counting = re.search(r"Count from 1 to (\d+)", last)
    if counting:
        text = " ".join(str(i) for i in range(1, int(counting.group(1)) + 1))
    elif "pong" in last:
        text = "pong"
    elif "17 + 25" in last:
        text = "42"
    elif "capital of France" in last:
        text = "Paris."
    elif "exactly OK" in last:
        text = "OK"
    elif "JSON" in last:
        text = '```json\n{"name": "Alice", "age": 30}\n```'
    elif "code word" in last and "ZEBRA" in system and len(messages) >= 3:
        text = "ZEBRA"
    else:
        text = "Hello."
    for sequence in stop:
        if sequence in text:
            return text[: text.index(sequence)], "stop_sequence"
    words = text.split(" ")
    if len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StubState:
    behaviour: str
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    received: threading.Event = field(default_factory=threading.Event)
    failures_left: int | None = None  # None: misbehave on every request
    delay_s: float = 0.0  # added before every answer (benchmarks: a slow hosted model)
    flaky_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def flaky_turn(self, failing: int, every: int) -> bool:
        """True for `failing` of every `every` requests (the first ones of each cycle): a fixed share of 503s."""
        with self.lock:
            self.flaky_count += 1
            return (self.flaky_count - 1) % every < failing

    def should_fail(self) -> bool:
        with self.lock:
            if self.failures_left is None:
                return True
            if self.failures_left > 0:
                self.failures_left -= 1
                return True
            return False


FLAKY = re.compile(r"flaky-(\d+)in(\d+)")
"""`flaky-1in3`: one request in three answers 503 (overloaded), the others answer well."""


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StubState

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _read(self) -> tuple[bytes, dict[str, Any]]:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        self.state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
        self.state.received.set()
        if self.state.delay_s:
            self.state.release.wait(self.state.delay_s)
        return raw, body

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def _hang(self) -> None:
        self.state.release.wait(30)
        self.close_connection = True


OPENAI_ERRORS: dict[str, tuple[int, object, dict[str, str]]] = {
    "401": (
        401,
        {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        {},
    ),
    "401-fastapi": (401, {"detail": "Invalid API key"}, {}),
    "403": (
        403,
        {
            "error": {
                "message": "Country, region, or territory not supported",
                "type": "request_forbidden",
                "code": "unsupported_country_region_territory",
            }
        },
        {},
    ),
    "403-plain": (403, {"error": {"message": "You are not allowed to use this model"}}, {}),
    "404-model": (
        404,
        {
            "error": {
                "message": "The model `gpt-x` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        },
        {},
    ),
    "404-model-vllm": (
        404,
        {"object": "error", "message": "The model `gpt-x` does not exist.", "type": "NotFoundError", "code": 404},
        {},
    ),
    "404-model-ollama": (
        404,
        {"error": {"message": 'model "gpt-x" not found, try pulling it first', "type": "api_error"}},
        {},
    ),
    "429": (
        429,
        {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}},
        {"Retry-After": "2"},
    ),
    "429-ms": (
        429,
        {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
        {"retry-after-ms": "250"},
    ),
    "429-bare": (429, {"error": {"message": "Too many requests"}}, {}),
    "429-long": (429, {"error": {"message": "Too many requests"}}, {"Retry-After": "3600"}),
    "quota": (
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
        {},
    ),
    "402": (402, {"error": {"message": "Payment required"}}, {}),
    "400-context": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 2048 tokens",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        {},
    ),
    "500": (500, {"error": {"message": "The server had an error while processing your request."}}, {}),
    "502": (502, {"error": {"message": "Bad gateway"}}, {}),
    "503": (503, {"error": {"message": "Service Unavailable", "type": "server_error"}}, {}),
    "503-loading": (503, {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}, {}),
    "529": (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, {}),
    "504": (504, {"error": {"message": "Gateway timeout"}}, {}),
}


def count_tokens(texts: list[str]) -> int:
    """The stubs' tokenizer: one token per word, plus 3 per turn (honest and predictable usage numbers)."""
    return sum(len(text.split()) + 3 for text in texts)


class OpenAIHandler(_Base):
    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self) -> None:
        _, body = self._read()
        self.respond(body)

    def respond(self, body: dict[str, Any]) -> None:
        behaviour = self.state.behaviour
        if self.path != "/v1/chat/completions":
            return self._json(404, {"detail": "Not Found"})
        if behaviour == "echo-key":
            auth = self.headers.get("Authorization", "")
            return self._json(401, {"error": {"message": f"Invalid key in header {auth}", "code": "invalid_api_key"}})
        if behaviour == "hang":
            return self._hang()
        if behaviour in OPENAI_ERRORS and self.state.should_fail():
            status, payload, headers = OPENAI_ERRORS[behaviour]
            return self._json(status, payload, headers)
        flaky = FLAKY.fullmatch(behaviour)
        if flaky and self.state.flaky_turn(int(flaky.group(1)), int(flaky.group(2))):
            status, payload, headers = OPENAI_ERRORS["503"]
            return self._json(status, payload, headers)
        if behaviour == "non-json":
            return self._send(200, b"<html><body>gateway says hi</body></html>", "text/html")
        if behaviour == "no-choices":
            return self._json(200, {"id": "x", "object": "chat.completion"})
        if behaviour == "stream-options-400" and "stream_options" in body:
            return self._json(
                400,
                {
                    "error": {
                        "message": "Unrecognized request argument supplied: stream_options",
                        "type": "invalid_request_error",
                        "param": "stream_options",
                    }
                },
            )
        if body.get("temperature") == "hot":
            return self._json(
                400,
                {
                    "error": {
                        "message": "temperature: Input should be a valid number",
                        "type": "invalid_request_error",
                        "param": "temperature",
                    }
                },
            )
        system = " ".join(m["content"] for m in body.get("messages", []) if m.get("role") == "system")
        turns = [m for m in body.get("messages", []) if m.get("role") != "system"]
        text, finish = answer_for(turns, system, int(body.get("max_tokens", 256)), list(body.get("stop") or []))
        finish = "stop" if finish == "stop_sequence" else finish
        if behaviour == "mediocre":  # one closed question wrong, ignores the system prompt and the limits
            last = str(turns[-1]["content"])
            if "exactly OK" in last:
                text = "Okay, sure."
            elif "code word" in last:
                text = "I don't know."
            elif "Count from 1 to" in last:
                text, finish = answer_for(turns, system, 10**6, [])[0], "stop"
        if behaviour == "filtered":
            text, finish = "", "content_filter"
        usage = {
            "prompt_tokens": count_tokens([str(m.get("content") or "") for m in body.get("messages", [])]),
            "completion_tokens": len(text.split()) or 1,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        served = self._served_model(str(body.get("model", "")))
        if body.get("stream"):
            return self._stream(
                text, finish, usage, bool((body.get("stream_options") or {}).get("include_usage")), served
            )
        answer: dict[str, Any] = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage,
        }
        if served is None:
            del answer["model"]
        self._json(200, answer)

    def _served_model(self, asked: str) -> str | None:
        """What the stub says it served: the model asked for, unless told to ignore it ("wrong-model", as
        llama-server and single-model vLLM do), answer a dated snapshot, or say nothing ("no-model")."""
        behaviour = self.state.behaviour
        if behaviour == "wrong-model":
            return "some-other-model"
        if behaviour == "snapshot-model":
            return f"{asked}-2024-08-06"
        if behaviour == "no-model":
            return None
        if behaviour == "key-as-model":  # a hostile endpoint naming itself after the key it was sent
            return self.headers.get("Authorization", "").removeprefix("Bearer ")
        return asked

    def _stream(self, text: str, finish: str, usage: dict[str, int], include_usage: bool, served: str | None) -> None:
        behaviour = self.state.behaviour
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj: object) -> None:
            self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        base: dict[str, Any] = {"id": "chatcmpl-stub", "object": "chat.completion.chunk"}
        if served is not None:
            base["model"] = served
        event(base | {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else " " + word
            event(base | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        if behaviour == "broken-sse":
            self._chunk(b"data: {not json\n\n")
        elif behaviour == "sse-error":
            event({"error": {"message": "model crashed", "type": "server_error"}})
        elif behaviour == "sse-stall":
            self._hang()
            return
        elif behaviour == "sse-reset":
            self.wfile.write(b'ff\r\ndata: {"partial')  # announce 255 bytes, send a few, hang up
            self.wfile.flush()
            self.close_connection = True
            return
        elif behaviour == "sse-done-no-finish":
            self._chunk(b"data: [DONE]\n\n")
        elif behaviour != "sse-no-end":
            event(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if include_usage:
                event(base | {"choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# ---- Bedrock Runtime (adapted from shared/reference/bedrock_stub.py) ----

BEDROCK_ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "denied": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "notready": (429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    "validation": (400, "ValidationException", "The provided model identifier is invalid."),
    "badparam": (400, "ValidationException", "1 validation error detected: Value at 'inferenceConfig.topP'"),
    "unavailable": (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    "notfound": (404, "ResourceNotFoundException", "This model version has reached the end of its life."),
    "timeout": (408, "ModelTimeoutException", "Model has timed out in processing the request."),
    "internal": (500, "InternalServerException", "An internal server error occurred."),
    "modelerror": (424, "ModelErrorException", "The model returned an error."),
    "quota": (400, "ServiceQuotaExceededException", "Your request exceeds the service quota for your account."),
    "unrecognized": (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
}
PROFILE_MESSAGE = (
    "Invocation of model ID anthropic.stub with on-demand throughput isn't supported. Retry your "
    "request with the ID or ARN of an inference profile that contains this model."
)


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def event_message(headers: dict[str, str], payload: object, corrupt: bool = False) -> bytes:
    """One application/vnd.amazon.eventstream frame (CRC32 over the prelude and over the whole message)."""
    header_bytes = b"".join(_header(k, v) for k, v in headers.items())
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(header_bytes) + len(body) + 4, len(header_bytes))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + header_bytes + body
    crc = binascii.crc32(message) & 0xFFFFFFFF
    return message + struct.pack(">I", crc ^ 1 if corrupt else crc)


def bedrock_event(kind: str, payload: object, corrupt: bool = False) -> bytes:
    return event_message(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload, corrupt
    )


def verify_sigv4(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
    """None if the request carries a valid SigV4 signature for SECRET_KEY, else what is wrong."""
    lowered = {k.lower(): v for k, v in headers.items()}
    match = re.match(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
        lowered.get("authorization", ""),
    )
    if match is None:
        return "no SigV4 Authorization header"
    access, _, region, service, signed, signature = match.groups()
    if access != ACCESS_KEY or service != "bedrock":
        return f"unexpected credential scope {access}/{service}"
    names = signed.split(";")
    request = AWSRequest(
        method=method,
        url=f"http://{host}{path}",
        data=body,
        headers={name: lowered[name] for name in names if name != "host" and name in lowered},
    )
    request.context["timestamp"] = lowered.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return None if hmac.compare_digest(expected, signature) else "signature mismatch"


class BedrockHandler(_Base):
    def do_POST(self) -> None:
        raw, body = self._read()
        self.respond(raw, body)

    def respond(self, raw: bytes, body: dict[str, Any]) -> None:
        parts = self.path.split("/")  # ['', 'model', '<id>', 'converse' | 'converse-stream']
        if len(parts) != 4 or parts[1] != "model":
            return self._json(404, {"message": "not found"})
        model_id, operation = unquote(parts[2]), parts[3]
        problem = verify_sigv4("POST", self.headers.get("Host", ""), self.path, dict(self.headers.items()), raw)
        if problem is not None:
            return self._error(
                403, "InvalidSignatureException", f"The request signature we calculated does not match ({problem})."
            )
        mode = model_id.split(":")[0]
        if mode == "profile":  # only reachable through a cross-region inference profile id
            return self._error(400, "ValidationException", PROFILE_MESSAGE)
        if mode == "hang":
            return self._hang()
        if mode in BEDROCK_ERRORS and self.state.should_fail():
            status, code, message = BEDROCK_ERRORS[mode]
            return self._error(status, code, message)
        config = body.get("inferenceConfig", {})
        if not isinstance(config.get("temperature", 0), int | float):
            return self._error(400, "ValidationException", "temperature must be a number")
        messages = [
            {"role": m["role"], "content": "".join(b.get("text", "") for b in m["content"])}
            for m in body.get("messages", [])
        ]
        system = " ".join(b.get("text", "") for b in body.get("system", []))
        text, finish = answer_for(
            messages, system, int(config.get("maxTokens", 256)), list(config.get("stopSequences", []))
        )
        stop_reason = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens"}[finish]
        usage = {
            "inputTokens": count_tokens([system] * bool(system) + [m["content"] for m in messages]),
            "outputTokens": len(text.split()) or 1,
        }
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
        if operation == "converse":
            return self._json(
                200,
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                    "stopReason": stop_reason,
                    "usage": usage,
                    "metrics": {"latencyMs": 42},
                },
            )
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(bedrock_event("messageStart", {"role": "assistant"}))
        for i, word in enumerate(text.split(" ")):
            self._chunk(
                bedrock_event(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"text": word if i == 0 else " " + word}},
                    corrupt=mode == "corrupt",
                )
            )
        if mode == "stream-error":
            self._chunk(
                event_message(
                    {
                        ":exception-type": "modelStreamErrorException",
                        ":content-type": "application/json",
                        ":message-type": "exception",
                    },
                    {"message": "stream broke", "originalStatusCode": 500},
                )
            )
        elif mode == "stream-throttle":
            self._chunk(
                event_message(
                    {
                        ":exception-type": "throttlingException",
                        ":content-type": "application/json",
                        ":message-type": "exception",
                    },
                    {"message": "slow down"},
                )
            )
        else:
            self._chunk(bedrock_event("contentBlockStop", {"contentBlockIndex": 0}))
            self._chunk(bedrock_event("messageStop", {"stopReason": stop_reason}))
            self._chunk(bedrock_event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}}))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"message": message}, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops SYNs when probes connect concurrently


@contextmanager
def serve(
    handler: type[_Base],
    behaviour: str = "ok",
    failures: int | None = None,
    delay_s: float = 0.0,
    host: str = "127.0.0.1",
) -> Iterator[tuple[str, StubState]]:
    """Serve on <host>:<free port> (a loopback address); yields (root URL, state). With `failures`, an error
    behaviour answers that many times, then behaves like "ok"."""
    state = StubState(behaviour, failures_left=failures, delay_s=delay_s)
    bound = type(f"{handler.__name__}Bound", (handler,), {"state": state})
    server = _Server((host, 0), bound)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class HostileHandler(_Base):
    """An endpoint that attacks the reader: `huge-body` (100 MB), `endless-sse`, `huge-line` (200 MB, no
    newline), `deep-json` (100,000 nested arrays), `gzip-bomb` (gzip inflating to 256 MiB).

    Everything is generated as it is written, so the stub itself holds a chunk at a time; a writer stops at
    the first broken pipe, or after `HOSTILE_MAX_BYTES`, whichever comes first.
    """

    def do_POST(self) -> None:
        self._read()
        behaviour = self.state.behaviour
        chunk = b"x" * (1 << 20)
        try:
            if behaviour == "deep-json":
                self._send(200, b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
                return
            if behaviour == "gzip-bomb":
                self._send(200, _gzip_bomb(), headers={"Content-Encoding": "gzip"})
                return
            sse = behaviour in ("endless-sse", "huge-line")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if sse else "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if behaviour == "huge-line":
                self._chunk(b"data: ")
            sent, limit = 0, 200 * (1 << 20) if behaviour == "huge-line" else 100 * (1 << 20)
            event = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"y" * 4000 + b'"}}]}\n\n'
            while sent < (HOSTILE_MAX_BYTES if behaviour == "endless-sse" else limit):
                piece = event * 64 if behaviour == "endless-sse" else chunk
                self._chunk(piece)
                sent += len(piece)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


HOSTILE_MAX_BYTES = 2 << 30


@functools.cache
def _gzip_bomb() -> bytes:
    """~250 KB of gzip inflating to 256 MiB, made once (compressing it takes a second of CPU)."""
    import zlib

    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(256)), packer.flush()])
