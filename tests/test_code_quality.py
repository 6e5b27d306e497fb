"""ruff and mypy --strict are part of the suite: a lint or type error fails CI like a test does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "certq", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_mypy_strict_finds_nothing_in_the_package() -> None:
    result = _run("mypy", "certq")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_mypy_strict_finds_nothing_in_the_tests() -> None:
    # As Starlette checks its tests: helpers and fixtures are typed like the code they drive.
    result = _run("mypy", "--explicit-package-bases", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_the_code_is_ruff_formatted() -> None:
    result = _run("ruff", "format", "--check", "certq", "tests", "bench")
    assert result.returncode == 0, "run `.venv/bin/ruff format certq tests bench`:\n" + result.stdout + result.stderr
