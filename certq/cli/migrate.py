"""`python -m certq migrate`: apply schema.sql to DATABASE_URL (safe on every deploy, from many hosts)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from certq.cli import EXIT_OK, CommandError
from certq.settings import load_settings
from certq.store import Store


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
        store = await Store.connect(dsn, min_size=1, max_size=1)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise CommandError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}") from None
    try:
        return await store.migrate()
    except asyncpg.PostgresError as exc:
        raise CommandError(f"migration failed on {redact(dsn)}: {exc}") from None
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    dsn = args.database_url or load_settings().database_url
    version = asyncio.run(migrate(dsn))
    print(f"certq: schema version {version} is applied to {redact(dsn)}")
    return EXIT_OK
