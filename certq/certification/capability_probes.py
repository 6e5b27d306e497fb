"""Probes for what a deployment declares beyond chat: tool calling, structured output, context window, token counts.

Each probe is closed-form: the checks compare answers with values the probe chose (a nonce, a schema, token counts
the endpoint itself reported). Capability probes weigh 0 in the score, so the score means the same for every
model; a declared capability that fails changes the status instead (see `capability_outcomes`).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from certq.certification.capabilities import CAPABILITY_NAMES, Capabilities, CapabilityName
from certq.certification.chat import ChatRequest, ChatResult, Check, Message, ResponseSchema, ToolCall, ToolSpec
from certq.certification.errors import ErrorCategory, ProviderError
from certq.certification.probes import ProbeFn, ProbeRun, ProbeSpec

CAPABILITY_PHASE = 4  # after the battery: big prompts must not disturb its latency samples

# ---- tools ----

SECRET_TOOL = ToolSpec(
    "get_secret_number",
    "Returns the secret number stored under a key. Nobody can know the number without calling this function.",
    {
        "type": "object",
        "properties": {"key": {"type": "string", "description": "The key the number is stored under."}},
        "required": ["key"],
        "additionalProperties": False,
    },
)
DECOY_TOOL = ToolSpec(
    "get_weather",
    "Returns today's weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TOOL_CALL_ID = "call_certq_1"  # used when an endpoint's call carries no id of its own
CAPABILITY_CORE: dict[CapabilityName, tuple[str, ...]] = {
    "tools": ("calls get_secret_number", "arguments parse as JSON", "arguments match the parameter schema"),
    "structuredOutput": ("answer validates against the schema",),
    "contextWindow": ("in-window prompt accepted", "in-window prompt not truncated"),
    # Declared by default, so it never fails a verdict outright: wrong counts are a warning.
    "tokenAccounting": (),
}
"""Per capability, the checks without which it is not offered at all: one failing makes the verdict FAILED."""


async def send(run: ProbeRun, request: ChatRequest, stream: bool = False) -> ChatResult | ProviderError:
    """A request that uses a capability's parameters. A refusal (a 4xx, or a 5xx twice: llama-cpp-python answers
    a parameter it does not know with 500) is returned for the probe to grade, not retried five times; other
    transient errors take the run's retry path, and final ones end the run as anywhere else."""
    first_500: ProviderError | None = None
    for attempt in range(2):
        try:
            answer = await run.once(request, stream)
        except ProviderError as error:
            if error.category is ErrorCategory.INVALID_REQUEST:
                return error
            if error.category is ErrorCategory.SERVER_ERROR:
                if attempt == 1:
                    return error
                first_500 = error
                continue
            if not error.retryable:
                raise
            run.transient(error)
            break
        if first_500 is not None:
            run.transient(first_500)  # the 500 was an overload after all, not a refusal
        return answer
    return await (run.stream(request) if stream else run.chat(request))


def refused(error: ProviderError, names: Sequence[str]) -> list[Check]:
    detail = f"refused: {error.message}"
    return [Check(name, False, detail if i == 0 else "refused") for i, name in enumerate(names)]


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def schema_problem(instance: Any, schema: Mapping[str, Any]) -> str | None:
    """None when `instance` is valid against `schema` (its own draft, else 2020-12), else the best error."""
    schema = dict(schema)
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError as exc:
        return f"the schema itself is invalid: {exc.message}"
    try:
        error = schema_errors.best_match(cls(schema).iter_errors(instance))
    except (RecursionError, ValueError, TypeError) as exc:
        return f"the answer cannot be checked against the schema ({type(exc).__name__})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where or '(root)'}: {error.message}"


MAX_GRADED_JSON_BYTES = 32 * 1024
"""Answers and tool arguments graded as JSON are at most this long: parsing and schema checks run on the
worker's event loop, and a probe's honest answer is a few hundred bytes."""


SCHEMA_CHECK_SECONDS = 5.0


