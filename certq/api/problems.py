"""The API's input edge: capped JSON bodies and ids parsed into problems naming the field; the error handlers."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from certq.problems import Problem, title_of
from certq.web_input import parse_query, validation_problem

# Problem, parse_query and validation_problem are re-exported: the routes import them from here.
__all__ = [
    "MAX_BODY_BYTES",
    "Problem",
    "http_exception_handler",
    "parse_body",
    "parse_query",
    "parse_uuid",
    "problem_handler",
    "read_body",
    "unavailable_handler",
    "unexpected_handler",
    "validation_problem",
]

log = logging.getLogger("certq.api")

MAX_BODY_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request) -> bytes:
    """The raw body, refused above MAX_BODY_BYTES without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "Content-Length is not a number", field="Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise Problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[M]) -> tuple[M, bytes]:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise Problem(415, f"send application/json, not {content_type}", field="Content-Type")
    raw = await read_body(request)
    if not raw.strip():
        raise Problem(400, "the body is empty; send a JSON object", field="body", kind="malformed-json")
    try:
        return model.model_validate_json(raw, strict=True), raw
    except ValidationError as exc:
        raise validation_problem(exc) from None


def parse_uuid(value: str, field: str) -> Any:
    from uuid import UUID

    try:
        return UUID(value)
    except ValueError:
        raise Problem(400, f"{field} must be a UUID, not {value[:80]!r}", field=field, kind="invalid-id") from None


async def problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response(request.url.path)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else title_of(exc.status_code)
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return Problem(
        exc.status_code,
        detail,
        field="path" if exc.status_code in (404, 405) else None,
        headers=dict(exc.headers or {}),
    ).response(request.url.path)


async def unavailable_handler(request: Request, exc: Exception) -> Response:
    """PostgreSQL or Redis went away mid-request: 503 (retry later), not a 500."""
    import asyncpg

    if isinstance(exc, asyncpg.UndefinedTableError):
        detail = "the database has no certq schema: run `python -m certq migrate`"
    elif isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        detail = "the request collided with a concurrent one; retry it"
    elif isinstance(exc, asyncpg.ReadOnlySQLTransactionError | asyncpg.InsufficientResourcesError):
        detail = "PostgreSQL cannot take writes right now (read-only or out of resources); retry later"
    elif isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        detail = "PostgreSQL is not available right now; retry later"
    else:
        detail = f"a backing service is not available right now ({type(exc).__name__}); retry later"
    log.warning("503 on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return Problem(503, detail, kind="unavailable", headers={"Retry-After": "5"}).response(request.url.path)


async def unexpected_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Problem(500, "internal error; the server log has the details", kind="internal").response(request.url.path)
