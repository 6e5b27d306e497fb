"""The event loop the worker daemon and the CLI run on: uvloop where installed (a dependency off Windows, as
uvicorn picks it for the API), else asyncio's own."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
