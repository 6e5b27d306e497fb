"""What the admin commands share: exit codes, connections that fail in plain words, output helpers."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any, TypeVar

import asyncpg
import orjson
from redis.exceptions import RedisClusterException, RedisError

from certq import durations
from certq.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from certq.connections import AnyRedis, connect_redis, topology
from certq.loops import new_event_loop
from certq.settings import DOTENV, Settings, load_settings
from certq.store import Store

T = TypeVar("T")

EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (doctor: every check passed; demo: a verdict was printed)",
    EXIT_FAILURE: "the operation failed or found a problem (doctor: a check failed; job: it failed)",
    EXIT_USAGE: "bad command line (unknown command, missing or invalid argument)",
    EXIT_CONFIG: "invalid configuration: the message names the environment variable",
    EXIT_NOT_FOUND: "no such job, certification or model",
    EXIT_UNAVAILABLE: "Redis, PostgreSQL or the API cannot be reached",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
"""Every exit code the admin CLI uses; docs/operations.md lists the same table (a test checks)."""


def parse_duration_ms(text: str) -> int:
    """`"7d"` -> 604800000; a bare number is seconds. Raises CommandError (usage) on anything else."""
    try:
        return durations.parse_duration_ms(text)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
    return value


def positive_seconds(text: str) -> float:
    """argparse `type=`: a finite number of seconds above zero (rejects -1, 0, nan, inf) -> exit 2 with usage."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def non_negative_seconds(text: str) -> float:
    """argparse `type=`: a finite number of seconds, zero or more."""
    value = _seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def settings_from(args: Any) -> Settings:
    """Settings with the command line's overrides (only the options a command defines)."""
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("redis_url", "redis_url"),
        ("database_url", "database_url"),
        ("prefix", "queue_prefix"),
        ("queue", "queue_name"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return load_settings(env_file=DOTENV, **overrides)


def add_connection_options(parser: Any, *, database: bool = False) -> None:
    group = parser.add_argument_group("connection (defaults come from the environment / .env)")
    group.add_argument("--redis-url", metavar="URL", help="Redis to use instead of REDIS_URL / REDIS_HOST...")
    if database:
        group.add_argument("--database-url", metavar="URL", help="PostgreSQL to use instead of DATABASE_URL")
    group.add_argument("--prefix", metavar="P", help="key prefix (BULL_QUEUE_PREFIX, default myia)")
    group.add_argument("--queue", metavar="NAME", help="queue name (CERTIFICATION_QUEUE_NAME)")


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def redis_where(settings: Settings) -> str:
    """Where Redis is, for messages: the URL without password, or the Sentinel/Cluster nodes."""
    kind = topology(settings)
    if kind == "cluster":
        return f"Redis Cluster {settings.redis_cluster_nodes}"
    if kind == "sentinel":
        return f"Sentinel master {settings.redis_sentinel_master!r} via {settings.redis_sentinels}"
    return redact_url(settings.redis_dsn)


_REDIS_VARIABLES = {
    "single": "REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD",
    "sentinel": "REDIS_SENTINELS, REDIS_SENTINEL_MASTER and REDIS_PASSWORD",
    "cluster": "REDIS_CLUSTER_NODES (cluster-enabled nodes) and REDIS_PASSWORD",
}


async def _ping(client: AnyRedis) -> bool:
    return bool(await client.ping())  # type: ignore[misc]


@asynccontextmanager
async def redis_connection(settings: Settings) -> AsyncIterator[AnyRedis]:
    """A Redis client that answered PING; CommandError(EXIT_UNAVAILABLE) in plain words otherwise."""
    client = connect_redis(settings)
    try:
        try:
            await asyncio.wait_for(_ping(client), timeout=10)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            reason = (str(exc) or type(exc).__name__).rstrip(".")
            raise CommandError(
                f"cannot reach Redis at {redis_where(settings)}: {reason}. "
                f"Is it running (redis-cli ping)? Check {_REDIS_VARIABLES[topology(settings)]}.",
                EXIT_UNAVAILABLE,
            ) from None
        yield client
    finally:
        await client.aclose()


async def connect_postgres(dsn: str) -> asyncpg.Connection:
    """One connection; CommandError(EXIT_UNAVAILABLE) naming the problem when PostgreSQL refuses."""
    try:
        return await asyncio.wait_for(asyncpg.connect(dsn), timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise _postgres_refused(dsn, exc) from None


async def open_store(settings: Settings) -> Store:
    """A small Store on DATABASE_URL; CommandError(EXIT_UNAVAILABLE) naming the problem when PostgreSQL refuses."""
    try:
        return await asyncio.wait_for(Store.connect(settings.database_url, min_size=1, max_size=2), timeout=10)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise _postgres_refused(settings.database_url, exc) from None


def _postgres_refused(dsn: str, exc: Exception) -> CommandError:
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return CommandError(
            f"PostgreSQL at {redact_url(dsn)} answers, but {exc}: create it "
            "(createdb, or CREATE DATABASE) or fix DATABASE_URL",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return CommandError(
            f"PostgreSQL at {redact_url(dsn)} refused the credentials: {exc}. Check the user and "
            "password in DATABASE_URL",
            EXIT_UNAVAILABLE,
        )
    return CommandError(
        f"cannot reach PostgreSQL at {redact_url(dsn)}: {exc or type(exc).__name__}. "
        "Is it running (psql \"$DATABASE_URL\" -c 'SELECT 1')? Check DATABASE_URL.",
        EXIT_UNAVAILABLE,
    )


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion; Redis errors mid-command become EXIT_UNAVAILABLE messages."""

    async def guarded() -> T:
        try:
            return await factory()
        except (RedisError, RedisClusterException, ConnectionError) as exc:
            raise CommandError(f"Redis failed during the command: {exc}", EXIT_UNAVAILABLE) from None

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(guarded())


def print_json(value: Any, out: IO[str] | None = None) -> None:
    (out or sys.stdout).write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")


def print_json_line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def printable(value: object) -> str:
    """`str(value)` with every control character escaped (`\\x1b`): text from model endpoints and job
    payloads can carry terminal escape sequences, which must never reach the operator's terminal raw."""
    return str(value).translate(_CONTROLS)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain left-aligned text table (cells made printable)."""
    cells = [[str(h) for h in headers], *[["" if c is None else printable(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_ms(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_ms / 1000))


class ProgressBar:
    """A one-line bar on stderr, drawn only when stderr is a terminal (scripts see just the result)."""

    def __init__(self, total: int | None, label: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self._last_draw = 0.0

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.05 or done == self.total):
            self._last_draw = now
            self.stream.write("\r" + self.render(note) + "\x1b[K")
            self.stream.flush()

    def render(self, note: str = "") -> str:
        if self.total:
            filled = min(self.width, self.width * self.done // self.total)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"{self.label} {self.done}"
        return f"{text} {note}".rstrip()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
