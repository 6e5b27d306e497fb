"""Every error answer is RFC 9457 application/problem+json naming the offending field; bodies are capped."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("certq.api")

MAX_BODY_BYTES = 64 * 1024
PROBLEM_TYPE = "application/problem+json"

M = TypeVar("M", bound=BaseModel)

_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


class Problem(Exception):
    """Raised anywhere in a route: becomes a problem+json answer."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.kind = kind or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}

    def response(self, instance: str | None = None) -> Response:
        body: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        return Response(orjson.dumps(body), status_code=self.status, media_type=PROBLEM_TYPE, headers=self.headers)


def field_path(loc: tuple[int | str, ...], root: str = "") -> str:
    """('modelIds', 2) -> 'modelIds[2]'; () -> root."""
    path = root
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path or "body"


def validation_problem(exc: ValidationError, *, root: str = "", status: int = 400) -> Problem:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        kind = error["type"]
        where = field_path(tuple(error["loc"]), root)
        if kind == "json_invalid":
            return Problem(400, f"the body is not valid JSON: {error['msg']}", field="body", kind="malformed-json")
        message = {
            "extra_forbidden": "unknown field",
            "missing": "required",
            "model_type": "must be a JSON object",
            "model_attributes_type": "must be a JSON object",
        }.get(kind, error["msg"].removeprefix("Value error, "))
        if kind == "string_pattern_mismatch":
            message = ("a region is letters, digits and . _ : - (e.g. us-east-1 or local)"
                       if where.split("[")[0] in ("region", "regions") else "control characters are not allowed")
        errors.append({"field": where, "message": message})
    first = errors[0]
    detail = f"{first['field']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Problem(status, detail, field=first["field"], kind="invalid-input", errors=errors)


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


def parse_query(request: Request, model: type[M]) -> M:
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = request.query_params.getlist(key)
        if len(items) > 1:
            raise Problem(400, f"{key} is given {len(items)} times", field=key, kind="invalid-input")
        values[key] = items[0]
    try:
        return model.model_validate(values)
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
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return Problem(exc.status_code, detail, field="path" if exc.status_code in (404, 405) else None,
                   headers=dict(exc.headers or {})).response(request.url.path)


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
