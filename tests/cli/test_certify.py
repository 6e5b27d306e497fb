"""`python -m certq certify`: flags are validated with a message and an exit code; the report is readable."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from certq.certification import Verdict
from certq.certification.capabilities import Capabilities
from certq.cli import build_parser, certify, main
from certq.cli.render import render_verdict
from tests.certification.stubs import OpenAIHandler, serve


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "azure", "--model", "m", "--base-url", "http://h/v1"], "--provider must be openai or bedrock"),
        (["--provider", "openai", "--model", "m"], "--base-url is required"),
        (["--provider", "openai", "--model", "m", "--base-url", "localhost:8000"], "--base-url must be an http(s) URL"),
        (["--provider", "openai", "--model", " ", "--base-url", "http://h/v1"], "--model must not be empty"),
        (["--provider", "bedrock", "--model", "m"], "--region must be an AWS region"),
        (["--provider", "bedrock", "--model", "m", "--region", "mars"], "--region must be an AWS region"),
        (
            ["--provider", "openai", "--model", "m", "--base-url", "http://h/v1", "--api-key-env", "CERTQ_UNSET_VAR_X"],
            "CERTQ_UNSET_VAR_X is not set",
        ),
        (
            ["--provider", "openai", "--model", "m", "--base-url", "http://h/v1", "--api-key-env", "bad name"],
            "not a valid environment variable name",
        ),
        (["--provider", "openai", "--model", "m", "--base-url", "http://h/v1", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_flags_print_a_message_and_exit_non_zero(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["certify", *argv], capsys)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


_OPENAI = ["certify", "--provider", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--context-window", "100"], "--context-window: must be an integer from 256 to 2000000"),
        (["--context-window", "4096", "--max-output-tokens", "4096"], "--max-output-tokens: must be below"),
        (["--max-output-tokens", "0"], "--max-output-tokens: must be an integer from 1"),
        (["--output-schema", "/nonexistent/schema.json"], "--output-schema: cannot read /nonexistent/schema.json"),
        (["--output-schema", "{not-json}"], "--output-schema: cannot read"),
    ],
)
def test_bad_capability_flags_name_the_flag_and_exit_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli([*_OPENAI, *flags], capsys)
    assert code == 2 and message in err and "Traceback" not in err and out == "", err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not JSON"),
        ('{"type": "array"}', '"type" must be "object"'),
        ('{"type": "object", "properties": {"a": {"type": 5}}}', "not a valid JSON schema"),
    ],
)
def test_a_bad_output_schema_file_is_refused_naming_the_flag(
    content: str, message: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(content)
    code, _, err = run_cli([*_OPENAI, "--output-schema", str(schema)], capsys)
    assert code == 2 and err.startswith("certq: --output-schema: ") and message in err, err


def test_capability_flags_reach_the_engine_as_the_endpoint_capabilities(tmp_path: Any) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    path = tmp_path / "city.json"
    path.write_text(json.dumps(schema))
    flags = ["--tools", "--output-schema", str(path), "--context-window", "8192", "--max-output-tokens", "512"]
    args = build_parser().parse_args([*_OPENAI, *flags, "--no-token-accounting"])
    capabilities = certify.endpoint_from_args(args).capabilities
    assert capabilities.tools and capabilities.structured_output and capabilities.output_schema == schema
    assert (capabilities.context_window, capabilities.max_output_tokens) == (8192, 512)
    assert not capabilities.token_accounting
    assert capabilities.declared() == ("tools", "structuredOutput", "contextWindow")
    assert certify.endpoint_from_args(build_parser().parse_args(_OPENAI)).capabilities == Capabilities()


def test_missing_required_flags_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["certify", "--provider", "openai"], capsys)
    assert code == 2 and "--model" in err


def test_the_report_shows_every_probe_the_score_and_the_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(OpenAIHandler) as (root, _):
        code, out, _ = run_cli(
            ["certify", "--provider", "openai", "--base-url", f"{root}/v1", "--model", "gpt-x"], capsys
        )
    assert code == 0
    head, verdict = out.split("\n\n", 1)
    assert head == f"certify openai gpt-x at {root}/v1 (region local)\ndeclared: chat, token accounting"
    assert re.match(r"Verdict: CERTIFIED +score 100/100 +rating A +passed True", verdict), verdict
    for name in ("connectivity", "streaming"):
        assert re.search(rf"^{name} +yes +PASS +100 ", verdict, re.MULTILINE), verdict
    for name in ("deterministic_qa", "performance", "robustness"):
        assert re.search(rf"^{name} +PASS +100 ", verdict, re.MULTILINE), verdict
    assert "latency p50" in verdict and "time to first token p50" in verdict


def _verdict(**changes: Any) -> Verdict:
    fields: dict[str, Any] = dict(
        status="FAILED",
        passed=False,
        score=40,
        rating="D",
        test_results=[
            {
                "name": "connectivity",
                "passed": True,
                "score": 100,
                "latencyMs": 12.5,
                "critical": True,
                "outcome": "scored",
                "detail": "ok",
            },
            {
                "name": "streaming",
                "passed": False,
                "score": None,
                "latencyMs": None,
                "critical": True,
                "outcome": "error",
                "detail": "stream\ncut",
            },
        ],
        metrics={"latencyMs": {"p50": 12.5, "p95": 30.0}, "requests": 3, "retries": 1},
        error_category="SERVER_ERROR",
        error_message="502 from upstream",
        retryable=True,
        duration_ms=1500,
        started_at="2024-01-01T00:00:00Z",
        finished_at="2024-01-01T00:00:01Z",
        suite_version="test",
        provider="openai",
        api_model_id="gpt-x",
        region="local",
    )
    return Verdict(**{**fields, **changes})


def test_certify_prints_its_verdict_with_the_renderer_enqueue_and_the_demo_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verdict = _verdict()

    async def fake_run(endpoint: Any, on_progress: Any = None, *, config: Any = None) -> Verdict:
        return verdict

    monkeypatch.setattr(certify, "run_certification", fake_run)
    argv = ["certify", "--provider", "openai", "--base-url", "http://h/v1", "--model", "gpt-x"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 1
    head = "certify openai gpt-x at http://h/v1 (region local)\ndeclared: chat, token accounting"
    assert out == f"{head}\n\n{render_verdict(verdict.to_json())}\n"
    assert re.search(r"^streaming +yes +error +- +- +stream cut$", out, re.MULTILINE), out
    assert "error: SERVER_ERROR (retryable): 502 from upstream" in out

    code, out, _ = run_cli([*argv, "--json"], capsys)
    assert code == 1 and json.loads(out) == verdict.to_json()


def test_an_uncertified_endpoint_exits_1_with_its_category_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(OpenAIHandler, "401") as (root, _):
        code, out, _ = run_cli(
            ["certify", "--provider", "openai", "--base-url", f"{root}/v1", "--model", "gpt-x", "--json"], capsys
        )
    body = orjson.loads(out)
    assert code == 1 and body["status"] == "FAILED" and body["errorCategory"] == "AUTH_ERROR"
