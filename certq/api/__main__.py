"""`python -m certq.api`: the HTTP API on API_HOST:API_PORT (uvicorn)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import socket
import sys
from typing import Any, NoReturn

import uvicorn

from certq.http_limits import server_options
from certq.settings import DOTENV, STARTUP_FAILURE, SettingsError, load_settings


async def schema_problem(dsn: str) -> str | None:
    """Why the API must not start (an unmigrated database); None when fine or PostgreSQL is not up yet."""
    import asyncpg

    from certq.store import SCHEMA_VERSION
    from certq.store.migrations import current_version

    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (ValueError, OverflowError) as exc:  # a DSN asyncpg cannot use (port "abc", 99999, "[::1")
        return f"configuration error: DATABASE_URL: {exc}"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        logging.getLogger("certq.api").warning("PostgreSQL does not answer yet; /ready says 503 until it does")
        return None
    try:
        version = await current_version(conn)
    finally:
        await conn.close()
    if version is None or version < SCHEMA_VERSION:
        return (
            f"the database has schema version {version}, this API needs {SCHEMA_VERSION}: run `python -m certq migrate`"
        )
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why the API cannot listen on API_HOST:API_PORT (taken, not allowed), naming the variables; None if it can.
    uvicorn would only log the errno and exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):  # SO_REUSEADDR, as uvicorn binds
            return None
    except OSError as exc:
        where = f"cannot listen on API_HOST:API_PORT = {host}:{port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            return (
                f"{where}; another process has the port (`ss -ltnp 'sport = :{port}'` shows which): stop it "
                "or set API_PORT to a free port"
            )
        return f"{where}; check API_HOST and API_PORT"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # a bad flag is a start-up failure like a bad variable
        self.print_usage(sys.stderr)
        self.exit(STARTUP_FAILURE, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m certq.api",
        description="certq HTTP API and dashboard on API_HOST:API_PORT; configured by the environment "
        "(and .env): DATABASE_URL, REDIS_URL, API_TOKENS, BULL_BOARD_*...",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes sharing API_HOST:API_PORT (default 1); each has its own PostgreSQL pool of up to "
        "20 connections, so N processes need N x 20 of PostgreSQL's max_connections",
    )
    return parser.parse_args(argv)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(f"{number} is not between 1 and 64")
    return number


def app_from_environment() -> Any:
    """The app of one API process under `--workers N` (uvicorn's factory, run in each child process,
    after the parent has checked the settings, the port and the schema)."""
    from certq.api.app import create_app
    from certq.logs import configure_logging

    settings = load_settings(env_file=DOTENV)
    configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    return create_app(settings)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(env_file=DOTENV)
    except SettingsError as exc:
        print(f"certq.api: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    from certq.api.app import create_app
    from certq.logs import configure_logging

    try:
        configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    except SettingsError as exc:
        print(f"certq.api: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    busy = port_problem(settings.api_host, settings.api_port)
    if busy is not None:
        print(f"certq.api: {busy}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    problem = asyncio.run(schema_problem(settings.database_url))
    if problem is not None:
        print(f"certq.api: {problem}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        **server_options(),
    }
    if args.workers > 1:
        # uvicorn's supervisor binds the port once and starts N processes that accept on it; SIGTERM or
        # SIGINT to this process stops them all (each finishes its requests first).
        uvicorn.run("certq.api.__main__:app_from_environment", factory=True, workers=args.workers, **options)
        return
    uvicorn.run(create_app(settings), **options)


if __name__ == "__main__":
    main()
