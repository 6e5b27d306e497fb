"""Which database errors mean "PostgreSQL is away right now", not "this request or job is wrong"."""

from __future__ import annotations

import asyncpg

WRITE_REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.InsufficientResourcesError,
)
"""A server that answers a `SELECT` but cannot take writes (read-only standby, disk full, out of memory)."""

DATABASE_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.OperatorInterventionError,
    # A database that cannot take writes is away too: a job goes back unburnt (its verdict kept), the API
    # answers 503.
    *WRITE_REFUSED_ERRORS,
    # A pooled connection the server terminated while idle can trip asyncpg's state machine on next use.
    asyncpg.InternalClientError,
)
"""The API answers these 503; a worker hands the job back without burning an attempt."""
