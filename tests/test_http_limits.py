"""Request-head limits of the API and the health port over real sockets: size, count, deadline, keep-alive.

Each test runs against both servers certq builds: uvicorn configured as `python -m certq.api` configures
it (`server_options()`), and the worker's `HealthServer`. Clients are raw blocking sockets run in threads,
because the servers share this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certq.health import HealthServer
from certq.http_limits import MAX_HEADER_BYTES, MAX_HEADERS, LimitedH11Protocol, server_options

pytestmark = pytest.mark.timeout(60)

FLOOD_BYTES = 50 * 1024 * 1024
FLOODS = 4
MIB = 1024 * 1024
SHORT_DEADLINE_S = 1.0
"""The head deadline these tests run with (HEADER_TIMEOUT_S is 10 s): each patience test takes about this."""


def _app() -> Starlette:
    async def root(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params["s"]))
        return PlainTextResponse("slow ok")

    return Starlette(routes=[Route("/", root), Route("/slow", slow)])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its own signal handling
        yield


@contextlib.asynccontextmanager
async def _api_server() -> AsyncIterator[int]:
    """uvicorn with the options `certq.api.__main__` passes to `uvicorn.run`, in this loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _app(), log_config=None, access_log=False, proxy_headers=False, lifespan="off", **server_options()
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped during start-up")
                await asyncio.sleep(0.01)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def _health_server() -> AsyncIterator[int]:
    server = HealthServer(_app(), "127.0.0.1", 0)
    await server.start()
    try:
        yield server.port
    finally:
        await server.stop()


