"""A migrated PostgreSQL database of one test's own, created on the test server and dropped afterwards.

For tests whose assertions cover a whole database (a reconcile pass, "every active model", row counts) or
that break it (read-only, stopped): the session's shared database holds every other test's rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(server_url: str, database: str) -> str:
    """`server_url` pointing at `database` instead."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


@asynccontextmanager
async def own_database(server_url: str, label: str, *, migrate: bool = True) -> AsyncIterator[tuple[str, str]]:
    """`(name, url)` of a new database `certq_test_<label>_<random>`, migrated unless `migrate=False` (empty, for
    the migration's own tests); dropped on exit (WITH FORCE)."""
    from certq.store import Store

    name = f"certq_test_{label}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        if migrate:
            store = await Store.connect(url, min_size=1, max_size=1)
            try:
                await store.migrate()
            finally:
                await store.close()
        yield name, url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextmanager
def empty_database(server_url: str, label: str) -> Iterator[str]:
    """The URL of a new, empty database `certq_test_<label>_<random>`, for code outside an event loop (session
    fixtures, tests that run a subprocess); dropped on exit (WITH FORCE). Connecting is retried for 5 s: a
    throwaway server may still be starting."""
    name = f"certq_test_{label}_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        for attempt in range(50):
            try:
                conn = await asyncpg.connect(server_url)
                break
            except (OSError, asyncpg.CannotConnectNowError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
