"""`python -m certq reconcile`: re-enqueue accepted certifications that Redis lost; close orphaned ones."""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from certq.cli import EXIT_OK, CommandError
from certq.cli.common import (
    EXIT_UNAVAILABLE,
    add_connection_options,
    non_negative_seconds,
    redact_url,
    redis_connection,
    run_async,
    settings_from,
)
from certq.jobs import queue_config
from certq.queue.queue import Queue
from certq.reconcile import reconcile
from certq.store import Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconcile", help="re-enqueue queued/running certifications missing from Redis (PostgreSQL is the truth)"
    )
    add_connection_options(parser, database=True)
    parser.add_argument(
        "--older-than",
        type=non_negative_seconds,
        default=30.0,
        metavar="SECONDS",
        help="only runs untouched for this long (younger ones may be being enqueued now; default 30)",
    )
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many runs per pass")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.older_than < 0 or args.limit < 1:
        raise CommandError("--older-than must be >= 0 and --limit >= 1", 2)

    async def go() -> str:
        try:
            store = await Store.connect(settings.database_url, min_size=1, max_size=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise CommandError(
                f"cannot reach PostgreSQL at {redact_url(settings.database_url)}: {exc}", EXIT_UNAVAILABLE
            ) from None
        try:
            async with redis_connection(settings) as redis:
                queue = Queue(redis, queue_config(settings))
                report = await reconcile(store, queue, settings, older_than_s=args.older_than, limit=args.limit)
                return str(report)
        finally:
            await store.close()

    print(f"certq: {run_async(go)}")
    return EXIT_OK
