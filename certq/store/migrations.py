"""Applying schema.sql: idempotent, and serialised across processes by an advisory lock."""

from __future__ import annotations

from importlib import resources

from certq.store.base import Conn

# Any constant works; this one is "certq" in ASCII, so it is recognisable in pg_locks.
MIGRATION_LOCK_KEY = 0x6365727471
SCHEMA_VERSION = 6


def schema_sql() -> str:
    """The schema shipped inside the package (the repository's schema.sql is a copy of it)."""
    return resources.files("certq.store").joinpath("schema.sql").read_text(encoding="utf-8")


async def apply_schema(conn: Conn) -> int:
    """Create or complete the schema; return the highest applied version.

    DDL is transactional in PostgreSQL: either the whole file applies or nothing does. The
    transaction-scoped advisory lock makes concurrent deploys wait for each other instead of racing
    on `CREATE ... IF NOT EXISTS` (which is not safe against a concurrent creator).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(schema_sql())
        version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version)


async def current_version(conn: Conn) -> int | None:
    """The applied schema version, or None for a database certq has never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return None
    version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return None if version is None else int(version)
