"""What every command shares: number arguments refused up front, and a reader that goes away (`| head`)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

Run = Callable[..., Any]

MODEL = str(uuid.uuid4())


@pytest.mark.parametrize(
    "command",
    [
        ["healthcheck", "--timeout"],
        ["schema-wait", "--timeout"],
        ["reconcile", "--older-than"],
        ["enqueue", MODEL, "--region", "local", "--wait", "--timeout"],
        ["demo", "--timeout"],
    ],
)
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "soon"])
def test_a_number_of_seconds_that_is_negative_or_not_finite_exits_2_naming_the_option(
    run_cli: Run, command: list[str], value: str
) -> None:
    result = run_cli(*command[:-1], f"{command[-1]}={value}")
    assert result.code == 2
    assert f"argument {command[-1]}" in result.err and repr(value) in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "command", [["healthcheck", "--timeout"], ["enqueue", MODEL, "--region", "x", "--timeout"], ["demo", "--timeout"]]
)
def test_a_timeout_of_zero_exits_2(run_cli: Run, command: list[str]) -> None:
    assert run_cli(*command, "0").code == 2


def test_a_reader_that_stops_reading_ends_the_command_quietly(cli_env: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `certq stats | head -0`: every write breaks
    try:
        done = subprocess.run(
            [sys.executable, "-m", "certq", "stats"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""
