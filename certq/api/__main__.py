"""`python -m certq.api`: the HTTP API on API_HOST:API_PORT (uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn

from certq.settings import STARTUP_FAILURE, SettingsError, load_settings


async def schema_problem(dsn: str) -> str | None:
    """Why the API must not start (an unmigrated database); None when fine or PostgreSQL is not up yet."""
    import asyncpg

    from certq.store import SCHEMA_VERSION
    from certq.store.migrations import current_version

    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        logging.getLogger("certq.api").warning("PostgreSQL does not answer yet; /ready says 503 until it does")
        return None
    try:
        version = await current_version(conn)
    finally:
        await conn.close()
    if version is None or version < SCHEMA_VERSION:
        return (f"the database has schema version {version}, this API needs {SCHEMA_VERSION}: "
                "run `python -m certq migrate`")
    return None


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"certq.api: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    from certq.api.app import create_app
    from certq.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    problem = asyncio.run(schema_problem(settings.database_url))
    if problem is not None:
        print(f"certq.api: {problem}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    app = create_app(settings)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False,
                proxy_headers=False)


if __name__ == "__main__":
    main()