async def checked_against(instance: Any, schema: Mapping[str, Any]) -> str | None:
    """schema_problem off the event loop, within SCHEMA_CHECK_SECONDS: a declared schema and an answer are
    bounded (certq.certification.capabilities, MAX_GRADED_JSON_BYTES), and this bounds what is left, so no
    schema and answer together stall the worker's other certifications."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(schema_problem, instance, schema), SCHEMA_CHECK_SECONDS)
    except TimeoutError:
        return f"the answer was not checked against the schema within {SCHEMA_CHECK_SECONDS:.0f} s"


def _parse_object(text: str) -> tuple[object, str | None]:
    if len(text) > MAX_GRADED_JSON_BYTES:
        return None, f"{len(text)} characters, over the {MAX_GRADED_JSON_BYTES} graded as JSON"
    try:
        return json.loads(text), None
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"not JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else exc}): {_short(text)}"
    except (RecursionError, ValueError) as exc:
        return None, f"not gradable JSON ({type(exc).__name__}): {_short(text)}"


async def tools(run: ProbeRun) -> list[Check]:
    key = f"k{secrets.token_hex(3)}"
    secret = str(100_000 + secrets.randbelow(900_000))
    prompt = (
        f"What is the secret number stored under the key {key!r}? Look it up with the available function, "
        "then reply with the number only."
    )
    offered = (DECOY_TOOL, SECRET_TOOL)
    first = await send(run, run.ask(prompt, tools=offered, tool_choice="auto"))
    if isinstance(first, ProviderError):
        run.note(first.message)
        return refused(first, (*CAPABILITY_CORE["tools"], "final answer uses the tool result"))
    names = [c.name for c in first.tool_calls]
    call = next((c for c in first.tool_calls if c.name == SECRET_TOOL.name), None)
    called = "called " + (", ".join(names) if names else f"no function (answered {_short(first.text)})")
    checks = [Check("calls get_secret_number", call is not None, called)]
    arguments, problem = _parse_object(call.arguments) if call is not None else (None, "no call")
    if problem is None and not isinstance(arguments, dict):
        problem = f"arguments are {type(arguments).__name__}, not an object"
    checks.append(Check("arguments parse as JSON", problem is None, problem or _short(call.arguments if call else "")))
    invalid = problem or await checked_against(arguments, SECRET_TOOL.parameters)
    checks.append(Check("arguments match the parameter schema", invalid is None, invalid or "valid"))
    asked = isinstance(arguments, dict) and arguments.get("key") == key
    shown = f"key={arguments.get('key')!r}" if isinstance(arguments, dict) else problem or ""
    checks.append(Check("arguments name the asked key", asked, shown))
    checks.append(
        Check(
            "finish reason is tool_calls",
            first.finish_reason == "tool_calls",
            f"finish={first.raw_finish_reason!r}",
            weight=0.5,
        )
    )
    if call is None:
        checks.append(Check("final answer uses the tool result", False, "not sent: no call to get_secret_number"))
        run.note(called)
        return checks
    echoed = ToolCall(call.name, call.arguments, call.id or TOOL_CALL_ID)
    result = json.dumps({"key": key, "secret_number": secret})
    conversation = (
        Message("user", prompt),
        Message("assistant", first.text, tool_calls=(echoed,)),
        Message("tool", result, tool_call_id=echoed.id, tool_name=echoed.name),
    )
    final = await send(run, ChatRequest(messages=conversation, max_tokens=run.config.max_tokens, tools=offered))
    if isinstance(final, ProviderError):
        run.note(final.message)
        return [*checks, *refused(final, ("final answer uses the tool result",))]
    run.note(f"{called} | {final.text}")
    checks.append(Check("final answer uses the tool result", secret in final.text, _short(final.text)))
    return checks


# ---- structured output ----

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PERSON_PROMPT = 'Return a JSON object describing Alice, who is 30 years old, with the keys "name" and "age".'


async def structured_output(run: ProbeRun) -> list[Check]:
    own = run.capabilities.output_schema
    schema: Mapping[str, Any]
    if own is None:
        schema, prompt, strict = PERSON_SCHEMA, PERSON_PROMPT, True
    else:
        schema, strict = own, False
        prompt = "Return a JSON object valid against this JSON schema, and nothing else: " + json.dumps(own)
    request = run.ask(prompt, response_schema=ResponseSchema("certq_answer", schema, strict=strict))
    answer = await send(run, request)
    if isinstance(answer, ProviderError):
        run.note(answer.message)
        return refused(answer, ("answer parses as JSON", "answer validates against the schema"))
    streamed = await send(run, request, stream=True)
    run.note(answer.text)
    data, problem = _parse_object(answer.text.strip())
    invalid = problem or await checked_against(data, schema)
    checks = [
        Check("answer parses as JSON", problem is None, problem or f"via {answer.structured_via}"),
        Check("answer validates against the schema", invalid is None, invalid or "valid"),
    ]
    if own is None:
        right = isinstance(data, dict) and str(data.get("name", "")).lower() == "alice" and data.get("age") == 30
        checks.append(Check("values are right", right, _short(answer.text)))
    if isinstance(streamed, ProviderError):
        return [*checks, *refused(streamed, ("streamed answer validates too",))]
    stream_data, stream_problem = _parse_object(streamed.text.strip())
    stream_invalid = stream_problem or await checked_against(stream_data, schema)
    checks.append(Check("streamed answer validates too", stream_invalid is None, stream_invalid or "valid"))
    return checks


# ---- context window ----

IN_WINDOW_SHARE = 0.6
IN_WINDOW_CEILING = 32_768  # tokens: the in-window prompt never costs more, however large the window
OVER_WINDOW_FACTOR = 1.1
OVERFLOW_CEILING = 262_144  # tokens: larger windows are not sent an over-window prompt (too costly)
CALIBRATION_LINES = 8  # small enough for a 512-token window even on a byte-level tokenizer
# The endpoint's own usage numbers size the long prompts, so they are bounded in bytes too: a filler line is
# 55-60 bytes, which no tokenizer makes fewer than MIN_TOKENS_PER_LINE tokens, and no prompt holds more than
# MAX_FILLER_LINES lines (about 2.4 MB), whatever the endpoint reports.
MIN_TOKENS_PER_LINE = 4.0
MAX_FILLER_LINES = 40_000
_CONTEXT_ERROR = re.compile(r"context|too long|too many tokens|maximum.{0,40}(length|tokens)|exceed", re.IGNORECASE)


def filler(lines: int, start: int = 1) -> str:
    return "\n".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(start, start + lines))


def _context_prompt(code: str, lines: int) -> str:
    return (
        f"Remember this: the vault code is {code}.\n{filler(lines)}\n"
        "What is the vault code mentioned at the very start? Reply with the code only."
    )


def _prompt_tokens(result: ChatResult) -> int | None:
    return result.usage.prompt_tokens if result.usage is not None else None


async def context_window(run: ProbeRun) -> list[Check]:
    window = run.capabilities.context_window
    assert window is not None  # only scheduled when declared
    code = f"{secrets.randbelow(9000) + 1000}-{secrets.token_hex(2).upper()}"
    bare = await send(run, run.ask(_context_prompt(code, 0), max_tokens=8))
    lined = await send(run, run.ask(_context_prompt(code, CALIBRATION_LINES), max_tokens=8))
    for answer in (bare, lined):
        if isinstance(answer, ProviderError):
            return refused(answer, ("in-window prompt accepted", "in-window prompt not truncated"))
    assert isinstance(bare, ChatResult) and isinstance(lined, ChatResult)
    base, calibrated = _prompt_tokens(bare), _prompt_tokens(lined)
    if base is None or calibrated is None or calibrated <= base:
        detail = f"prompt_tokens {base} for 0 lines, {calibrated} for {CALIBRATION_LINES}: cannot size the prompts"
        return [
            Check("in-window prompt accepted", False, detail),
            Check("in-window prompt not truncated", False, "not sent"),
        ]
    per_line = (calibrated - base) / CALIBRATION_LINES
    if per_line < MIN_TOKENS_PER_LINE:
        detail = f"prompt_tokens {base} for 0 lines, {calibrated} for {CALIBRATION_LINES}: {per_line:.2f} tokens a line"
        return [
            Check("in-window prompt accepted", False, f"implausible usage, cannot size the prompts: {detail}"),
            Check("in-window prompt not truncated", False, "not sent"),
        ]
    target = min(math.floor(IN_WINDOW_SHARE * window), IN_WINDOW_CEILING)
    lines = min(MAX_FILLER_LINES, max(1, math.floor((target - base) / per_line)))
    expected = base + lines * per_line
    checks: list[Check] = []
    long = await send(run, run.ask(_context_prompt(code, lines), max_tokens=16))
    if isinstance(long, ProviderError):
        checks.append(Check("in-window prompt accepted", False, f"~{expected:.0f} tokens refused: {long.message}"))
        checks.append(Check("in-window prompt not truncated", False, "refused"))
    else:
        got = _prompt_tokens(long)
        whole = got is not None and got >= 0.9 * expected
        checks.append(Check("in-window prompt accepted", True, f"{got} prompt tokens of a {window}-token window"))
        checks.append(Check("in-window prompt not truncated", whole, f"prompt_tokens={got}, expected ~{expected:.0f}"))
        checks.append(Check("fact at the start is recalled", code in long.text, _short(long.text)))
    run.note(f"{per_line:.1f} tokens/line; in-window ~{expected:.0f} tokens")
    if window > OVERFLOW_CEILING:
        checks.append(
            Check(
                "over-window prompt gets a 4xx context-length error",
                True,
                f"not sent: windows above {OVERFLOW_CEILING} tokens are not probed past their end",
                weight=0.0,
            )
        )
        return checks
    over = math.ceil((OVER_WINDOW_FACTOR * window + 32 - base) / per_line)
    if over > MAX_FILLER_LINES:
        detail = f"not sent: it would take {over} lines, over the {MAX_FILLER_LINES}-line prompt budget"
        checks.append(Check("over-window prompt gets a 4xx context-length error", True, detail, weight=0.0))
        return checks
    checks.extend(await _over_window(run, _context_prompt(code, over), window, base + over * per_line))
    return checks


async def _over_window(run: ProbeRun, prompt: str, window: int, expected: float) -> list[Check]:
    name = "over-window prompt gets a 4xx context-length error"
    try:
        answer = await run.once(run.ask(prompt, max_tokens=16))
    except ProviderError as error:
        status = error.status
        text = f"{error.code or ''} {error.message}"
        if status is not None and 400 <= status < 500 and status != 429 and _CONTEXT_ERROR.search(text):
            return [Check(name, True, f"~{expected:.0f} tokens: {error.message}")]
        if status is not None and 400 <= status < 500:
            return [Check(name, False, f"a 4xx, but not a context-length error: {error.message}", credit=0.5)]
        return [Check(name, False, f"~{expected:.0f} tokens: {error.category.value}: {error.message}")]
    got = _prompt_tokens(answer)
    if got is not None and got < window:
        why = f"silently truncated: HTTP {answer.status} with prompt_tokens={got} for a ~{expected:.0f}-token prompt"
    else:
        why = f"accepted ~{expected:.0f} tokens (prompt_tokens={got}) past a declared window of {window}"
    return [Check(name, False, why)]


# ---- token accounting ----

COUNT_PROMPT = "Count from 1 to 200, separated by spaces."
ACCOUNTING_MAX_TOKENS = 16
ACCOUNTING_LINES = 6


async def token_accounting(run: ProbeRun) -> list[Check]:
    short_request = run.ask(COUNT_PROMPT, max_tokens=ACCOUNTING_MAX_TOKENS)
    long_request = run.ask(f"{filler(ACCOUNTING_LINES)}\n{COUNT_PROMPT}", max_tokens=ACCOUNTING_MAX_TOKENS)
    short = await send(run, short_request)
    long = await send(run, long_request)
    streamed = await send(run, long_request, stream=True)
    for answer in (short, long, streamed):
        if isinstance(answer, ProviderError):
            return refused(answer, ("usage reported",))
    assert isinstance(short, ChatResult) and isinstance(long, ChatResult) and isinstance(streamed, ChatResult)
    run.note(" | ".join(f"{r.usage}" for r in (short, long, streamed)))
    if short.usage is None or long.usage is None:
        return [Check("usage reported", False, "an answer without usage")]
    growth = long.usage.prompt_tokens - short.usage.prompt_tokens
    answers = [short, long] + ([streamed] if streamed.usage_in_stream else [])
    over = [r.usage.completion_tokens for r in answers if r.usage and r.usage.completion_tokens > ACCOUNTING_MAX_TOKENS]
    sums = all(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens for r in answers if r.usage)
    checks = [
        Check("usage reported", True, f"prompt_tokens {short.usage.prompt_tokens} -> {long.usage.prompt_tokens}"),
        Check(
            "prompt_tokens grows with the prompt",
            growth >= 3 * ACCOUNTING_LINES,
            f"+{growth} tokens for {ACCOUNTING_LINES} more lines",
        ),
        Check(
            "completion_tokens never exceed max_tokens",
            not over,
            f"max_tokens {ACCOUNTING_MAX_TOKENS}" + (f", got {over}" if over else ""),
        ),
        Check("usage total = prompt + completion", sums, "" if sums else "totals do not add up"),
    ]
    checks.append(_stream_matches(long, streamed))
    return checks


def _stream_matches(plain: ChatResult, streamed: ChatResult) -> Check:
    name = "streamed usage equals non-streamed usage"
    if not streamed.usage_in_stream or streamed.usage is None or plain.usage is None:
        return Check(name, True, "not offered: the stream reports no usage", weight=0.0)
    same_prompt = streamed.usage.prompt_tokens == plain.usage.prompt_tokens
    # Completions may differ between two calls; only the same text must cost the same.
    same_text = streamed.text == plain.text
    same_completion = streamed.usage.completion_tokens == plain.usage.completion_tokens or not same_text
    detail = f"stream {streamed.usage.prompt_tokens}/{streamed.usage.completion_tokens}, "
    detail += f"plain {plain.usage.prompt_tokens}/{plain.usage.completion_tokens}"
    return Check(name, same_prompt and same_completion, detail + ("" if same_text else " (texts differ)"))


# ---- the suite and the verdict's capability lists ----


@dataclass(frozen=True)
class CapabilityProbe:
    """A capability's probe; `core` are the checks without which the capability is absent (the verdict FAILS)."""

    capability: CapabilityName
    spec: ProbeSpec
    core: tuple[str, ...]


