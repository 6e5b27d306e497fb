"""The /admin/queues sub-app: the page, its static files and JSON endpoints, all behind the guard."""

from __future__ import annotations

import html
import logging
from importlib import resources

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from certq.dashboard import cert_views, queue_views, schedule_views
from certq.dashboard.guard import BoardGuard
from certq.dashboard.ports import BoardDeps
from certq.dashboard.web import JSON, user_of
from certq.problems import Problem
from certq.queue.errors import InvalidJob, JobNotFound, JobStateError, QueueError
from certq.settings import Settings
from certq.store.dashboard import DashboardQueries

STATIC = "certq.dashboard"
log = logging.getLogger("certq.dashboard")


def _page() -> str:
    return resources.files(STATIC).joinpath("static/index.html").read_text(encoding="utf-8")


async def index(request: Request) -> Response:
    # The page is served at the mount path with or without a trailing slash; <base> makes its
    # relative URLs (static files, api/...) resolve under the mount either way.
    base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
    page = _page().replace("__BASE__", base).replace("__USER__", html.escape(user_of(request)))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def me(request: Request) -> Response:
    return JSON(
        {"user": user_of(request), "role": "read" if request.scope.get("state", {}).get("board_read_only") else "admin"}
    )


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response(request.url.path)


async def _queue_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, JobNotFound):
        problem = Problem(404, str(exc), field="jobId")
    elif isinstance(exc, InvalidJob):
        problem = Problem(400, exc.message, field=exc.field)
    elif isinstance(exc, JobStateError):
        problem = Problem(409, str(exc), field="jobId")
    else:
        problem = Problem(409, str(exc))
    return problem.response(request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer in the console's problem+json too, not Starlette's text/plain.
    assert isinstance(exc, HTTPException)
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    field = "path" if exc.status_code in (404, 405) else None
    return Problem(exc.status_code, detail, field=field, headers=dict(exc.headers or {})).response(request.url.path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem(500, "internal error; the server log has the details", kind="internal").response(request.url.path)


async def _outage(request: Request, exc: Exception) -> Response:
    # Redis or PostgreSQL down: the console says so (and keeps polling) instead of a bare 500.
    detail = f"{_backend(exc)} is not answering: {type(exc).__name__}: {exc}"
    return Problem(503, detail, kind="unavailable").response(request.url.path)


def _backend(exc: Exception) -> str:
    return "PostgreSQL" if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) else "Redis"


OUTAGES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisClusterException,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
    TimeoutError,
)


def create_board(settings: Settings, deps: BoardDeps) -> ASGIApp:
    """The dashboard app to mount at `settings.board_path` (`app.mount(settings.board_path, board)`)."""
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/me", me),
            *queue_views.routes,
            *cert_views.routes,
            *schedule_views.routes,
            Mount("/static", StaticFiles(packages=[(STATIC, "static")]), name="static"),
        ],
        exception_handlers={
            Problem: _problem,
            QueueError: _queue_error,
            HTTPException: _http_error,
            **{kind: _outage for kind in OUTAGES},
            Exception: _unexpected,
        },
        middleware=[Middleware(GZipMiddleware, minimum_size=1024)],
    )
    app.state.board_deps = deps

    async def audit_failed_login(client: str, user: str | None, path: str, failures: int) -> None:
        store = deps.store
        if store is None:
            return
        try:
            await DashboardQueries(store.pool).record_audit(
                actor=f"login:{user}" if user else "login:?",
                action="login.failed",
                target=path,
                detail={"failuresInWindow": failures},
                outcome="refused",
                remote_addr=client,
            )
        except Exception as exc:  # the refusal stands whether or not the audit row could be written
            log.warning("failed login not audited", extra={"error": f"{type(exc).__name__}: {exc}"})

    return BoardGuard(
        app,
        username=settings.board_username,
        password=settings.board_password,
        read_only=settings.board_read_only,
        on_failed_login=audit_failed_login,
    )
