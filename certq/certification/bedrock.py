"""Adapter for AWS Bedrock Runtime Converse/ConverseStream: botocore signs (SigV4) and decodes event streams,
httpx carries the bytes so calls are async, cancellable and timed exactly; no SDK retries."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import quote

import botocore.session
import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.eventstream import EventStreamBuffer, ParserError

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
from certq.certification.classify import classify_bedrock, classify_transport, parse_retry_after
from certq.certification.config import RunConfig
from certq.certification.errors import ErrorCategory, ProviderError
from certq.certification.limits import (
    ACCEPT_ENCODING,
    StreamMeter,
    decoded_chunks,
    loads,
    quote_endpoint,
    read_body,
    stream_deadline,
)
from certq.certification.metrics import RunRecorder
from certq.certification.redaction import Redactor
from certq.certification.tool_wire import (
    converse_messages,
    converse_tool_call,
    converse_tool_config,
    schema_tool,
    structured_from_tool,
)
from certq.certification.transport import transport_for
from certq.egress import EgressRefused

FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "tool_use": "tool_calls",
}
STOP_REASONS = frozenset({*FINISH, "malformed_model_output", "malformed_tool_use"})
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")


def profile_prefix(region: str) -> str | None:
    """The cross-region inference-profile prefix of a region (`us-east-1` -> `us.`), if it has one."""
    if region.startswith("us-gov-"):
        return "us-gov."
    for start, prefix in (("us-", "us."), ("eu-", "eu."), ("ap-", "apac.")):
        if region.startswith(start):
            return prefix
    return None


def needs_no_profile(model_id: str) -> bool:
    return model_id.startswith("arn:") or model_id.startswith(PROFILE_PREFIXES)


class BedrockProvider:
    """Converse and ConverseStream; on "use an inference profile" it retries once with the region's profile id."""

    name = "bedrock"

    def __init__(self, endpoint: ModelEndpoint, recorder: RunRecorder, redact: Redactor, config: RunConfig) -> None:
        if not _REGION.match(endpoint.region):
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"{endpoint.region!r} is not an AWS region name")
        base = endpoint.target_url
        try:
            url = httpx.URL(base)
        except httpx.InvalidURL as exc:
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"invalid Bedrock endpoint URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ProviderError(ErrorCategory.CONFIG_ERROR, f"invalid Bedrock endpoint URL: {base}")
        self._base = base.rstrip("/")
        self._endpoint = endpoint
        self._recorder = recorder
        self._redact = redact
        self._config = config
        self._limits = config.limits
        self.model_id = endpoint.api_model_id
        self._credentials: ReadOnlyCredentials | None = None
        self._credentials_lock = asyncio.Lock()
        self._client = httpx.AsyncClient(
            headers={"Accept-Encoding": ACCEPT_ENCODING},
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

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _signed_headers(self, url: str, body: bytes) -> dict[str, str]:
        # The headers botocore's own client sends (no Accept; identity encoding keeps event frames raw).
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if self._endpoint.api_key:  # a Bedrock API key (bearer auth) instead of IAM credentials
            return headers | {"Authorization": f"Bearer {self._endpoint.api_key}"}
        async with self._credentials_lock:
            credentials = self._credentials
            if credentials is None:
                resolved = await asyncio.to_thread(_resolve_credentials)
                self._redact.add(resolved.secret_key)
                self._redact.add(resolved.token)
                credentials = self._credentials = resolved
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, "bedrock", self._endpoint.region).add_auth(request)
        return dict(request.headers.items())

    def _url(self, operation: str) -> str:
        return f"{self._base}/model/{quote(self.model_id, safe='')}/{operation}"

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": converse_messages(request.messages),
            "inferenceConfig": {"maxTokens": request.max_tokens},
        }
        if request.system is not None:
            body["system"] = [{"text": request.system}]
        if request.temperature is not None:
            body["inferenceConfig"]["temperature"] = request.temperature
        if request.stop:
            body["inferenceConfig"]["stopSequences"] = list(request.stop)
        config = converse_tool_config(request)
        if config is not None:
            body["toolConfig"] = config
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await self._call(request, stream=False)

    async def stream(self, request: ChatRequest) -> ChatResult:
        return await self._call(request, stream=True)

    async def _call(self, request: ChatRequest, stream: bool) -> ChatResult:
        try:
            return await self._once(request, stream)
        except ProviderError as error:
            prefix = profile_prefix(self._endpoint.region)
            profile_needed = error.category is ErrorCategory.CONFIG_ERROR and (error.code or "").lower().startswith(
                "validationexception"
            )
            if not profile_needed or prefix is None or needs_no_profile(self.model_id):
                raise
            self.model_id = prefix + self.model_id  # the model only runs through a cross-region inference profile
            return await self._once(request, stream)

    async def _once(self, request: ChatRequest, stream: bool) -> ChatResult:
        body = orjson.dumps(self._body(request))
        url = self._url("converse-stream" if stream else "converse")
        headers = await self._signed_headers(url, body)
        started = time.perf_counter()
        self._recorder.on_request()
        try:
            async with asyncio.timeout(self._config.request_deadline_s):
                if stream:
                    result = await self._read_stream(url, body, headers, started)
                else:
                    async with self._client.stream("POST", url, content=body, headers=headers) as response:
                        self._recorder.on_status(response.status_code)
                        raw = await read_body(response, self._limits)
                    result = self._parse_converse(response, raw, time.perf_counter() - started)
                if request.response_schema is not None:
                    structured_from_tool(result, schema_tool(request.response_schema.name))
                return result
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
            raise ProviderError(classify_transport(exc), self._redact(f"{type(exc).__name__}: {exc}")) from None

    def _error(self, response: httpx.Response, body: bytes) -> ProviderError:
        code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0] or None
        message = ""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            message = str(data.get("message") or data.get("Message") or "")
            code = code or str(data.get("__type") or data.get("code") or "").rsplit("#", 1)[-1] or None
        if not message:
            message = body[:1000].decode("utf-8", "replace")
        category = classify_bedrock(code, response.status_code, message)
        return ProviderError(
            category,
            self._redact(f"HTTP {response.status_code} {self._quote(code or '')}: {self._quote(message)}"),
            status=response.status_code,
            code=code,
            retry_after_s=parse_retry_after(response.headers),
        )

    def _quote(self, text: str) -> str:
        return quote_endpoint(text, self._redact, self._limits.max_error_chars)

    def _parse_converse(self, response: httpx.Response, raw: bytes, latency_s: float) -> ChatResult:
        if response.status_code >= 300:
            raise self._error(response, raw)
        try:
            data = loads(raw, self._limits, response.status_code)
        except orjson.JSONDecodeError:
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR, "Converse answer is not JSON", status=response.status_code
            ) from None
        output = data.get("output") if isinstance(data, dict) else None
        message = output.get("message") if isinstance(output, dict) else None
        if not isinstance(message, dict):
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR, "Converse answer has no output.message", status=response.status_code
            )
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        text = "".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
        stop = data.get("stopReason")
        metrics = data.get("metrics")
        latency_ms = metrics.get("latencyMs") if isinstance(metrics, dict) else None
        calls = [
            converse_tool_call(b["toolUse"].get("toolUseId"), b["toolUse"].get("name"), b["toolUse"].get("input"))
            for b in blocks
            if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)
        ]
        result = ChatResult(
            text=text,
            finish_reason=map_finish_reason(stop if isinstance(stop, str) else None, FINISH),
            raw_finish_reason=stop if isinstance(stop, str) else None,
            usage=_usage(data.get("usage")),
            model=None,
            status=response.status_code,
            latency_s=latency_s,
            content_type=response.headers.get("content-type", ""),
            server_latency_ms=float(latency_ms) if isinstance(latency_ms, int | float) else None,
            tool_calls=calls,
        )
        result.contract = _contract_checks(data, message, blocks)
        _raise_if_filtered(result)
        return result

    async def _read_stream(self, url: str, body: bytes, headers: dict[str, str], started: float) -> ChatResult:
        idle = self._config.stream_idle_timeout_s
        timeout = httpx.Timeout(
            connect=self._config.connect_timeout_s, read=idle, write=idle, pool=self._config.connect_timeout_s
        )
        async with self._client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            self._recorder.on_status(response.status_code)
            if response.status_code >= 300:
                raise self._error(response, await read_body(response, self._limits))
            content_type = response.headers.get("content-type", "")
            if "application/vnd.amazon.eventstream" not in content_type:
                raise ProviderError(
                    ErrorCategory.PROTOCOL_ERROR,
                    f"ConverseStream answered {self._quote(content_type)!r}",
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
            uses: dict[int, list[str]] = {}  # content block index -> [toolUseId, name, input so far]
            buffer = EventStreamBuffer()
            meter = StreamMeter(self._limits, response.status_code, "event frame")
            pending = 0  # bytes of the frame not yet complete
            try:
                async with stream_deadline(self._limits, response.status_code):
                    async for data in decoded_chunks(response, self._limits):
                        meter.add(len(data))
                        pending += len(data)
                        meter.check_pending(pending)
                        buffer.add_data(data)
                        for message in buffer:
                            pending -= message.prelude.total_length
                            self._apply_event(
                                result, message.headers, message.payload, time.perf_counter() - started, parts, uses
                            )
            except ParserError as exc:
                raise ProviderError(
                    ErrorCategory.PROTOCOL_ERROR,
                    f"undecodable event stream: {self._quote(str(exc))}",
                    status=response.status_code,
                ) from None
            result.text = "".join(parts)
            result.tool_calls = [ToolCall(name, arguments, id_) for id_, name, arguments in uses.values()]
            result.latency_s = time.perf_counter() - started
        if result.raw_finish_reason is None:
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR,
                f"event stream ended after {result.chunks} events without messageStop",
                status=result.status,
            )
        _raise_if_filtered(result)
        return result

    def _apply_event(
        self,
        result: ChatResult,
        headers: dict[str, Any],
        payload: bytes,
        now: float,
        parts: list[str],
        uses: dict[int, list[str]],
    ) -> None:
        kind = headers.get(":message-type")
        try:
            data = loads(payload, self._limits, result.status) if payload else {}
        except orjson.JSONDecodeError:
            raise ProviderError(
                ErrorCategory.PROTOCOL_ERROR, "event payload is not JSON", status=result.status
            ) from None
        if kind in ("exception", "error"):
            code = headers.get(":exception-type") or headers.get(":error-code")
            message = (data.get("message") if isinstance(data, dict) else None) or headers.get(":error-message") or ""
            raise ProviderError(
                classify_bedrock(str(code), None, str(message)),
                self._redact(f"error inside the stream: {self._quote(str(code))}: {self._quote(str(message))}"),
                status=result.status,
                code=str(code),
            )
        if not isinstance(data, dict):
            raise ProviderError(ErrorCategory.PROTOCOL_ERROR, "event payload is not an object", status=result.status)
        event = headers.get(":event-type")
        result.chunks += 1
        if result.first_chunk_s is None:
            result.first_chunk_s = now
        index = data.get("contentBlockIndex")
        if event == "contentBlockStart":
            start = data.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict) and isinstance(index, int):
                uses[index] = [str(use.get("toolUseId") or ""), str(use.get("name") or ""), ""]
        elif event == "contentBlockDelta":
            delta = data.get("delta")
            use = delta.get("toolUse") if isinstance(delta, dict) else None
            if isinstance(use, dict) and isinstance(index, int) and index in uses:
                piece = use.get("input")
                uses[index][2] += piece if isinstance(piece, str) else ""
            text = delta.get("text") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                result.content_chunks += 1
                result.last_content_s = now
                if result.ttft_s is None:
                    result.ttft_s = now
        elif event == "messageStop":
            stop = data.get("stopReason")
            if isinstance(stop, str):
                result.raw_finish_reason = stop
                result.finish_reason = map_finish_reason(stop, FINISH)
            result.done_marker = True
        elif event == "metadata":
            usage = _usage(data.get("usage"))
            if usage is not None:
                result.usage = usage
                result.usage_in_stream = True
            metrics = data.get("metrics")
            latency_ms = metrics.get("latencyMs") if isinstance(metrics, dict) else None
            if isinstance(latency_ms, int | float):
                result.server_latency_ms = float(latency_ms)

    async def send_invalid(self) -> RawOutcome:
        """A Converse request with a wrongly typed temperature: Bedrock must answer 400 ValidationException."""
        body = orjson.dumps(
            {
                "messages": [{"role": "user", "content": [{"text": "Say hi."}]}],
                "inferenceConfig": {"maxTokens": 8, "temperature": "hot"},
            }
        )
        url = self._url("converse")
        headers = await self._signed_headers(url, body)
        self._recorder.on_request()
        try:
            async with asyncio.timeout(self._config.request_deadline_s):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    self._recorder.on_status(response.status_code)
                    raw = await read_body(response, self._limits)
        except (httpx.HTTPError, OSError, TimeoutError, EgressRefused) as exc:
            self._recorder.on_status(None)
            return RawOutcome(None, False, f"no answer: {type(exc).__name__}")
        try:
            data = loads(raw, self._limits, response.status_code)
            json_error = isinstance(data, dict) and ("message" in data or "Message" in data)
        except orjson.JSONDecodeError:
            json_error = False
        code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
        return RawOutcome(response.status_code, json_error, f"HTTP {response.status_code} {self._quote(code)}")


