"""One in-loop server for the tests: the product's own (certq.health.HealthServer), with lifespan on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from certq.health import HealthServer


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan on) on a free loopback port in this event loop, with the product's own
    in-loop server (certq.health.HealthServer: h11 with bounded heads, as `python -m certq.api`); yields its URL."""
    server = HealthServer(app, "127.0.0.1", 0, lifespan=True)
    async with asyncio.timeout(20):
        await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        async with asyncio.timeout(20):
            await server.stop()
