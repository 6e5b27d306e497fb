"""Certification against a real model server nobody here wrote: llama-cpp-python serving tiny generated GGUFs."""

from __future__ import annotations

import orjson
import pytest

from certq.certification import ModelEndpoint, run_certification
from certq.certification.capabilities import Capabilities
from certq.cli import main
from tests.certification.conftest import LLAMA_API_KEY

pytestmark = pytest.mark.slow


async def test_the_scripted_model_is_certified(scripted_llama: str) -> None:
    verdict = await run_certification(ModelEndpoint("openai", "tiny-scripted", "local", scripted_llama, LLAMA_API_KEY))
    assert verdict.status == "CERTIFIED", verdict.to_json()
    assert verdict.passed and verdict.error_category is None and verdict.rating == "A"
    results = {p["name"]: p for p in verdict.test_results}
    failed = [name for name, p in results.items() if not p["passed"]]
    assert failed == [], [results[name]["detail"] for name in failed]
    # llama-cpp-python reports the invalid request as 500, which costs half of that check, nothing more.
    assert results["robustness"]["score"] == 75
    metrics = verdict.metrics
    assert metrics["requests"] == 20 + 3 and metrics["retries"] == 0  # + token accounting, declared by default
    assert metrics["httpStatusCounts"] == {"200": 22, "500": 1}
    assert metrics["modelReported"] == ["tiny-scripted"]
    assert metrics["outputTokensPerSecond"]["method"] == "chunk_count"  # this server ignores include_usage
    assert metrics["ttftMs"]["p50"] is not None and metrics["latencyMs"]["p95"] is not None
    assert LLAMA_API_KEY not in orjson.dumps(verdict.to_json()).decode()


async def test_the_random_model_fails_on_quality_not_on_infrastructure(random_llama: str) -> None:
    verdict = await run_certification(ModelEndpoint("openai", "tiny-random", "local", random_llama))
    assert verdict.status != "CERTIFIED" and not verdict.passed
    assert verdict.error_category == "QUALITY_BELOW_THRESHOLD" and not verdict.retryable
    results = {p["name"]: p for p in verdict.test_results}
    assert all(p["outcome"] == "scored" for p in results.values())
    assert results["connectivity"]["passed"] and results["streaming"]["passed"]
    assert not results["deterministic_qa"]["passed"] and not results["json_output"]["passed"]
    assert verdict.metrics["errorCounts"] == {}


async def test_a_wrong_api_key_is_an_auth_error(scripted_llama: str) -> None:
    verdict = await run_certification(ModelEndpoint("openai", "tiny-scripted", "local", scripted_llama, "sk-wrong-1"))
    assert verdict.error_category == "AUTH_ERROR" and not verdict.retryable
    assert verdict.metrics["requests"] == 1


def test_the_cli_certifies_the_scripted_model_as_json(
    scripted_llama: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTQ_TEST_LLAMA_KEY", LLAMA_API_KEY)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "certify",
                "--provider",
                "openai",
                "--base-url",
                scripted_llama,
                "--model",
                "tiny-scripted",
                "--api-key-env",
                "CERTQ_TEST_LLAMA_KEY",
                "--json",
            ]
        )
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    body = orjson.loads(out)
    assert body["status"] == "CERTIFIED" and body["region"] == "local"
    assert LLAMA_API_KEY not in out


async def test_the_scripted_model_answers_the_same_at_any_temperature(scripted_llama: str) -> None:
    import httpx

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {LLAMA_API_KEY}"}, timeout=30) as client:
        texts = set()
        for temperature in (0.0, 0.7, 1.5):
            response = await client.post(
                f"{scripted_llama}/chat/completions",
                json={
                    "model": "tiny-scripted",
                    "temperature": temperature,
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "What is the capital of France? Reply with one word."}],
                },
            )
            texts.add(response.json()["choices"][0]["message"]["content"])
    assert texts == {"Paris"}


async def test_the_scripted_model_proves_what_llama_cpp_python_can_serve_and_is_honest_about_the_rest(
    scripted_llama: str,
) -> None:
    declared = Capabilities(tools=True, structured_output=True, context_window=2048)  # the server's n_ctx
    endpoint = ModelEndpoint("openai", "tiny-scripted", "local", scripted_llama, LLAMA_API_KEY, capabilities=declared)
    verdict = (await run_certification(endpoint)).to_json()
    results = {p["name"]: p for p in verdict["testResults"]}
    checks = {c["name"]: c for c in results["capability_context_window"]["checks"]}
    # Structured output is grammar-constrained by the server (its own response_format dialect, learned once).
    assert verdict["capabilities"]["verified"] == ["structuredOutput", "tokenAccounting"], verdict["errorMessage"]
    assert "json_object_schema" in verdict["metrics"]["compatibilityFallbacks"]
    # The window is real: a 60% prompt is read whole, one past the end gets a clean 400.
    assert checks["in-window prompt accepted"]["passed"] and checks["in-window prompt not truncated"]["passed"]
    assert checks["over-window prompt gets a 4xx context-length error"]["passed"]
    assert "context_length_exceeded" in checks["over-window prompt gets a 4xx context-length error"]["detail"]
    # What a keyword-lookup model cannot do is recorded as such: no recall, no tool call (this server ignores
    # `tools` without a function-calling chat format).
    assert not checks["fact at the start is recalled"]["passed"]
    assert verdict["capabilities"]["failed"] == ["tools", "contextWindow"]
    assert verdict["status"] == "FAILED" and "tools (not offered" in verdict["errorMessage"]
    assert verdict["metrics"]["reliability"]["availability"] == 1.0


async def test_the_servers_grammar_makes_even_the_random_model_answer_a_declared_schema(random_llama: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    declared = Capabilities(structured_output=True, output_schema=schema)
    verdict = await run_certification(
        ModelEndpoint("openai", "tiny-random", "local", random_llama, capabilities=declared)
    )
    result = next(p for p in verdict.test_results if p["name"] == "capability_structured_output")
    assert verdict.to_json()["capabilities"]["verified"] == ["structuredOutput", "tokenAccounting"], result
    assert verdict.status == "FAILED"  # still nonsense in every other answer
