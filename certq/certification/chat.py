"""The provider-neutral shape of one chat call: what probes send and what adapters give back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from certq.certification.capabilities import Capabilities

Provider = Literal["openai", "bedrock"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]


@dataclass(frozen=True)
class ModelEndpoint:
    """One deployment to certify. `api_key` is the secret itself (resolved by the caller), never logged.

    openai: `base_url` is the API root ending in `/v1`; bedrock: `base_url` overrides the regional endpoint.
    """

    provider: Provider
    api_model_id: str
    region: str = "local"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    served_model: str | None = None  # the name answers must report, where it is not api_model_id
    capabilities: Capabilities = field(default_factory=Capabilities)  # probed beyond the chat baseline

    @property
    def target_url(self) -> str:
        """Where requests go: the base URL, else (Bedrock) the region's runtime endpoint."""
        if self.base_url is None and self.provider == "bedrock":
            return f"https://bedrock-runtime.{self.region}.amazonaws.com"
        return self.base_url or ""


@dataclass(frozen=True)
class ToolSpec:
    """A function the model is offered: `parameters` is its JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model made. `arguments` is the raw JSON text as sent (Converse sends an object: serialised)."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class ResponseSchema:
    """Structured output: the answer must be JSON valid against `schema`. `strict` asks OpenAI's strict mode,
    which accepts only its schema subset, so it is set for certq's own schema, not for a declared one."""

    name: str
    schema: Mapping[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class Message:
    """A turn. An assistant turn may carry the calls it made; a `tool` turn answers the call `tool_call_id`."""

    role: Literal["user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None  # the function a `tool` turn answers (Converse needs none; logs do)


ToolChoice = str  # "auto", "required", "none", or the name of the one function the model must call


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int = 256
    temperature: float | None = 0.0
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    response_schema: ResponseSchema | None = None

    @classmethod
    def ask(cls, prompt: str, **kwargs: Any) -> ChatRequest:
        return cls(messages=(Message("user", prompt),), **kwargs)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def reported(cls, prompt: object, completion: object, total: object) -> Usage | None:
        """Usage as an answer reported it; None when absent or implausible (not counts from 0 to
        MAX_USAGE_TOKENS): the probes size prompts from these numbers, so a hostile endpoint must not choose them."""
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        if not (_is_count(prompt) and _is_count(completion)) or (isinstance(total, int) and not _is_count(total)):
            return None
        return cls(prompt, completion, total if isinstance(total, int) else prompt + completion)


MAX_USAGE_TOKENS = 100_000_000
"""Far above any context window (2,000,000 at most may be declared), far below anything that overflows."""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_USAGE_TOKENS


@dataclass
class Check:
    """One assertion inside a probe; `weight` 0 makes it informational."""

    name: str
    passed: bool
    detail: str = ""
    weight: float = 1.0
    required: bool = True  # a probe passes only when all its required checks pass
    credit: float | None = None  # partial credit in [0, 1]; None means 1 if passed else 0

    @property
    def score(self) -> float:
        if self.credit is not None:
            return self.credit
        return 1.0 if self.passed else 0.0


@dataclass
class ChatResult:
    """A successful call, normalised. Times are seconds from sending the request."""

    text: str
    finish_reason: FinishReason | None
    raw_finish_reason: str | None
    usage: Usage | None
    model: str | None
    status: int
    latency_s: float
    streamed: bool = False
    ttft_s: float | None = None  # time to the first chunk with content
    first_chunk_s: float | None = None
    last_content_s: float | None = None
    chunks: int = 0
    content_chunks: int = 0
    done_marker: bool = False
    usage_in_stream: bool = False
    content_type: str = ""
    server_latency_ms: float | None = None
    contract: list[Check] = field(default_factory=list)  # the provider's response-shape checks
    tool_calls: list[ToolCall] = field(default_factory=list)
    structured_via: str | None = None  # how a response_schema was honoured: "response_format" or "tool"


@dataclass(frozen=True)
class RawOutcome:
    """What a deliberately invalid request got back (never classified, never retried)."""

    status: int | None
    json_error: bool
    detail: str


class ChatProvider(Protocol):
    """One adapter per provider family; probes only see this."""

    name: str

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def stream(self, request: ChatRequest) -> ChatResult: ...

    async def send_invalid(self) -> RawOutcome: ...

    async def aclose(self) -> None: ...


def map_finish_reason(raw: str | None, table: Mapping[str, FinishReason]) -> FinishReason | None:
    if raw is None:
        return None
    return table.get(raw, "other")
