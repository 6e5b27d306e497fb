"""`python -m certq migrate`: apply schema.sql to DATABASE_URL (safe on every deploy, from many hosts)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from certq.cli import EXIT_OK, CommandError
from certq.cli.common import EXIT_UNAVAILABLE
from certq.settings import DOTENV, load_settings
from certq.store import Store

CONNECT_TIMEOUT_S = 15.0
"""A port that accepts but never speaks PostgreSQL (wrong port, a proxy) fails within this, not asyncpg's 60 s."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("migrate", help="create or update the PostgreSQL schema (idempotent)")
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    parser.set_defaults(run=run)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def migrate(dsn: str) -> int:
    try:
        store = await asyncio.wait_for(Store.connect(dsn, min_size=1, max_size=1), CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise CommandError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: no PostgreSQL answer within "
            f"{CONNECT_TIMEOUT_S:g}s (is that PostgreSQL's port?)",
            EXIT_UNAVAILABLE,
        ) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        reason = str(exc) or repr(exc)  # some connection errors carry no message at all
        raise CommandError(f"cannot connect to PostgreSQL at {redact(dsn)}: {reason}", EXIT_UNAVAILABLE) from None
    try:
        return await store.migrate()
    except asyncpg.PostgresError as exc:
        raise CommandError(f"migration failed on {redact(dsn)}: {exc}") from None
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    dsn = args.database_url or load_settings(env_file=DOTENV).database_url
    version = asyncio.run(migrate(dsn))
    print(f"certq: schema version {version} is applied to {redact(dsn)}")
    return EXIT_OK
