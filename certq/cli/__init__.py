"""The admin CLI (`python -m certq <command>`): one module per command group, each with `register()`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from certq.settings import STARTUP_FAILURE, SettingsError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = STARTUP_FAILURE

# Each module defines `register(subparsers)`, adding its commands with `set_defaults(run=...)`,
# where `run(args) -> int` returns the exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "migrate",
    "certify",
    "jobs",
    "doctor",
    "demo",
    "reconcile",
    "enqueue",
    "chaos",
    "schedules",
    "models",
)


class CommandError(Exception):
    """A command failed in a way the operator can act on: printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certq", description="certq admin: certify AI model deployments.")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(f"certq.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        sys.exit(EXIT_USAGE)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is a BrokenPipeError here
    except BrokenPipeError:
        # The reader stopped reading: exit quietly, and point stdout at devnull so the interpreter's
        # final flush does not complain either (the recipe in the `signal` module's documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_FAILURE
    except SettingsError as exc:
        print(f"certq: configuration error: {exc}", file=sys.stderr)
        code = EXIT_CONFIG
    except CommandError as exc:
        print(f"certq: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
