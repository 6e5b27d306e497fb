"""Request helpers shared by the dashboard's routes: query and body parsing, JSON of records, the audit call."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import AfterValidator, BaseModel, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response

from certq.dashboard.ports import BoardDeps, BoardQueue
from certq.problems import Problem
from certq.queue.errors import QueueError
from certq.store import Store
from certq.store.dashboard import DashboardQueries
from certq.web_input import Query

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def deps(request: Request) -> BoardDeps:
    found: BoardDeps = request.app.state.board_deps
    return found


def queue_of(request: Request) -> BoardQueue:
    queue = deps(request).queue
    if queue is None:
        raise Problem(503, "the queue is not connected yet")
    return queue


def store_of(request: Request) -> Store:
    store = deps(request).store
    if store is None:
        raise Problem(503, "the database is not connected yet")
    return store


def queries_of(request: Request) -> DashboardQueries:
    return DashboardQueries(store_of(request).pool)


def run_json(record: Any) -> dict[str, Any]:
    """A certification run (store record) as the dashboard's JSON: camelCase like the API."""
    metrics = record.metrics or {}
    latency = (metrics.get("latencyMs") or {}).get("p50") if isinstance(metrics, dict) else None
    return {
        "id": str(record.id),
        "jobId": str(record.job_id),
        "modelId": str(record.model_id),
        "modelName": record.model_name,
        "apiModelId": record.api_model_id,
        "region": record.region,
        "status": record.status,
        "priority": record.priority,
        "attempts": record.attempts,
        "attemptLog": record.attempt_log,
        "passed": record.passed,
        "score": record.score,
        "rating": record.rating,
        "testResults": record.test_results,
        "metrics": record.metrics,
        "latencyP50Ms": latency,
        "errorCategory": record.error_category,
        "errorMessage": record.error_message,
        "durationMs": record.duration_ms,
        "createdAt": record.created_at.isoformat(),
        "startedAt": record.started_at and record.started_at.isoformat(),
        "completedAt": record.completed_at and record.completed_at.isoformat(),
    }


class BoardQuery(Query):
    """A dashboard query string: an empty parameter (`?status=` from an "any" select) counts as not given."""

    @model_validator(mode="before")
    @classmethod
    def _drop_empty(cls, values: Any) -> Any:
        return {k: v for k, v in values.items() if v != ""} if isinstance(values, dict) else values


def one_of(choices: tuple[str, ...]) -> AfterValidator:
    """A text parameter that must be one of `choices` (the choices of a select in the page)."""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


def text_param(request: Request, name: str, *, max_length: int = 500) -> str | None:
    """A free-text filter; PostgreSQL text cannot hold NUL, and no filter needs a control character."""
    raw = request.query_params.get(name) or None
    if raw is not None and (len(raw) > max_length or _CONTROL.search(raw)):
        raise Problem(400, f"{name} must be at most {max_length} characters, without control characters", field=name)
    return raw


def time_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name) or None
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        value = value if value.tzinfo is not None else value.astimezone()
        value.astimezone(UTC)  # PostgreSQL gets it in UTC: years 1-9999 there too
    except (ValueError, OverflowError):
        raise Problem(400, f"{name} must be an ISO 8601 time such as 2026-01-31T12:00", field=name) from None
    return value


def job_id_param(request: Request) -> str:
    """The queue's job ids are 1-512 characters without NUL."""
    raw = str(request.path_params["job_id"])
    if not raw or len(raw) > 512 or "\0" in raw:
        raise Problem(400, "jobId must be 1-512 characters, without NUL", field="jobId")
    return raw


def uuid_param(raw: str | None, name: str) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError:
        raise Problem(400, f"{name} must be a UUID", field=name) from None


MAX_BODY_BYTES = 64 * 1024


async def capped_body(request: Request) -> bytes:
    """The body, refused above MAX_BODY_BYTES without reading (or holding) the rest."""
    too_large = Problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes", field="body")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def body_as(request: Request, model: type[BaseModel]) -> Any:
    raw = await capped_body(request)
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise Problem(400, "the body must be JSON", field="body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise Problem(400, f"{field}: {error['msg']}", field=field) from None


def user_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("board_user", "?"))


async def audit(
    request: Request, action: str, target: str | None, outcome: str, detail: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record what an operator did; the answer to the action carries the entry so the UI can show it."""
    client = request.client
    entry = await queries_of(request).record_audit(
        actor=user_of(request),
        action=action,
        target=_storable(target),
        detail=_storable(detail or {}),
        outcome=_storable(outcome),
        remote_addr=None if client is None else client.host,
    )
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "detail": entry.detail,
    }


def _storable(value: Any) -> Any:
    """`value` with every NUL shown as U+FFFD: a refused request's input still gets its audit entry."""
    if isinstance(value, str):
        return value.replace("\0", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


Endpoint = Callable[[Request], Awaitable[Response]]


def audited(action: str, endpoint: Endpoint) -> Endpoint:
    """Also record an action that was refused (bad input, wrong state): who tried what is worth keeping."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (Problem, QueueError) as exc:
            status = exc.status if isinstance(exc, Problem) else 409
            detail = exc.detail if isinstance(exc, Problem) else str(exc)
            if status != 503 and deps(request).store is not None:
                target = request.path_params.get("job_id") or request.path_params.get("schedule_id")
                await audit(request, action, target, f"refused ({status}): {detail}")
            raise

    return run
