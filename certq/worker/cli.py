"""`python -m certq.worker`: flags, settings, logging, then the daemon; a bad value exits 3 naming it.

Flags win over the environment (`--concurrency` over CERTIFICATION_CONCURRENCY, and so on).
`--handler module:function` (hidden from --help) replaces the certification handler with any
`async def handle(job: ActiveJob) -> result`, so tests and benchmarks run the real daemon with their
own jobs, e.g. `--handler certq.worker.testing:noop`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from certq.logs import configure_logging
from certq.loops import new_event_loop
from certq.settings import DOTENV, STARTUP_FAILURE, Settings, SettingsError, load_settings

log = logging.getLogger("certq.worker")

# flag -> Settings field it overrides
FLAG_FIELDS = {
    "concurrency": "concurrency",
    "health_port": "worker_health_port",
    "health_host": "worker_health_host",
    "queue": "queue_name",
    "prefix": "queue_prefix",
    "log_level": "log_level",
    "log_format": "log_format",
    "timeout": "timeout_ms",
    "shutdown_grace": "shutdown_grace_s",
}


class StartupError(Exception):
    """The worker cannot start; the message names the flag or variable to fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(STARTUP_FAILURE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m certq.worker", description="certq worker daemon: runs certification jobs.")
    parser.add_argument("--concurrency", type=int, help="jobs run at once (CERTIFICATION_CONCURRENCY, default 3)")
    parser.add_argument("--health-port", type=int, help="health/metrics HTTP port (WORKER_HEALTH_PORT, default 3002)")
    parser.add_argument("--health-host", help="health server address (WORKER_HEALTH_HOST, default 0.0.0.0)")
    parser.add_argument("--queue", help="queue name (CERTIFICATION_QUEUE_NAME)")
    parser.add_argument("--prefix", help="Redis key prefix (BULL_QUEUE_PREFIX)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (LOG_LEVEL)")
    parser.add_argument("--log-format", help="json or text (LOG_FORMAT; default json unless on a terminal)")
    parser.add_argument("--timeout", type=int, help="per-job timeout in ms (CERTIFICATION_TIMEOUT)")
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds running jobs get to finish after SIGTERM (CERTIFICATION_SHUTDOWN_GRACE)",
    )
    parser.add_argument("--handler", help=argparse.SUPPRESS)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {FLAG_FIELDS[name]: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    try:
        return load_settings(env_file=DOTENV, **overrides)
    except SettingsError as exc:
        flag = next(
            (
                f"--{name.replace('_', '-')}"
                for name, fld in FLAG_FIELDS.items()
                if fld in overrides and Settings.model_fields[fld].alias == exc.variable
            ),
            None,
        )
        raise StartupError(f"{flag} ({exc.variable}): {exc.message}" if flag else str(exc)) from None


def resolve_handler(spec: str) -> Any:
    """`module:function` -> the function (a job handler)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StartupError(f"--handler: {spec!r} is not module:function")
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise StartupError(f"--handler: cannot load {spec!r}: {exc}") from None
    if not callable(target):
        raise StartupError(f"--handler: {spec!r} is not callable")
    return target


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        handler = resolve_handler(args.handler) if args.handler else None
    except StartupError as exc:
        print(f"certq-worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    try:
        configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    except SettingsError as exc:
        print(f"certq-worker: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    from certq.worker.daemon import Worker, WorkerStartupError

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            code = runner.run(Worker(settings, handler=handler).run())
    except WorkerStartupError as exc:
        log.error("worker cannot start", extra={"error": str(exc)})
        print(f"certq-worker: {exc}", file=sys.stderr)
        code = STARTUP_FAILURE
    sys.exit(code)
