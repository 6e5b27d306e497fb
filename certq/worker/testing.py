"""Job handlers for tests and benchmarks of the real daemon (`--handler certq.worker.testing:scripted`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from certq.queue import ActiveJob, JobFailed


async def noop(active: ActiveJob) -> None:
    """Does nothing: measures the queue and the daemon alone."""


async def scripted(active: ActiveJob) -> dict[str, Any]:
    """Does what the payload says and reports when it ran, so tests can check concurrency from timestamps.

    Payload keys (all optional): `sleep` seconds; `fail` message (raises JobFailed, with `final` and
    `category`); `fail_attempts` fails only attempts up to that number; `marker` a file path where
    "cancelled" is written if the job is cancelled mid-sleep (proof its coroutine really stopped);
    `ignore_cancel` keeps sleeping through every cancellation (a misbehaving handler).
    """
    payload = active.job.payload
    started = time.time()
    try:
        await asyncio.sleep(float(payload.get("sleep", 0)))
    except asyncio.CancelledError:
        marker = payload.get("marker")
        if marker:
            note = f"cancelled attempt {active.attempt} after {time.time() - started:.3f}s\n"
            Path(marker).write_text(note)  # noqa: ASYNC240 - a few bytes, and the loop must not switch tasks here
        while payload.get("ignore_cancel"):  # a misbehaving handler, for the daemon's last resort
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
        raise
    if payload.get("fail") and active.attempt <= int(payload.get("fail_attempts", 1_000_000)):
        raise JobFailed(str(payload["fail"]), final=bool(payload.get("final")), category=payload.get("category"))
    return {"pid": os.getpid(), "started": started, "finished": time.time(), "attempt": active.attempt}
