"""The probe battery: each probe sends a few closed-form requests and turns the answers into checks."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from certq.certification.capabilities import Capabilities
from certq.certification.chat import ChatProvider, ChatRequest, ChatResult, Check, Message, RawOutcome
from certq.certification.config import RunConfig
from certq.certification.errors import ProviderError
from certq.certification.metrics import output_tokens_per_s, percentile

PONG_PROMPT = "Reply with exactly the word: pong"


Call = Callable[[Callable[[], Awaitable[ChatResult]]], Awaitable[ChatResult]]


class ProbeRun:
    """What a probe may do: chat/stream through the run's retry policy (or `once`, without it), read the
    declared capabilities, and leave an excerpt for the report."""

    def __init__(
        self,
        provider: ChatProvider,
        config: RunConfig,
        call: Call,
        shared: dict[str, ChatResult],
        once: Call | None = None,
        capabilities: Capabilities | None = None,
        on_transient: Callable[[ProviderError], None] | None = None,
        on_raw: Callable[[], None] | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self.shared = shared
        self.capabilities = capabilities or Capabilities()
        self.excerpt: str | None = None
        self._call = call
        self._once = once or call
        self._on_transient = on_transient
        self._on_raw = on_raw

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await self._call(lambda: self.provider.chat(request))

    async def once(self, request: ChatRequest, stream: bool = False) -> ChatResult:
        """One try, no retries, and an error is not a transient failure of the run: for requests whose error
        is the answer being graded (an over-long prompt, a parameter the endpoint may not support)."""
        send = self.provider.stream if stream else self.provider.chat
        return await self._once(lambda: send(request))

    def transient(self, error: ProviderError) -> None:
        """A `once` try failed transiently after all and is tried again: count it as the retry it is."""
        if self._on_transient is not None:
            self._on_transient(error)

    async def stream(self, request: ChatRequest) -> ChatResult:
        return await self._call(lambda: self.provider.stream(request))

    async def send_invalid(self) -> RawOutcome:
        if self._on_raw is not None:
            self._on_raw()
        return await self.provider.send_invalid()

    def ask(self, prompt: str, **kwargs: object) -> ChatRequest:
        kwargs.setdefault("max_tokens", self.config.max_tokens)
        return ChatRequest.ask(prompt, **kwargs)

    def note(self, text: str) -> None:
        self.excerpt = "".join(c if c.isprintable() else "?" for c in text[:200])


ProbeFn = Callable[[ProbeRun], Awaitable[list[Check]]]


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    weight: float
    critical: bool
    run: ProbeFn
    pass_score: float = 1.0
    quality: bool = False
    phase: int = 2  # 1: gate, alone; 2: concurrent; 3: after the rest (stress)
    requires: tuple[str, ...] = field(default=())


def nonce() -> str:
    """Unique text in performance prompts so prompt caches cannot flatter latency."""
    return secrets.token_hex(4)


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


async def connectivity(run: ProbeRun) -> list[Check]:
    result = await run.chat(run.ask(PONG_PROMPT))
    run.shared["connectivity"] = result
    run.note(result.text)
    return [
        Check("answer received and parsed", True, f"HTTP {result.status}"),
        Check("answer has text", bool(result.text.strip()), _short(result.text)),
        Check("answer says pong", "pong" in result.text.lower(), _short(result.text), required=False, weight=0.0),
    ]


async def response_contract(run: ProbeRun) -> list[Check]:
    """Shape of the connectivity answer (no request of its own)."""
    return list(run.shared["connectivity"].contract)


async def streaming(run: ProbeRun) -> list[Check]:
    result = await run.stream(run.ask(PONG_PROMPT))
    run.note(result.text)
    return [
        Check(
            "streamed content type",
            "event-stream" in result.content_type or "eventstream" in result.content_type,
            result.content_type,
        ),
        Check("at least one content chunk", result.content_chunks >= 1, f"{result.content_chunks} content chunks"),
        Check("joined text is not empty", bool(result.text.strip()), _short(result.text)),
        Check("ends with a finish reason", result.raw_finish_reason is not None, f"{result.raw_finish_reason!r}"),
        Check(
            "ends with an end-of-stream marker",
            result.done_marker,
            "" if result.done_marker else "missing",
            required=False,
            weight=0.5,
        ),
        Check("usage reported in the stream", result.usage_in_stream, "", required=False, weight=0.0),
    ]


QA: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("17 + 25", "What is 17 + 25? Reply with just the number.", lambda t: re.search(r"\b42\b", t) is not None),
    ("capital of France", "What is the capital of France? Reply with one word.", lambda t: "paris" in t.lower()),
    ("exact OK", "Reply with exactly OK and nothing else.", lambda t: normalise(t) == "ok"),
)


async def deterministic_qa(run: ProbeRun) -> list[Check]:
    answers = await asyncio.gather(*(run.chat(run.ask(prompt)) for _, prompt, _ in QA))
    run.note(" | ".join(a.text.strip()[:40] for a in answers))
    return [
        Check(name, ok(a.text), _short(a.text), required=False) for (name, _, ok), a in zip(QA, answers, strict=True)
    ]


JSON_PROMPT = (
    'Return only a JSON object, with no prose, with the keys "name" (a string) and "age" (an integer) '
    "describing Alice, who is 30 years old."
)


def parse_json_answer(text: str) -> object:
    """The JSON object in an answer, tolerating ``` fences and prose around it; raises ValueError."""
    body = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the answer")
        body = body[start : end + 1]
    return json.loads(body)


async def json_output(run: ProbeRun) -> list[Check]:
    result = await run.chat(run.ask(JSON_PROMPT))
    run.note(result.text)
    try:
        data = parse_json_answer(result.text)
    except ValueError as exc:
        return [
            Check("answer is a JSON object", False, f"{exc}: {_short(result.text)}", weight=2.0),
            Check("keys and types", False, "", weight=1.0),
            Check("values", False, "", weight=1.0),
        ]
    is_object = isinstance(data, dict)
    obj = data if isinstance(data, dict) else {}
    typed = (
        isinstance(obj.get("name"), str) and isinstance(obj.get("age"), int) and not isinstance(obj.get("age"), bool)
    )
    values = typed and str(obj["name"]).strip().lower() == "alice" and obj["age"] == 30
    return [
        Check("answer is a JSON object", is_object, type(data).__name__, weight=2.0),
        Check("keys and types", typed, _short(json.dumps(obj))),
        Check("values", values, _short(json.dumps(obj))),
    ]


MULTITURN_SYSTEM = (
    "You are a test assistant. The password is ZEBRA. When the user asks for the code word, reply with the "
    "password only."
)
MULTITURN = (
    Message("user", "Hi there."),
    Message("assistant", "Hello! How can I help you today?"),
    Message("user", "What is the code word? Reply with that single word only."),
)


async def system_and_multiturn(run: ProbeRun) -> list[Check]:
    result = await run.chat(ChatRequest(messages=MULTITURN, system=MULTITURN_SYSTEM, max_tokens=run.config.max_tokens))
    run.note(result.text)
    return [Check("answer uses the system prompt", "zebra" in result.text.lower(), _short(result.text))]


LIMIT_TOKENS = 16


async def generation_controls(run: ProbeRun) -> list[Check]:
    limited, stopped = await asyncio.gather(
        run.chat(run.ask("Count from 1 to 200, separated by spaces.", max_tokens=LIMIT_TOKENS)),
        run.chat(run.ask("Count from 1 to 10, separated by spaces.", stop=("7",))),
    )
    run.note(f"{limited.text[:60]} | {stopped.text[:60]}")
    used = limited.usage.completion_tokens if limited.usage else None
    return [
        Check(
            "max_tokens ends with finish_reason length",
            limited.finish_reason == "length",
            f"finish={limited.raw_finish_reason!r}",
        ),
        Check(
            "max_tokens bounds the completion",
            used is not None and used <= LIMIT_TOKENS + 2,
            f"completion_tokens={used}",
            required=used is not None,
            weight=1.0 if used is not None else 0.0,
        ),
        Check("stop sequence is honoured", "7" not in stopped.text, _short(stopped.text)),
        Check(
            "stop sequence ends with finish_reason stop",
            stopped.finish_reason == "stop",
            f"finish={stopped.raw_finish_reason!r}",
        ),
    ]


def linear_credit(value: float, good: float, bad: float) -> float:
    """1 at `good`, 0 at `bad`, linear between (works for either direction)."""
    if good == bad:
        return 1.0 if value == good else 0.0
    return max(0.0, min(1.0, (value - bad) / (good - bad)))


async def performance(run: ProbeRun) -> list[Check]:
    latencies: list[float] = []
    for _ in range(run.config.performance_requests):
        result = await run.chat(run.ask(f"{PONG_PROMPT}. Request id: {nonce()}."))
        latencies.append(result.latency_s)
    streamed = await run.stream(
        run.ask(f"Count from 1 to 100, separated by spaces. Request id: {nonce()}.", max_tokens=64)
    )
    p95 = percentile(latencies, 95) or 0.0
    checks = [
        Check(
            "p95 latency",
            True,
            f"{p95 * 1000:.0f} ms over {len(latencies)} requests",
            required=False,
            credit=linear_credit(p95, 2.0, 10.0),
        )
    ]
    if streamed.ttft_s is not None:
        checks.append(
            Check(
                "time to first token",
                True,
                f"{streamed.ttft_s * 1000:.0f} ms",
                required=False,
                credit=linear_credit(streamed.ttft_s, 1.0, 5.0),
            )
        )
    speed = output_tokens_per_s(streamed)
    if speed is not None:
        checks.append(
            Check(
                "output tokens/s",
                True,
                f"{speed[0]:.1f} tok/s ({speed[1]})",
                required=False,
                credit=linear_credit(speed[0], 30.0, 5.0),
            )
        )
    else:
        checks.append(
            Check("output tokens/s", True, "not measurable (fewer than 2 content chunks)", required=False, weight=0.0)
        )
    for check in checks:
        check.passed = check.score >= 0.5
    run.note(f"p95 {p95 * 1000:.0f} ms")
    return checks


async def robustness(run: ProbeRun) -> list[Check]:
    invalid = await run.send_invalid()
    if invalid.status is not None and 400 <= invalid.status < 500:
        credit = 1.0 if invalid.json_error else 0.5
    elif invalid.status is not None and invalid.status >= 500 and invalid.json_error:
        credit = 0.5  # rejected, but reported as a server fault (llama-cpp-python does this)
    else:
        credit = 0.0
    burst = await asyncio.gather(
        *(run.chat(run.ask(f"{PONG_PROMPT}. Request id: {nonce()}.")) for _ in range(run.config.burst_size))
    )
    answered = sum(1 for r in burst if r.text.strip())
    run.note(invalid.detail)
    if invalid.status is None:
        summary = invalid.detail
    else:
        body = "with an error body" if invalid.json_error else "without an error body"
        summary = f"HTTP {invalid.status} {body}"
        if credit < 1.0 and invalid.status >= 500:
            summary += " (a server fault, not a 4xx: half credit)" if credit else " (not a 4xx)"
        elif credit < 1.0:
            summary += " (half credit: no JSON error body)"
    return [
        Check("invalid request gets a 4xx error body", credit >= 1.0, summary, required=False, credit=credit),
        Check(
            f"burst of {len(burst)} concurrent requests all answered",
            answered == len(burst),
            f"{answered}/{len(burst)} answered",
            required=False,
        ),
    ]


SUITE: Sequence[ProbeSpec] = (
    ProbeSpec("connectivity", 15, True, connectivity, phase=1),
    ProbeSpec("response_contract", 10, True, response_contract, requires=("connectivity",)),
    ProbeSpec("streaming", 15, True, streaming),
    ProbeSpec("deterministic_qa", 15, False, deterministic_qa, pass_score=0.5, quality=True),
    ProbeSpec("json_output", 10, False, json_output, quality=True),
    ProbeSpec("system_and_multiturn", 10, False, system_and_multiturn, quality=True),
    ProbeSpec("generation_controls", 10, False, generation_controls),
    ProbeSpec("performance", 10, False, performance, pass_score=0.5),
    ProbeSpec("robustness", 5, False, robustness, pass_score=0.5, phase=3),
)
SUITE_VERSION = "2026.11.1"
