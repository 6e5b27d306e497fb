"""`python -m certq.api` start-up: bad flags and values it cannot use stop it with exit 3 and the culprit named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certq.settings import STARTUP_FAILURE


def start(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BULL_", "DATABASE_", "API_", "LOG_"))}
    # An API that wrongly starts anyway binds a free port and is stopped by the timeout (a failure).
    clean |= {"API_PORT": "0", "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"} | env
    return subprocess.run(
        [sys.executable, "-m", "certq.api", *args], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_help_prints_usage_and_starts_nothing(tmp_path: Path) -> None:
    done = start(tmp_path, "--help")
    assert done.returncode == 0
    assert "usage: python -m certq.api" in done.stdout and "API_PORT" in done.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["extra"]])
def test_unknown_flags_or_arguments_exit_3(tmp_path: Path, args: list[str]) -> None:
    done = start(tmp_path, *args)
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "unrecognized arguments" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:abc/x",
        "postgresql://postgres@127.0.0.1:99999/x",
        "postgresql://postgres@[::1/x",
    ],
)
def test_a_database_url_asyncpg_cannot_use_exits_3_naming_it(tmp_path: Path, url: str) -> None:
    done = start(tmp_path, DATABASE_URL=url)
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_a_log_dir_that_cannot_be_written_exits_3_naming_it(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    done = start(tmp_path, LOG_DIR=str(not_a_directory))
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "LOG_DIR" in done.stderr and "Traceback" not in done.stderr
