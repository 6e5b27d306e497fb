"""Adapter for OpenAI-compatible chat-completions servers (OpenAI, vLLM, Ollama, llama.cpp, Groq, ...)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from certq.certification.chat import (
    ChatRequest,
    ChatResult,
    Check,
    FinishReason,
    ModelEndpoint,
    RawOutcome,
    ToolCall,
    Usage,
    map_finish_reason,
)
from certq.certification.classify import classify_openai, classify_transport, parse_retry_after, read_error_body
from certq.certification.config import RunConfig
from certq.certification.errors import ErrorCategory, ProviderError
from certq.certification.limits import ACCEPT_ENCODING, iter_lines, loads, quote_endpoint, read_body, stream_deadline
from certq.certification.metrics import RunRecorder
from certq.certification.redaction import Redactor
from certq.certification.sse import iter_sse
from certq.certification.tool_wire import merge_tool_deltas, openai_message, openai_tool_calls
from certq.certification.transport import transport_for
from certq.egress import EgressRefused

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_COMPAT_PARAMS = ("stream_options", "max_tokens", "temperature")


class OpenAICompatProvider:
    """Chat completions over httpx with our own SSE reader; SDK-free so every byte and timing is visible."""

    name = "openai"

    def __init__(self, endpoint: ModelEndpoint, recorder: RunRecorder, redact: Redactor, config: RunConfig) -> None:
        if not endpoint.base_url:
            raise ProviderError(ErrorCategory.CONFIG_ERROR, "an openai deployment needs a base URL ending in /v1")
        try:
            base = httpx.URL(endpoint.base_url.rstrip("/") + "/")
        except (httpx.InvalidURL, TypeError) as exc:
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"invalid base URL: {exc}") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"base URL must be http(s)://host/...: {base}")
        self._endpoint = endpoint
        self._recorder = recorder
        self._redact = redact
        redact.add(base.password)  # credentials in the URL itself (https://user:secret@host/v1)
        self._config = config
        self._limits = config.limits
        self._quirks: set[str] = set()
        headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": "certq-certifier"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self._client = httpx.AsyncClient(
            base_url=base,
            headers=headers,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.connect_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
            transport=transport_for(config.egress),
        )

    @property
    def quirks(self) -> frozenset[str]:
        """Compatibility fallbacks this deployment needed (e.g. `no_stream_options`)."""
        return frozenset(self._quirks)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages.extend(openai_message(m) for m in request.messages)
        body: dict[str, Any] = {"model": self._endpoint.api_model_id, "messages": messages}
        body["max_completion_tokens" if "max_completion_tokens" in self._quirks else "max_tokens"] = request.max_tokens
        if request.temperature is not None and "no_temperature" not in self._quirks:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
                }
                for t in request.tools
            ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = (
                choice if choice in ("auto", "required", "none") else {"type": "function", "function": {"name": choice}}
            )
        if request.response_schema is not None:
            schema = request.response_schema
            spec: dict[str, Any] = {"name": schema.name, "schema": dict(schema.schema)}
            if schema.strict:
                spec["strict"] = True
            if "json_object_schema" in self._quirks:
                body["response_format"] = {"type": "json_object", "schema": dict(schema.schema)}
            else:
                body["response_format"] = {"type": "json_schema", "json_schema": spec}
        if stream:
            body["stream"] = True
            if "no_stream_options" not in self._quirks:
                body["stream_options"] = {"include_usage": True}
        return body

    def _learn_quirk(self, error: ProviderError, stream: bool, structured: bool = False) -> bool:
        """After a 400 naming one of our optional parameters, drop or rename it once (newer/older servers)."""
        text = error.message.lower()
        if (
            structured
            and error.category in (ErrorCategory.INVALID_REQUEST, ErrorCategory.SERVER_ERROR)
            and "response_format" in text
            and "json_object" in text
            and "json_object_schema" not in self._quirks
        ):
            # llama-cpp-python knows only {"type": "json_object", "schema": ...} (and says so with a 500).
            self._quirks.add("json_object_schema")
            return True
        if error.category is not ErrorCategory.INVALID_REQUEST:
            return False
        for param in _COMPAT_PARAMS:
            if param not in text:
                continue
            quirk = {
                "stream_options": "no_stream_options",
                "max_tokens": "max_completion_tokens",
                "temperature": "no_temperature",
            }[param]
            if quirk in self._quirks or (param == "stream_options" and not stream):
                continue
            self._quirks.add(quirk)
            return True
        return False

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await self._call(request, stream=False)

    async def stream(self, request: ChatRequest) -> ChatResult:
        return await self._call(request, stream=True)

    async def _call(self, request: ChatRequest, stream: bool) -> ChatResult:
        for _ in range(len(_COMPAT_PARAMS) + 2):  # each quirk once, json_object_schema too
            try:
                result = await self._once(request, stream)
            except ProviderError as error:
                if not self._learn_quirk(error, stream, request.response_schema is not None):
                    raise
                continue
            if request.response_schema is not None:
                result.structured_via = "response_format"
            return result
        raise ProviderError(ErrorCategory.INVALID_REQUEST, "request rejected after every compatibility fallback")

    async def _once(self, request: ChatRequest, stream: bool) -> ChatResult:
        body = orjson.dumps(self._body(request, stream))
        started = time.perf_counter()
        self._recorder.on_request()
        try:
            async with asyncio.timeout(self._config.request_deadline_s):
                if stream:
                    return await self._read_stream(body, started)
                async with self._client.stream(
                    "POST", "chat/completions", content=body, headers={"Content-Type": "application/json"}
                ) as response:
                    self._recorder.on_status(response.status_code)
                    raw = await read_body(response, self._limits)
                return self._parse_completion(response, raw, time.perf_counter() - started)
        except ProviderError:
            raise
        except EgressRefused as exc:
            self._recorder.on_status(None)
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"egress refused: {exc}") from None
        except TimeoutError:
            self._recorder.on_status(None)
            raise ProviderError(
                ErrorCategory.TIMEOUT, f"no complete answer within {self._config.request_deadline_s:g}s"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            self._recorder.on_status(None)
            category = classify_transport(exc)
            raise ProviderError(category, self._redact(f"{type(exc).__name__}: {exc}")) from None

    def _error(self, response: httpx.Response, body: bytes) -> ProviderError:
        error = read_error_body(body)
        category = classify_openai(response.status_code, error, self._endpoint.api_model_id)
        label = error.code or error.type
        quoted = self._quote(error.message)
        message = f"HTTP {response.status_code}" + (f" {label}" if label else "") + f": {quoted}"
        return ProviderError(
            category,
            self._redact(message),
            status=response.status_code,
            code=label,
            retry_after_s=parse_retry_after(response.headers),
        )

    def _quote(self, text: str) -> str:
        return quote_endpoint(text, self._redact, self._limits.max_error_chars)

    def _parse_completion(self, response: httpx.Response, raw: bytes, latency_s: float) -> ChatResult:
        if response.status_code >= 300:
            raise self._error(response, raw)
        try:
            data = loads(raw, self._limits, response.status_code)
        except orjson.JSONDecodeError:
            # Not the body itself: a page from a host that is not a model server is not ours to hand to a client.
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR,
                self._redact(
                    f"HTTP {response.status_code} body is not JSON "
                    f"({self._quote(response.headers.get('content-type', '?'))}, {len(raw)} bytes)"
                ),
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR, "response body is not a JSON object", status=response.status_code
            )
        if "error" in data and "choices" not in data:
            raise self._error(response, raw)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderError(ErrorCategory.PROTOCOL_ERROR, "response has no choices[0]", status=response.status_code)
        choice = choices[0]
        raw_message = choice.get("message")
        message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        content = message.get("content")
        raw_finish = choice.get("finish_reason")
        result = ChatResult(
            text=content if isinstance(content, str) else "",
            finish_reason=map_finish_reason(raw_finish if isinstance(raw_finish, str) else None, FINISH),
            raw_finish_reason=raw_finish if isinstance(raw_finish, str) else None,
            usage=_usage(data.get("usage")),
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            status=response.status_code,
            latency_s=latency_s,
            content_type=response.headers.get("content-type", ""),
            tool_calls=openai_tool_calls(message.get("tool_calls")),
        )
        result.contract = _contract_checks(data, choice, message)
        _raise_if_filtered(result)
        return result

    async def _read_stream(self, body: bytes, started: float) -> ChatResult:
        idle = self._config.stream_idle_timeout_s
        timeout = httpx.Timeout(
            connect=self._config.connect_timeout_s, read=idle, write=idle, pool=self._config.connect_timeout_s
        )
        async with self._client.stream(
            "POST",
            "chat/completions",
            content=body,
            timeout=timeout,
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        ) as response:
            self._recorder.on_status(response.status_code)
            if response.status_code >= 300:
                raise self._error(response, await read_body(response, self._limits))
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                size = len(await read_body(response, self._limits))
                raise ProviderError(
                    ErrorCategory.PROTOCOL_ERROR,
                    self._redact(
                        f"stream requested but got {self._quote(content_type) or 'no content type'} ({size} bytes)"
                    ),
                    status=response.status_code,
                )
            result = ChatResult(
                text="",
                finish_reason=None,
                raw_finish_reason=None,
                usage=None,
                model=None,
                status=response.status_code,
                latency_s=0.0,
                streamed=True,
                content_type=content_type,
            )
            parts: list[str] = []
            calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]
            async with stream_deadline(self._limits, response.status_code):
                async for event in iter_sse(iter_lines(response, self._limits)):
                    now = time.perf_counter() - started
                    if event.data.strip() == "[DONE]":
                        result.done_marker = True
                        break
                    self._apply_chunk(result, event.data, event.event, now, parts, calls)
            result.text = "".join(parts)
            result.tool_calls = [ToolCall(name, arguments, id_) for id_, name, arguments in calls.values()]
            result.latency_s = time.perf_counter() - started
        if result.raw_finish_reason is None:
            # e.g. llama-cpp-python cutting a stream short when another request interrupts it
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR,
                f"stream ended after {result.chunks} chunks without a finish_reason"
                + ("" if result.done_marker else " or [DONE]"),
                status=result.status,
            )
        _raise_if_filtered(result)
        return result

    def _apply_chunk(
        self, result: ChatResult, data: str, event: str, now: float, parts: list[str], calls: dict[int, list[str]]
    ) -> None:
        try:
            chunk = loads(data, self._limits, result.status)
        except orjson.JSONDecodeError:
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR,
                self._redact(f"malformed SSE data line: {self._quote(data)!r}"),
                status=result.status,
            ) from None
        if not isinstance(chunk, dict):
            raise ProviderError(ErrorCategory.PROTOCOL_ERROR, "SSE data is not a JSON object", status=result.status)
        if "error" in chunk or event == "error":
            error = read_error_body(data.encode())
            category = classify_openai(500, error, self._endpoint.api_model_id)
            raise ProviderError(
                category,
                self._redact(f"error inside the stream: {self._quote(error.message)}"),
                status=result.status,
                code=error.code or error.type,
            )
        result.chunks += 1
        if result.first_chunk_s is None:
            result.first_chunk_s = now
        if isinstance(chunk.get("model"), str):
            result.model = chunk["model"]
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            result.usage = usage
            result.usage_in_stream = True
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        delta = choices[0].get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
            merge_tool_deltas(calls, delta["tool_calls"])
        if isinstance(text, str) and text:
            parts.append(text)
            result.content_chunks += 1
            result.last_content_s = now
            if result.ttft_s is None:
                result.ttft_s = now
        finish = choices[0].get("finish_reason")
        if isinstance(finish, str):
            result.raw_finish_reason = finish
            result.finish_reason = map_finish_reason(finish, FINISH)

    async def send_invalid(self) -> RawOutcome:
        """A request with a wrongly typed parameter: a compliant server answers 4xx with an error body."""
        body = {
            "model": self._endpoint.api_model_id,
            "messages": [{"role": "user", "content": "Say hi."}],
            "temperature": "hot",
            "max_tokens": 8,
        }
        self._recorder.on_request()
        try:
            async with asyncio.timeout(self._config.request_deadline_s):
                async with self._client.stream("POST", "chat/completions", json=body) as response:
                    self._recorder.on_status(response.status_code)
                    raw = await read_body(response, self._limits)
        except (httpx.HTTPError, OSError, TimeoutError, EgressRefused) as exc:
            self._recorder.on_status(None)
            return RawOutcome(None, False, self._redact(f"no answer: {type(exc).__name__}"))
        try:
            data = loads(raw, self._limits, response.status_code)
            json_error = isinstance(data, dict) and any(k in data for k in ("error", "detail", "message"))
        except orjson.JSONDecodeError:
            json_error = False
        return RawOutcome(
            response.status_code,
            json_error,
            f"HTTP {response.status_code}: {self._quote(raw[:1000].decode('utf-8', 'replace'))}",
        )


def _usage(value: object) -> Usage | None:
    if not isinstance(value, Mapping):
        return None
    return Usage.reported(value.get("prompt_tokens"), value.get("completion_tokens"), value.get("total_tokens"))


def _contract_checks(data: Mapping[str, Any], choice: Mapping[str, Any], message: Mapping[str, Any]) -> list[Check]:
    usage = data.get("usage")
    usage_ok = isinstance(usage, Mapping) and all(
        isinstance(usage.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    sums = (
        usage_ok
        and isinstance(usage, Mapping)
        and (usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"])
    )
    finish = choice.get("finish_reason")
    calls = message.get("tool_calls")
    return [
        Check("message.role is assistant", message.get("role") == "assistant", f"role={message.get('role')!r}"),
        Check(
            "message.content is a string",
            isinstance(message.get("content"), str) or (message.get("content") is None and bool(calls)),
            f"type={type(message.get('content')).__name__}",
        ),
        Check("finish_reason is known", isinstance(finish, str) and finish in FINISH, f"finish_reason={finish!r}"),
        Check(
            "usage has token counts",
            usage_ok,
            "usage present" if usage_ok else f"usage={usage!r}"[:120],
            required=False,
        ),
        Check(
            "usage total = prompt + completion",
            bool(sums),
            "" if sums else "totals do not add up",
            required=False,
            weight=0.5,
        ),
        Check(
            "object is chat.completion",
            data.get("object") == "chat.completion",
            f"object={data.get('object')!r}",
            required=False,
            weight=0.0,
        ),
    ]


def _raise_if_filtered(result: ChatResult) -> None:
    if result.finish_reason == "content_filter":
        raise ProviderError(
            ErrorCategory.CONTENT_FILTERED,
            f"a benign probe was filtered (finish_reason={result.raw_finish_reason})",
            status=result.status,
        )