@pytest.fixture(params=["api", "health"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    serve = _api_server if request.param == "api" else _health_server
    async with serve() as bound:
        yield bound


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(LimitedH11Protocol, "header_timeout_s", SHORT_DEADLINE_S)
    return SHORT_DEADLINE_S


# --- raw-socket clients (blocking: run with asyncio.to_thread) ---


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _drain(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed); at most 1 MiB."""
    received = b""
    try:
        while len(received) < MIB and (chunk := sock.recv(65536)):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open after sending {received[:200]!r}") from None
    except OSError:
        pass
    return received


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """One response read off a keep-alive connection: status and body (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MIB:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    framed = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    assert framed is not None, head
    length = int(framed.group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(head.split()[1]), body


def _status(raw: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return int(match.group(1)) if match else None


def _get(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def _flood(sock: socket.socket, total: int) -> int:
    """Send one header of `total` bytes in 64 KiB chunks until the server answers or stops reading; bytes sent."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nX-Flood: ")
    chunk = b"a" * 65536
    sent = 0
    while sent < total:
        if select.select([sock], [], [], 0)[0]:  # an answer (or a close) is waiting
            break
        try:
            sock.sendall(chunk)
        except OSError:  # reset by the server, or 5 s without it reading
            break
        sent += len(chunk)
    return sent


def _trickle(sock: socket.socket, head: bytes, every_s: float, limit_s: float) -> float | None:
    """Send `head` one byte every `every_s`; seconds until the server answered or closed, None if it never did."""
    started = time.monotonic()
    for byte in head:
        if time.monotonic() - started > limit_s:
            return None
        if select.select([sock], [], [], every_s)[0]:
            return time.monotonic() - started
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return time.monotonic() - started
    return None


def _rss() -> int:
    return _rss_of("self")


def _rss_of(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _floods(port: int, rss: Callable[[], int]) -> tuple[list[int], list[bytes], int]:
    """FLOODS concurrent 50 MB headers; bytes each sent, what each got back, RSS growth while all were open."""
    sockets = [await asyncio.to_thread(_connect, port) for _ in range(FLOODS)]
    try:
        before = rss()
        sent = await asyncio.gather(*(asyncio.to_thread(_flood, sock, FLOOD_BYTES) for sock in sockets))
        grown = rss() - before
        answers = await asyncio.gather(*(asyncio.to_thread(_drain, sock) for sock in sockets))
    finally:
        for sock in sockets:
            sock.close()
    return list(sent), list(answers), grown


# --- size and count ---


async def test_a_50_mb_header_is_refused_with_431_early_and_memory_stays_flat(port: int) -> None:
    sent, answers, grown = await _floods(port, _rss)
    assert [_status(answer) for answer in answers] == [431] * FLOODS, answers
    # What was sent beyond the 64 KiB the server read sits in the two kernels' socket buffers (MBs on loopback).
    assert max(sent) < 16 * MIB, f"{max(sent)} bytes of a header were sent before the server refused it"
    assert grown < 64 * MIB, f"RSS grew by {grown / MIB:.0f} MiB for {FLOODS} oversized heads"


async def test_more_than_max_headers_fields_is_431_and_closes(port: int) -> None:
    head = b"GET / HTTP/1.1\r\nHost: test\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)) + b"\r\n"

    def send() -> bytes:
        with _connect(port) as sock:
            sock.sendall(head)
            return _drain(sock)

    answer = await asyncio.to_thread(send)
    assert _status(answer) == 431, answer


async def test_a_head_of_max_headers_fields_just_under_max_header_bytes_is_served(port: int) -> None:
    value = b"c" * ((MAX_HEADER_BYTES - 2048) // MAX_HEADERS)
    fields = b"".join(b"X-H%d: %s\r\n" % (i, value) for i in range(MAX_HEADERS - 1))
    head = b"GET / HTTP/1.1\r\nHost: test\r\n" + fields + b"\r\n"
    assert len(head) < MAX_HEADER_BYTES

    def send() -> tuple[int, bytes]:
        with _connect(port) as sock:
            sock.sendall(head)
            return _response(sock)

    assert await asyncio.to_thread(send) == (200, b"ok")


# --- deadlines ---


async def test_a_slowloris_head_is_answered_408_and_closed_at_the_deadline(port: int, short_deadline: float) -> None:
    def slowloris() -> tuple[float | None, bytes]:
        with _connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n")
            waited = _trickle(sock, b"X-Slow: " + b"a" * 100, every_s=0.2, limit_s=short_deadline + 3)
            return waited, _drain(sock)

    waited, answer = await asyncio.to_thread(slowloris)
    assert waited is not None, "a client trickling its head was never cut off"
    assert short_deadline - 0.2 <= waited < short_deadline + 1.5
    assert _status(answer) == 408 and answer.endswith(f"within {short_deadline:g}s".encode()), answer


async def test_the_deadline_is_rearmed_for_the_next_head_on_a_keep_alive_connection(
    port: int, short_deadline: float
) -> None:
    def second_request_trickled() -> tuple[tuple[int, bytes], float | None, bytes]:
        with _connect(port) as sock:
            sock.sendall(_get())
            first = _response(sock)
            waited = _trickle(sock, _get(), every_s=0.2, limit_s=short_deadline + 3)
            return first, waited, _drain(sock)

    first, waited, answer = await asyncio.to_thread(second_request_trickled)
    assert first == (200, b"ok")
    assert waited is not None and waited < short_deadline + 1.5, waited
    assert _status(answer) == 408, answer


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(port: int, short_deadline: float) -> None:
    def idle() -> tuple[float, bytes]:
        with _connect(port) as sock:
            started = time.monotonic()
            select.select([sock], [], [], short_deadline + 3)
            return time.monotonic() - started, _drain(sock)

    waited, answer = await asyncio.to_thread(idle)
    assert waited < short_deadline + 1.5
    assert answer == b""  # nothing was asked, so nothing is answered: the connection is just closed


# --- what must keep working ---


async def test_a_normal_request_is_served_and_the_connection_kept_alive(port: int) -> None:
    def two_requests() -> list[tuple[int, bytes]]:
        with _connect(port) as sock:
            sock.sendall(_get())
            first = _response(sock)
            sock.sendall(_get())
            return [first, _response(sock)]

    assert await asyncio.to_thread(two_requests) == [(200, b"ok"), (200, b"ok")]


async def test_the_deadline_does_not_cut_a_request_the_app_is_still_answering(port: int, short_deadline: float) -> None:
    def slow_answer() -> list[tuple[int, bytes]]:
        with _connect(port) as sock:
            sock.sendall(_get(f"/slow?s={short_deadline * 1.5}"))
            first = _response(sock)
            sock.sendall(_get())  # and the connection is still good for the next one
            return [first, _response(sock)]

    assert await asyncio.to_thread(slow_answer) == [(200, b"slow ok"), (200, b"ok")]


# --- the API process itself ---


@pytest.fixture
def api_process(
    migrated_database_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> Iterator[tuple[int, int]]:
    """`python -m certq.api` on a free loopback port: (pid, port)."""
    with socket.socket() as probe:  # uvicorn's start-up line is silenced by certq's logging: pick the port here
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BULL_", "DATABASE_", "API_", "LOG_"))}
    env |= {
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": redis_url,
        "BULL_QUEUE_PREFIX": key_prefix,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_TOKENS": f"test-{uuid.uuid4().hex}",
    }
    log = tmp_path / "api.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "certq.api"], env=env, stderr=stderr)
    try:
        _wait_listening(process, port, log, 30)
        yield process.pid, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.slow
async def test_the_api_process_refuses_50_mb_headers_without_growing(api_process: tuple[int, int]) -> None:
    pid, port = api_process
    sent, answers, grown = await _floods(port, lambda: _rss_of(pid))
    assert [_status(answer) for answer in answers] == [431] * FLOODS, answers
    assert max(sent) < 16 * MIB
    assert grown < 64 * MIB, f"the API's RSS grew by {grown / MIB:.0f} MiB for {FLOODS} oversized heads"

    def live() -> tuple[int, bytes]:
        with _connect(port) as sock:
            sock.sendall(_get("/live"))
            return _response(sock)

    assert (await asyncio.to_thread(live))[0] == 200


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the API exited with {process.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # a process starting: nothing to await but its port
    raise AssertionError(f"the API did not listen on {port} within {timeout_s:g}s")
