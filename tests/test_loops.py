"""The worker and the CLI run on uvloop where it is installed, and on asyncio's loop where it is not."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from certq.loops import new_event_loop


def test_uvloop_is_the_loop_where_it_is_installed() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncios_loop_is_the_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop) and not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
