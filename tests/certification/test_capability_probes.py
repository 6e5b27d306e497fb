"""Declared capabilities against loopback stubs that implement them right and in each typical wrong way."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from certq.certification import ModelEndpoint, RunConfig, run_certification
from certq.certification.capabilities import Capabilities
from certq.certification.capability_probes import (
    IN_WINDOW_CEILING,
    OVERFLOW_CEILING,
    PERSON_SCHEMA,
    capability_outcomes,
    schema_problem,
)
from certq.certification.chat import Check
from tests.certification.capability_stubs import WINDOW, CapabilityBedrockHandler, CapabilityOpenAIHandler
from tests.certification.conftest import SleepLog
from tests.certification.stubs import serve

API_KEY = "sk-capability-test-0123456789"
EVERYTHING = Capabilities(tools=True, structured_output=True, context_window=WINDOW)


def endpoint(root: str, capabilities: Capabilities, model: str = "gpt-x") -> ModelEndpoint:
    return ModelEndpoint("openai", model, "local", root + "/v1", API_KEY, capabilities=capabilities)


def probe(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in body["testResults"] if p["name"] == name)


def failed_checks(result: dict[str, Any]) -> list[str]:
    return [c["name"] for c in result["checks"] if not c["passed"]]


async def test_an_endpoint_doing_all_it_declares_is_certified_and_every_capability_verified(
    fast_config: RunConfig,
) -> None:
    with serve(CapabilityOpenAIHandler) as (root, stub):
        verdict = (await run_certification(endpoint(root, EVERYTHING), config=fast_config)).to_json()
        baseline = (await run_certification(endpoint(root, Capabilities()), config=fast_config)).to_json()
    assert verdict["status"] == "CERTIFIED", (verdict["errorMessage"], verdict["testResults"][9:])
    assert verdict["capabilities"] == {
        "verified": ["tools", "structuredOutput", "contextWindow", "tokenAccounting"],
        "failed": [],
        "notDeclared": [],
    }
    # Capability probes weigh nothing: the score is the nine chat probes', as for a model declaring nothing.
    assert verdict["score"] == baseline["score"]
    spent = {p["capability"]: (p["requests"], p["tokens"]) for p in verdict["testResults"] if "capability" in p}
    assert {name: requests for name, (requests, _) in spent.items()} == {
        "tools": 2,
        "structuredOutput": 2,
        "contextWindow": 4,
        "tokenAccounting": 3,
    }
    assert all(tokens["prompt"] > 0 for _, tokens in spent.values())
    assert 0.6 * WINDOW * 0.9 < spent["contextWindow"][1]["prompt"] < 0.6 * WINDOW * 1.1 + 1000
    # The over-window 400 is the expected answer, not a transient failure of the endpoint.
    assert verdict["metrics"]["reliability"]["availability"] == 1.0
    bodies = [r.body for r in stub.requests]
    offered = next(b for b in bodies if b.get("tools"))
    assert offered["tool_choice"] == "auto"
    assert [t["function"]["name"] for t in offered["tools"]] == ["get_weather", "get_secret_number"]
    answered = next(b for b in bodies if b.get("tools") and b["messages"][-1]["role"] == "tool")
    assistant, tool = answered["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == tool["tool_call_id"] == "call_stub_1"
    structured = [b for b in bodies if "response_format" in b]
    assert len(structured) == 2 and structured[1]["stream"] is True
    spec = structured[0]["response_format"]
    assert spec["type"] == "json_schema" and spec["json_schema"]["schema"] == PERSON_SCHEMA
    assert spec["json_schema"]["strict"] is True
    assert API_KEY not in orjson.dumps(verdict).decode()


# behaviour -> (capability, status, the check that fails)
WRONG_WAYS = {
    "tool-bad-args": ("tools", "FAILED", "arguments parse as JSON"),
    "tool-wrong-function": ("tools", "FAILED", "calls get_secret_number"),
    "tool-schema-break": ("tools", "FAILED", "arguments match the parameter schema"),
    "no-tools": ("tools", "FAILED", "calls get_secret_number"),
    "tool-ignores-result": ("tools", "QUALITY_WARNING", "final answer uses the tool result"),
    "json-breaks-schema": ("structuredOutput", "FAILED", "answer validates against the schema"),
    "json-fenced": ("structuredOutput", "FAILED", "answer parses as JSON"),
    "ctx-small": ("contextWindow", "FAILED", "in-window prompt accepted"),
    "ctx-truncate": ("contextWindow", "FAILED", "in-window prompt not truncated"),
    "ctx-500": ("contextWindow", "QUALITY_WARNING", "over-window prompt gets a 4xx context-length error"),
    "ctx-accepts-all": ("contextWindow", "QUALITY_WARNING", "over-window prompt gets a 4xx context-length error"),
    "usage-static": ("tokenAccounting", "QUALITY_WARNING", "prompt_tokens grows with the prompt"),
    "usage-over-max": ("tokenAccounting", "QUALITY_WARNING", "completion_tokens never exceed max_tokens"),
    "usage-bad-total": ("tokenAccounting", "QUALITY_WARNING", "usage total = prompt + completion"),
    "stream-usage-differs": ("tokenAccounting", "QUALITY_WARNING", "streamed usage equals non-streamed usage"),
}
PROBE_OF = {
    "tools": "capability_tools",
    "structuredOutput": "capability_structured_output",
    "contextWindow": "capability_context_window",
    "tokenAccounting": "capability_token_accounting",
}


@pytest.mark.parametrize("behaviour", WRONG_WAYS)
async def test_a_declared_capability_done_wrong_is_failed_by_the_documented_rule(
    behaviour: str, fast_config: RunConfig
) -> None:
    capability, status, check = WRONG_WAYS[behaviour]
    with serve(CapabilityOpenAIHandler, behaviour) as (root, _):
        verdict = (await run_certification(endpoint(root, EVERYTHING), config=fast_config)).to_json()
    result = probe(verdict, PROBE_OF[capability])
    assert check in failed_checks(result), result
    assert verdict["status"] == status, (verdict["score"], verdict["errorMessage"])
    assert verdict["errorCategory"] == "QUALITY_BELOW_THRESHOLD"
    assert capability in verdict["capabilities"]["failed"]
    assert capability not in verdict["capabilities"]["verified"]
    assert f"declared capability failed: {capability} (" in verdict["errorMessage"]
    if status == "FAILED":
        assert verdict["score"] <= 59 and "not offered" in verdict["errorMessage"]
    assert verdict["metrics"]["errorCounts"].get("SERVER_ERROR", 0) == 0  # a 500 on the long prompt: not retried


@pytest.mark.parametrize(
    ("behaviour", "capability", "requests"), [("tools-400", "tools", 1), ("schema-500", "structuredOutput", 2)]
)
async def test_a_refused_capability_fails_it_without_ending_the_run_or_retrying(
    behaviour: str, capability: str, requests: int, fast_config: RunConfig, sleeps: SleepLog
) -> None:
    with serve(CapabilityOpenAIHandler, behaviour) as (root, _):
        verdict = (await run_certification(endpoint(root, EVERYTHING), config=fast_config)).to_json()
    result = probe(verdict, PROBE_OF[capability])
    assert result["outcome"] == "scored" and result["requests"] == requests, result
    assert result["checks"][0]["detail"].startswith("refused: HTTP")
    assert verdict["status"] == "FAILED" and verdict["capabilities"]["failed"] == [capability]
    assert verdict["errorCategory"] == "QUALITY_BELOW_THRESHOLD" and not verdict["retryable"]
    assert verdict["metrics"]["reliability"]["availability"] == 1.0 and sleeps.delays == []


async def test_a_declared_schema_is_the_one_sent_and_validated(fast_config: RunConfig) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "rain": {"type": "boolean"}},
        "required": ["city", "rain"],
        "examples": [{"city": "Oslo", "rain": True}],
    }
    declared = Capabilities(structured_output=True, output_schema=schema, token_accounting=False)
    with serve(CapabilityOpenAIHandler) as (root, stub):
        verdict = (await run_certification(endpoint(root, declared), config=fast_config)).to_json()
    sent = [r.body["response_format"]["json_schema"] for r in stub.requests if "response_format" in r.body]
    assert sent and all(s["schema"] == schema and "strict" not in s for s in sent)
    assert verdict["capabilities"]["verified"] == ["structuredOutput"], probe(verdict, PROBE_OF["structuredOutput"])
    assert verdict["capabilities"]["notDeclared"] == ["tools", "contextWindow", "tokenAccounting"]


async def test_nothing_declared_runs_only_the_chat_battery(fast_config: RunConfig) -> None:
    with serve(CapabilityOpenAIHandler) as (root, stub):
        verdict = await run_certification(endpoint(root, Capabilities(token_accounting=False)), config=fast_config)
    assert verdict.status == "CERTIFIED" and len(stub.requests) == 20
    assert [p["name"] for p in verdict.test_results][-1] == "robustness"
    assert verdict.to_json()["capabilities"] == {
        "verified": [],
        "failed": [],
        "notDeclared": ["tools", "structuredOutput", "contextWindow", "tokenAccounting"],
    }


async def test_a_huge_window_costs_at_most_the_ceiling_and_is_not_probed_past_its_end(fast_config: RunConfig) -> None:
    declared = Capabilities(context_window=1_000_000, token_accounting=False)
    with serve(CapabilityOpenAIHandler, "ctx-accepts-all") as (root, stub):
        verdict = (await run_certification(endpoint(root, declared), config=fast_config)).to_json()
    result = probe(verdict, PROBE_OF["contextWindow"])
    assert verdict["capabilities"]["verified"] == ["contextWindow"], result
    assert result["requests"] == 3 and result["tokens"]["prompt"] <= IN_WINDOW_CEILING + 1000
    longest = max(len(" ".join(m["content"] for m in r.body["messages"]).split()) for r in stub.requests)
    assert longest <= IN_WINDOW_CEILING
    over = next(c for c in result["checks"] if c["name"].startswith("over-window"))
    assert f"windows above {OVERFLOW_CEILING}" in over["detail"]


def bedrock_endpoint(root: str, model: str, capabilities: Capabilities) -> ModelEndpoint:
    return ModelEndpoint("bedrock", model, "us-east-1", root, capabilities=capabilities)


@pytest.mark.usefixtures("aws_env")
async def test_converse_tool_use_and_structured_output_through_a_forced_tool(fast_config: RunConfig) -> None:
    declared = Capabilities(tools=True, structured_output=True)
    with serve(CapabilityBedrockHandler) as (root, stub):
        verdict = (await run_certification(bedrock_endpoint(root, "ok:0", declared), config=fast_config)).to_json()
    assert verdict["status"] == "CERTIFIED", verdict["errorMessage"]
    assert verdict["capabilities"]["verified"] == ["tools", "structuredOutput", "tokenAccounting"]
    configs = [r.body["toolConfig"] for r in stub.requests if "toolConfig" in r.body]
    forced = [c for c in configs if "tool" in c.get("toolChoice", {})]
    assert len(forced) == 2 and forced[0]["toolChoice"] == {"tool": {"name": "certq_answer"}}
    assert forced[0]["tools"][-1]["toolSpec"]["inputSchema"]["json"] == PERSON_SCHEMA
    assert any(c["toolChoice"] == {"auto": {}} for c in configs)
    second = next(r.body for r in stub.requests if "toolConfig" in r.body and len(r.body["messages"]) == 3)
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    use = second["messages"][1]["content"][-1]["toolUse"]
    result = second["messages"][2]["content"][0]["toolResult"]
    assert use["name"] == "get_secret_number" and result["toolUseId"] == use["toolUseId"] == "tooluse_1"
    assert "secret_number" in json.loads(result["content"][0]["text"])


@pytest.mark.usefixtures("aws_env")
async def test_converse_calling_the_wrong_tool_fails_the_verdict(fast_config: RunConfig) -> None:
    declared = Capabilities(tools=True, token_accounting=False)
    with serve(CapabilityBedrockHandler) as (root, _):
        verdict = await run_certification(bedrock_endpoint(root, "tool-wrong-function:0", declared), config=fast_config)
    assert verdict.status == "FAILED" and verdict.to_json()["capabilities"]["failed"] == ["tools"]
    assert "called get_weather" in (verdict.error_message or "")


@pytest.mark.parametrize("behaviour", ["ctx-negative-usage", "ctx-tiny-lines"])
async def test_usage_numbers_chosen_by_the_endpoint_cannot_blow_up_the_long_prompts(
    behaviour: str, fast_config: RunConfig
) -> None:
    declared = Capabilities(context_window=2_000_000 if behaviour == "ctx-negative-usage" else 262_144)
    with serve(CapabilityOpenAIHandler, behaviour) as (root, stub):
        verdict = (await run_certification(endpoint(root, declared), config=fast_config)).to_json()
    largest = max(len(orjson.dumps(request.body)) for request in stub.requests)
    assert largest < 3 * 2**20, f"a {largest}-byte request"  # MAX_FILLER_LINES lines at most, ~2.4 MB
    assert "contextWindow" in verdict["capabilities"]["failed"]
    assert verdict["status"] in ("QUALITY_WARNING", "FAILED") and verdict["errorCategory"] != "INTERNAL_ERROR"


async def test_absurd_usage_numbers_are_not_counted_and_fail_token_accounting(fast_config: RunConfig) -> None:
    with serve(CapabilityOpenAIHandler, "usage-huge") as (root, _):
        verdict = (await run_certification(endpoint(root, Capabilities()), config=fast_config)).to_json()
    assert "tokenAccounting" in verdict["capabilities"]["failed"]
    counted = [n for result in verdict["testResults"] for n in (result.get("tokens") or {}).values()]
    assert counted and all(0 <= n < 2**31 for n in counted), counted  # what a verdict stores stays storable


@pytest.mark.parametrize("behaviour", ["tool-deep-args", "tool-huge-args"])
async def test_hostile_tool_arguments_fail_the_tools_check_not_the_certifier(
    behaviour: str, fast_config: RunConfig
) -> None:
    with serve(CapabilityOpenAIHandler, behaviour) as (root, _):
        verdict = (await run_certification(endpoint(root, Capabilities(tools=True)), config=fast_config)).to_json()
    assert verdict["errorCategory"] != "INTERNAL_ERROR", verdict["errorMessage"]
    assert "tools" in verdict["capabilities"]["failed"]
    assert "arguments parse as JSON" in failed_checks(probe(verdict, PROBE_OF["tools"]))


def test_a_capability_is_absent_only_when_a_core_check_fails() -> None:
    declared = Capabilities(tools=True, structured_output=True)
    outcome = capability_outcomes(
        declared,
        {
            "capability_tools": [
                Check("calls get_secret_number", True),
                Check("final answer uses the tool result", False),
            ],
            "capability_structured_output": [Check("answer validates against the schema", False)],
            "capability_token_accounting": [Check("prompt_tokens grows with the prompt", False)],
        },
    )
    assert outcome.failed == ("tools", "structuredOutput", "tokenAccounting")
    assert outcome.absent == ("structuredOutput",)  # token accounting never fails a verdict outright
    assert outcome.not_declared == ("contextWindow",)
    not_run = capability_outcomes(declared, {"capability_tools": None})
    assert not_run.verified == () and "tools" in not_run.absent


def test_schema_problems_name_the_path_and_the_rule() -> None:
    assert schema_problem({"name": "Alice", "age": 30}, PERSON_SCHEMA) is None
    assert schema_problem({"name": "Alice", "age": "thirty"}, PERSON_SCHEMA) == "age: 'thirty' is not of type 'integer'"
    assert "additional" in (schema_problem({"name": "A", "age": 1, "x": 0}, PERSON_SCHEMA) or "").lower()
    assert (schema_problem({}, {"type": "nonsense"}) or "").startswith("the schema itself is invalid")
