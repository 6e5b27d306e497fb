"""Flags over environment variables, and start-up errors that name the flag or variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from certq.worker.cli import StartupError, build_parser, resolve_handler, settings_from
from certq.worker.testing import noop


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTIFICATION_CONCURRENCY", "7")
    monkeypatch.setenv("WORKER_HEALTH_PORT", "3010")
    monkeypatch.setenv("BULL_QUEUE_PREFIX", "from-env")
    settings = settings_from(
        build_parser().parse_args(
            [
                "--concurrency",
                "2",
                "--queue",
                "other",
                "--prefix",
                "{p}",
                "--log-level",
                "debug",
                "--shutdown-grace",
                "1.5",
            ]
        )
    )
    assert (settings.concurrency, settings.queue_name, settings.queue_prefix) == (2, "other", "{p}")
    assert (settings.log_level, settings.shutdown_grace_s, settings.worker_health_port) == ("DEBUG", 1.5, 3010)


def test_without_flags_the_environment_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTIFICATION_CONCURRENCY", "7")
    monkeypatch.setenv("CERTIFICATION_TIMEOUT", "1234")
    settings = settings_from(build_parser().parse_args([]))
    assert (settings.concurrency, settings.timeout_ms) == (7, 1234)


def test_a_bad_flag_value_names_the_flag_and_its_variable() -> None:
    with pytest.raises(StartupError, match=r"--health-port \(WORKER_HEALTH_PORT\)"):
        settings_from(build_parser().parse_args(["--health-port", "70000"]))


def test_a_bad_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTIFICATION_MAX_RETRIES", "-1")
    with pytest.raises(StartupError, match="CERTIFICATION_MAX_RETRIES"):
        settings_from(build_parser().parse_args([]))


def test_an_unparseable_flag_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--concurrency", "three"])
    assert exit_info.value.code == 3
    assert "--concurrency" in capsys.readouterr().err


def test_the_handler_option_loads_module_and_function() -> None:
    assert resolve_handler("certq.worker.testing:noop") is noop
    for spec in ("certq.worker.testing", "certq.worker.testing:missing", "no.such:thing"):
        with pytest.raises(StartupError, match="--handler"):
            resolve_handler(spec)


@pytest.mark.parametrize("log_dir", ["/etc/passwd", "/proc/nonexistent"])
def test_an_unusable_log_dir_exits_3_naming_log_dir(log_dir: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "WORKER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "certq.worker"],
        env={**env, "LOG_DIR": log_dir},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 3
    assert "LOG_DIR" in done.stderr and log_dir in done.stderr and "Traceback" not in done.stderr
