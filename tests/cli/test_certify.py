"""`python -m certq certify`: flags are validated with a message and an exit code; the report is readable."""

from __future__ import annotations

import orjson
import pytest

from certq.cli import main
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


def test_missing_required_flags_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["certify", "--provider", "openai"], capsys)
    assert code == 2 and "--model" in err


def test_the_report_shows_every_probe_the_score_and_the_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(OpenAIHandler) as (root, _):
        code, out, _ = run_cli(
            ["certify", "--provider", "openai", "--base-url", f"{root}/v1", "--model", "gpt-x"], capsys
        )
    assert code == 0
    for name in ("connectivity*", "streaming*", "deterministic_qa", "performance", "robustness"):
        assert name in out
    assert "status CERTIFIED" in out and "rating A" in out and "latency p50" in out and "TTFT" in out


def test_an_uncertified_endpoint_exits_1_with_its_category_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(OpenAIHandler, "401") as (root, _):
        code, out, _ = run_cli(
            ["certify", "--provider", "openai", "--base-url", f"{root}/v1", "--model", "gpt-x", "--json"], capsys
        )
    body = orjson.loads(out)
    assert code == 1 and body["status"] == "FAILED" and body["errorCategory"] == "AUTH_ERROR"
