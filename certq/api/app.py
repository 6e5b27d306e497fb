"""The API application: `create_app(settings, store=..., queue=..., redis=...)`, a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import certq
from certq.api import model_routes, queue_routes, schedule_routes, standing_routes
from certq.api.auth import BearerAuth
from certq.api.board import board_route
from certq.api.openapi import Endpoint, Handler, build_openapi
from certq.api.problems import (
    Problem,
    http_exception_handler,
    problem_handler,
    unavailable_handler,
    unexpected_handler,
)
from certq.api.redirects import RelativeRedirects
from certq.api.services import ApiMetrics, Services, token_set
from certq.connections import connect_redis
from certq.health import Check, HealthProbes, build_health_app
from certq.jobs import queue_config
from certq.metrics import Metrics
from certq.queue.queue import Queue
from certq.settings import Settings
from certq.store import Store
from certq.store.outages import DATABASE_OUTAGE_ERRORS

DEPENDENCY_REFRESH_S = 5.0
"""The API pings Redis and PostgreSQL this often on its own (their gauges feed alerts; /ready is not always called)."""
PING_TIMEOUT_S = 1.5
"""A Redis ping that hangs longer counts as down (below the health routes' 2 s bound, so they record it too)."""

ENDPOINTS: list[Endpoint] = [
    *model_routes.ENDPOINTS,
    *queue_routes.ENDPOINTS,
    *standing_routes.ENDPOINTS,
    *schedule_routes.ENDPOINTS,
]

# A backing service that went away is a 503 to retry, not a 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    *DATABASE_OUTAGE_ERRORS,
    # Also worth a retry for an API caller: a schema not migrated yet, too many clients, a lost race.
    asyncpg.UndefinedTableError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    RedisError,
)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    queue: Queue | None = None,
    redis: Any = None,
    mounts: Sequence[BaseRoute] = (),
    metrics: Metrics | None = None,
) -> Starlette:
    """The HTTP API. Dependencies not given are opened in the lifespan from `settings` (and closed after).

    The dashboard is mounted at BULL_BOARD_PATH (certq.api.board). `mounts` are further routes or
    sub-apps; they can reach the same `Services` (`app.state.services`), filled in by the lifespan
    before the first request.
    """
    services = Services(
        settings=settings,
        tokens=token_set(settings),
        metrics=ApiMetrics(metrics if metrics is not None else Metrics(process=True)),
        store=store,
        queue=queue,
        redis=redis,
    )
    openapi = build_openapi(ENDPOINTS, title="certq API", version=getattr(certq, "__version__", "0.1.0"))

    async def openapi_json(request: Request) -> Response:
        from certq.api.responses import answer

        return answer(200, openapi)

    routes: list[BaseRoute] = route_table(ENDPOINTS)
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    routes.extend(build_health_app(_probes(services)).routes)
    routes.append(board_route(services))
    routes.extend(mounts)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _open(services)
        stop = asyncio.Event()
        refresh = asyncio.create_task(_refresh_dependencies(services, stop), name="certq-api-dependencies")
        try:
            yield
        finally:
            stop.set()
            await refresh
            await _close(services)

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RelativeRedirects),
            Middleware(RequestMetrics, metrics=services.metrics),
            Middleware(BearerAuth, tokens=services.tokens, prefix="/api"),
        ],
        exception_handlers={
            Problem: problem_handler,
            HTTPException: http_exception_handler,
            **{kind: unavailable_handler for kind in UNAVAILABLE},
            Exception: unexpected_handler,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def route_table(endpoints: list[Endpoint]) -> list[BaseRoute]:
    """One Route per path, so a 405 names every method the path allows (its Allow header)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    routes: list[BaseRoute] = []
    for path, methods in by_path.items():
        if len(methods) == 1:
            [only] = methods.values()
            routes.append(Route(path, only.handler, methods=[only.method], name=only.handler.__name__))
            continue

        def dispatcher(table: dict[str, Endpoint]) -> Handler:
            async def dispatch(request: Request) -> Response:
                handler = table["GET" if request.method == "HEAD" else request.method].handler
                request.scope["endpoint"] = handler  # metrics label the route by its handler's name
                response: Response = await handler(request)
                return response

            return dispatch

        routes.append(Route(path, dispatcher(methods), methods=list(methods)))
    return routes


async def _open(services: Services) -> None:
    settings = services.settings
    if services.store is None:
        # min_size=0: the API starts (and /ready says 503) while PostgreSQL is still coming up.
        services.store = await Store.connect(settings.database_url, min_size=0, max_size=20)
        services.owned.append("store")
    if services.queue is None:
        if services.redis is None:
            services.redis = connect_redis(settings)
            services.owned.append("redis")
        services.queue = Queue(services.redis, queue_config(settings))
    elif services.redis is None:
        services.redis = services.queue.redis


async def _close(services: Services) -> None:
    if "store" in services.owned and services.store is not None:
        await services.store.close()
    if "redis" in services.owned and services.redis is not None:
        await services.redis.aclose()
    services.owned.clear()


async def _redis_check(services: Services) -> Check:
    """Ping Redis and record the answer in `certq_redis_up` (and the last-success time)."""
    try:
        await asyncio.wait_for(services.redis.ping(), PING_TIMEOUT_S)
    except Exception as exc:
        services.metrics.base.redis_answered(False)
        return Check(False, f"Redis: {type(exc).__name__}: {exc}")
    services.metrics.base.redis_answered(True)
    return Check(True)


async def _database_check(services: Services) -> bool:
    """Ping PostgreSQL and record the answer in `certq_database_up`."""
    try:
        ok = services.store is not None and await services.store.ping()
    except Exception:  # ping answers False for an outage; anything else is no answer either
        ok = False
    services.metrics.base.database_answered(ok)
    return ok


async def _refresh_dependencies(services: Services, stop: asyncio.Event) -> None:
    """Ask Redis and PostgreSQL every DEPENDENCY_REFRESH_S, so their gauges are true while nobody calls /ready."""
    while not stop.is_set():
        await asyncio.gather(_redis_check(services), _database_check(services))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DEPENDENCY_REFRESH_S)


def _probes(services: Services) -> HealthProbes:
    settings = services.settings

    def describe() -> dict[str, Any]:
        return {
            "isRunning": services.store is not None,
            "queueName": settings.queue_name,
            "prefix": settings.queue_prefix,
        }

    async def redis_check() -> Check:
        return await _redis_check(services)

    async def ready() -> Check:
        redis_ok, db_ok = await asyncio.gather(_redis_check(services), _database_check(services))
        if not db_ok:
            return Check(False, "PostgreSQL does not answer")
        return redis_ok

    async def queue_counts() -> Mapping[str, int]:
        counts: dict[str, int] = await services.queue.counts()
        return counts

    async def before_scrape() -> None:
        services.metrics.base.set_queue_counts(settings.queue_name, await queue_counts())

    return HealthProbes(
        describe=describe,
        health=redis_check,
        ready=ready,
        queue_counts=queue_counts,
        registry=services.metrics.base.registry,
        before_scrape=before_scrape,
        subject="api",
    )


class RequestMetrics:
    """Counts and times every HTTP request by route name (bounded label values: unmatched paths are "other")."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "other") if endpoint is not None else "other"
            self.metrics.requests.labels(scope["method"], route, f"{status // 100}xx").inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
