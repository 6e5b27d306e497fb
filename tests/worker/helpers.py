"""Helpers for the worker tests: worker processes read by their JSON logs, waiting on queue events."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from certq.queue import Job, Queue

QUEUE_NAME = "model-certification"
SCRIPTED = "certq.worker.testing:scripted"

SpawnWorker = Callable[..., "WorkerProcess"]


@dataclass
class WorkerProcess:
    """A `python -m certq.worker` child; its JSON log lines are collected as they arrive."""

    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    pass
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, message: str) -> list[dict[str, Any]]:
        with self.changed:
            return [line for line in self.lines if line.get("message") == message]

    def _wait_sync(self, message: str, count: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines if line.get("message") == message]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not found):
                    raise AssertionError(f"no {count}x {message!r} within {timeout}s; log:\n{''.join(self.raw[-30:])}")
                self.changed.wait(left)

    async def wait_log(self, message: str, count: int = 1, within: float = 20.0) -> dict[str, Any]:
        """The `count`-th log line with this message, once it is written."""
        return await asyncio.to_thread(self._wait_sync, message, count, within)

    async def started(self) -> int:
        """Wait for start-up; return the health port."""
        return int((await self.wait_log("worker started"))["health_port"])

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def exit_code(self, within: float = 20.0) -> int:
        return await asyncio.to_thread(self.process.wait, within)


async def wait_finished(queue: Queue, ids: Iterable[str], within: float = 30.0) -> list[Job]:
    """Wait (on the queue's event stream, not a timer) until every job is completed or failed."""
    wanted = list(ids)
    last = "0"
    deadline = asyncio.get_running_loop().time() + within
    while True:
        jobs = await queue.get_many(wanted)
        if all(job.state.value in ("completed", "failed") for job in jobs):
            return jobs
        if asyncio.get_running_loop().time() > deadline:
            states = {job.id: job.state.value for job in jobs}
            raise AssertionError(f"jobs not finished within {within}s: {states}")
        entries = await queue.events(last, 1000, block_ms=500)
        if entries:
            last = entries[-1][0]


async def http_get(port: int, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return await client.get(path, headers=headers)


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant (a start at the same instant as a finish does not overlap it)."""
    points = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda point: (point[0], point[1]),
    )
    running = best = 0
    for _, step in points:
        running += step
        best = max(best, running)
    return best


async def wait_status(
    port: int, path: str, status: int, within: float = 20.0, *, reason: str | None = None
) -> httpx.Response:
    """Ask a worker's health port until it answers `status` (a child process has no event to await), and,
    given `reason`, a body whose reason holds it (a passing state may be answered first on the way)."""
    deadline = asyncio.get_running_loop().time() + within
    last: object = None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                last = exc
            else:
                if response.status_code == status and (reason is None or reason in response.text):
                    return response
                last = (response.status_code, response.text)
            await asyncio.sleep(0.1)
    raise AssertionError(f"{path} did not answer {status} within {within}s; last: {last!r}")