def _spec(name: str, run: ProbeFn) -> ProbeSpec:
    return ProbeSpec(name, 0.0, False, run, phase=CAPABILITY_PHASE)


CAPABILITY_PROBES: dict[CapabilityName, CapabilityProbe] = {
    "tools": CapabilityProbe("tools", _spec("capability_tools", tools), CAPABILITY_CORE["tools"]),
    "structuredOutput": CapabilityProbe(
        "structuredOutput",
        _spec("capability_structured_output", structured_output),
        CAPABILITY_CORE["structuredOutput"],
    ),
    "contextWindow": CapabilityProbe(
        "contextWindow", _spec("capability_context_window", context_window), CAPABILITY_CORE["contextWindow"]
    ),
    "tokenAccounting": CapabilityProbe(
        "tokenAccounting", _spec("capability_token_accounting", token_accounting), CAPABILITY_CORE["tokenAccounting"]
    ),
}


def capability_suite(capabilities: Capabilities) -> list[CapabilityProbe]:
    """The probes a run adds for what the registration declares, in declaration order."""
    return [CAPABILITY_PROBES[name] for name in capabilities.declared()]


@dataclass(frozen=True)
class CapabilityOutcome:
    """verified / failed / not declared, and which declared ones lack a core check (`absent`)."""

    verified: tuple[CapabilityName, ...]
    failed: tuple[CapabilityName, ...]
    not_declared: tuple[CapabilityName, ...]
    absent: tuple[CapabilityName, ...]

    def to_json(self) -> dict[str, list[str]]:
        return {"verified": list(self.verified), "failed": list(self.failed), "notDeclared": list(self.not_declared)}


def capability_outcomes(capabilities: Capabilities, results: Mapping[str, Sequence[Check] | None]) -> CapabilityOutcome:
    """`results` maps a probe name to its checks, or None when it did not run or errored: that is not verified.

    A declared capability is verified when every weighted check of its probe passed; it is absent (the verdict
    FAILS) when a core check failed or the probe did not run to the end.
    """
    declared = capabilities.declared()
    verified: list[CapabilityName] = []
    failed: list[CapabilityName] = []
    absent: list[CapabilityName] = []
    for name in declared:
        probe = CAPABILITY_PROBES[name]
        checks = results.get(probe.spec.name)
        if checks is not None and all(c.passed for c in checks if c.weight > 0):
            verified.append(name)
            continue
        failed.append(name)
        by_name = {c.name: c for c in checks or ()}
        missing = checks is None or any(core in by_name and not by_name[core].passed for core in probe.core)
        if probe.core and missing:
            absent.append(name)
    not_declared = tuple(n for n in CAPABILITY_NAMES if n not in declared)
    return CapabilityOutcome(tuple(verified), tuple(failed), not_declared, tuple(absent))
