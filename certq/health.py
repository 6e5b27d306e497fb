"""Health endpoints (/health, /ready, /live, /metrics) built from callables, and an embeddable server.

The app knows nothing of queues or certifications: the process hands it a description of itself,
async checks and a metrics registry. `HealthServer` runs it with uvicorn inside the caller's event
loop without taking over the process's signals (the caller owns shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certq.http_limits import server_options
from certq.metrics import render_prometheus
from certq.problems import Problem

CHECK_TIMEOUT_S = 2.0
"""A probe answers within this even when what it checks hangs (a half-open TCP connection)."""

QUEUE_JSON_STATES = ("waiting", "active", "completed", "failed", "delayed")


@dataclass(frozen=True, slots=True)
class Check:
    """The result of one check: `reason` says what is wrong when not `ok`; `details` are shown either way."""

    ok: bool
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HealthProbes:
    """What the health app asks the process it runs in.

    `describe()` is the `"worker"` object of the responses; `health()` says whether the process can
    reach what it depends on (503 otherwise); `ready()` whether it is doing its work now;
    `queue_counts()` feeds the JSON form of /metrics; `before_scrape()` refreshes gauges that are read
    at scrape time (queue lengths) before the registry is rendered.
    """

    describe: Callable[[], dict[str, Any]]
    health: Callable[[], Awaitable[Check]]
    ready: Callable[[], Awaitable[Check]]
    queue_counts: Callable[[], Awaitable[Mapping[str, int]]]
    registry: CollectorRegistry
    before_scrape: Callable[[], Awaitable[None]] | None = None
    subject: str = "worker"


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


async def _bounded(check: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return Check(False, f"check did not answer within {CHECK_TIMEOUT_S:g}s")
    except Exception as exc:  # a broken check is an unhealthy answer, never a 500
        return Check(False, f"{type(exc).__name__}: {exc}")


def _wants_json(accept: str) -> bool:
    """The seed's JSON only when asked for it; Prometheus (text/plain, openmetrics, */*) otherwise."""
    accept = accept.lower()
    return "application/json" in accept and "text/plain" not in accept and "openmetrics" not in accept


def build_health_app(probes: HealthProbes) -> Starlette:
    async def health(request: Request) -> Response:
        result = await _bounded(probes.health)
        body: dict[str, Any] = {"status": "healthy" if result.ok else "unhealthy", probes.subject: probes.describe()}
        if not result.ok:
            body["reason"] = result.reason
        body.update(result.details)
        body["timestamp"] = iso_now()
        return JSONResponse(body, status_code=200 if result.ok else 503)

    async def ready(request: Request) -> Response:
        result = await _bounded(probes.ready)
        body: dict[str, Any] = {"ready": result.ok}
        if not result.ok:
            body["reason"] = result.reason
        body.update(result.details)
        body["timestamp"] = iso_now()
        return JSONResponse(body, status_code=200 if result.ok else 503)

    async def live(request: Request) -> Response:
        return JSONResponse({"alive": True, "timestamp": iso_now()})

    async def metrics(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if _wants_json(accept):
            return await _metrics_json()
        if probes.before_scrape is not None:
            # Stale gauges (and certq_redis_up 0) beat a failed scrape while Redis is away.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(probes.before_scrape(), CHECK_TIMEOUT_S)
        body, content_type = render_prometheus(probes.registry, accept)
        return Response(body, media_type=content_type)

    async def _metrics_json() -> Response:
        body: dict[str, Any] = {probes.subject: probes.describe()}
        try:
            counts = await asyncio.wait_for(probes.queue_counts(), CHECK_TIMEOUT_S)
        except Exception as exc:
            body.update(queue=None, error=f"queue counts unavailable: {type(exc).__name__}: {exc}", timestamp=iso_now())
            return JSONResponse(body, status_code=503)
        body["queue"] = {state: int(counts.get(state, 0)) for state in QUEUE_JSON_STATES}
        body["timestamp"] = iso_now()
        return JSONResponse(body)

    routes = [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/ready", ready, methods=["GET", "HEAD"]),
        Route("/live", live, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _problem})


async def _problem(request: Request, exc: Exception) -> Response:
    """404/405 and friends as application/problem+json, like every API error (this port has no other errors)."""
    assert isinstance(exc, HTTPException)
    detail = (
        f"{request.method} is not allowed on {request.url.path}"
        if exc.status_code == 405
        else f"no such endpoint {request.url.path}: this port serves /health, /ready, /live and /metrics"
        if exc.status_code == 404
        else str(exc.detail)
    )
    return Problem(exc.status_code, detail, headers=dict(exc.headers or {})).response(request.url.path)


class _ServerWithoutSignals(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.wake = asyncio.Event()

    # The embedding process owns SIGTERM/SIGINT: uvicorn would otherwise replace its handlers while serving.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        # uvicorn ticks ten times a second; once a second (date header) plus a wake-up on stop keeps an idle
        # worker idle.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)


class HealthServer:
    """Serves an ASGI app with uvicorn as a task of the running loop.

    `bind()` opens the listening socket (so a port in use is an error the caller can report before
    anything else starts); `start()` serves; `stop()` closes it. `lifespan=True` runs the app's start-up and
    shut-down as `python -m certq.api` does (the tests serve the whole API this way).
    """

    def __init__(self, app: Any, host: str, port: int, *, lifespan: bool = False) -> None:
        self.host = host
        self.requested_port = port
        self._socket: socket.socket | None = None
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on" if lifespan else "off",
            timeout_graceful_shutdown=2,
            **server_options(),
        )
        self._server = _ServerWithoutSignals(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            return self.requested_port
        return int(self._socket.getsockname()[1])

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    async def start(self) -> None:
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="health-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("health server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            self._server.wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