def _resolve_credentials() -> ReadOnlyCredentials:
    """The standard AWS chain (env, profile files, SSO, container/instance roles), frozen for signing."""
    credentials = botocore.session.Session().get_credentials()
    if credentials is None:
        raise ProviderError(
            ErrorCategory.AUTH_ERROR, "no AWS credentials found in the standard chain (NoCredentialsError)"
        )
    return credentials.get_frozen_credentials()


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage.reported(value.get("inputTokens"), value.get("outputTokens"), value.get("totalTokens"))


def _contract_checks(data: dict[str, Any], message: dict[str, Any], blocks: list[Any]) -> list[Check]:
    usage = data.get("usage")
    usage_ok = isinstance(usage, dict) and all(
        isinstance(usage.get(k), int) for k in ("inputTokens", "outputTokens", "totalTokens")
    )
    sums = usage_ok and isinstance(usage, dict) and usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    stop = data.get("stopReason")
    return [
        Check("output.message.role is assistant", message.get("role") == "assistant", f"role={message.get('role')!r}"),
        Check(
            "content is a list of text blocks",
            bool(blocks) and all(isinstance(b, dict) for b in blocks),
            f"{len(blocks)} blocks",
        ),
        Check("stopReason is known", stop in STOP_REASONS, f"stopReason={stop!r}"),
        Check(
            "usage has token counts",
            usage_ok,
            "usage present" if usage_ok else f"usage={usage!r}"[:120],
            required=False,
        ),
        Check(
            "usage total = input + output",
            bool(sums),
            "" if sums else "totals do not add up",
            required=False,
            weight=0.5,
        ),
        Check("metrics.latencyMs present", isinstance(data.get("metrics"), dict), "", required=False, weight=0.0),
    ]


def _raise_if_filtered(result: ChatResult) -> None:
    if result.finish_reason == "content_filter":
        raise ProviderError(
            ErrorCategory.CONTENT_FILTERED,
            f"a benign probe was filtered (stopReason={result.raw_finish_reason})",
            status=result.status,
        )
