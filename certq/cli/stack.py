"""The demo's private processes (Redis, PostgreSQL, model server, API, worker): started in order, stopped
in reverse, by their own pids, whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from certq.embedded import free_port, port_answers


class StackError(Exception):
    """A part of the demo did not start; the message says which and where its log is."""


@dataclass
class Child:
    """A process this stack started, with the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout_s: float = 10.0

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Owns everything the demo started; `close()` stops it all in reverse order (idempotent)."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="certq-demo-")))
    _stops: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    children: dict[str, Child] = field(default_factory=dict)

    def on_close(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str], stop_timeout_s: float = 10.0) -> Child:
        """Start `argv` in its own session, so a terminal's Ctrl-C reaches the demo, which stops it in order."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                list(argv),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, process, log_path, stop_timeout_s)
        self.children[name] = child
        self.on_close(name, child.stop)
        return child

    def wait_http(self, child: Child, url: str, timeout_s: float, ok: Callable[[httpx.Response], bool]) -> None:
        """Return when GET `url` satisfies `ok`; StackError with the child's log tail if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise StackError(
                    f"{child.name} exited with code {child.process.returncode}; its log "
                    f"({child.log_path}) ends with:\n{child.log_tail()}"
                )
            try:
                if ok(httpx.get(url, timeout=2)):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(
            f"{child.name} did not answer {url} within {timeout_s:g}s; its log ({child.log_path}) "
            f"ends with:\n{child.log_tail()}"
        )

    def close(self, say: Callable[[str], None] | None = None) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            if say is not None:
                try:
                    say(f"stopping {name}")
                except OSError:  # the reader went away (`demo | head`): stop the rest silently
                    say = None
            try:
                stop()
            except Exception as exc:  # keep stopping the others whatever one of them does
                with contextlib.suppress(OSError):
                    print(f"certq demo: stopping {name} failed: {exc}", file=sys.stderr)


def pick_port(preferred: int, what: str = "it", say: Callable[[str], None] | None = None) -> int:
    """`preferred` when nothing listens there, else any free port, saying so through `say`."""
    if not port_answers("127.0.0.1", preferred):
        return preferred
    port = free_port()
    if say is not None:
        say(
            f"port {preferred} is taken (another demo still running? `ss -ltnp 'sport = :{preferred}'` shows "
            f"who has it): {what} uses port {port} instead"
        )
    return port


def child_env(variables: dict[str, str], drop: frozenset[str] = frozenset()) -> dict[str, str]:
    """This process's environment without `drop`, plus `variables` (children inherit provider credentials)."""
    inherited = {name: value for name, value in os.environ.items() if name not in drop}
    return {**inherited, "PYTHONUNBUFFERED": "1", **variables}


class Ticker:
    """Rewrites one status line on a terminal; prints only changes when output is not a terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
        self._last = ""
