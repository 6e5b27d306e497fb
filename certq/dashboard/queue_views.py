"""JSON endpoints over the queue: counts, lists per state, job detail, workers, and the operator actions."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certq.dashboard.web import (
    JSON,
    BoardQuery,
    audit,
    audited,
    body_as,
    deps,
    job_id_param,
    one_of,
    queries_of,
    queue_of,
    run_json,
    store_of,
)
from certq.jobs import job_view
from certq.problems import Problem
from certq.queue.errors import JobStateError
from certq.queue.job import Job
from certq.store.dashboard import RunSuperseded
from certq.web_input import parse_query

STATES = ("waiting", "active", "delayed", "completed", "failed", "paused")


FIELD_CAP_BYTES = 16 * 1024
"""A job field larger than this as JSON is sent as a preview: a payload edited to 50 MB in Redis must not
make every open dashboard download it on each refresh."""
PREVIEW_CHARS = 1024


def _job_json(job: Any) -> dict[str, Any]:
    data: dict[str, Any] = job_view(job) if isinstance(job, Job) else dict(job)
    for name, value in data.items():
        if isinstance(value, (dict, list, str)):
            encoded = orjson.dumps(value)
            if len(encoded) > FIELD_CAP_BYTES:
                data[name] = {
                    "truncated": True,
                    "bytes": len(encoded),
                    "preview": encoded[:PREVIEW_CHARS].decode("utf-8", errors="replace"),
                }
    return data


async def _with_models(request: Request, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Name each job's model (the payload only holds its id)."""
    store = deps(request).store
    ids: set[UUID] = set()
    for job in jobs:
        try:
            ids.add(UUID(str(job.get("payload", {}).get("modelId"))))
        except ValueError:
            continue
    models = await store.get_models(list(ids)) if store is not None and ids else {}
    names = {str(model_id): model.name for model_id, model in models.items()}
    for job in jobs:
        job["modelName"] = names.get(str(job.get("payload", {}).get("modelId")))
    return jobs


async def overview(request: Request) -> Response:
    queue = queue_of(request)
    counts = await queue.counts()
    return JSON(
        {
            "counts": {state: int(counts.get(state, 0)) for state in STATES},
            "paused": await queue.is_paused(),
            "at": int(time.time() * 1000),
        }
    )


class JobsQuery(BoardQuery):
    state: Annotated[str, one_of(STATES)] = "waiting"
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)


async def list_jobs(request: Request) -> Response:
    query = parse_query(request, JobsQuery)
    state, page, limit = query.state, query.page, query.limit
    queue = queue_of(request)
    counts = await queue.counts()
    # A paused queue keeps its jobs in the wait lists; "paused" lists them while the queue is paused.
    if state == "paused" and not await queue.is_paused():
        jobs = []
    else:
        jobs = await queue.list("waiting" if state == "paused" else state, offset=(page - 1) * limit, limit=limit)
    items = await _with_models(request, [_job_json(job) for job in jobs])
    return JSON({"state": state, "page": page, "limit": limit, "total": int(counts.get(state, 0)), "items": items})


async def job_detail(request: Request) -> Response:
    job_id = job_id_param(request)
    job = await queue_of(request).get(job_id)
    certification = None
    store = deps(request).store
    if store is not None and await queries_of(request).certification_exists(job_id):
        record = await store.get_certification(job_id)
        certification = None if record is None else run_json(record)
    if job is None and certification is None:
        raise Problem(404, f"no job {job_id} in the queue or the history", field="jobId")
    data = None if job is None else (await _with_models(request, [_job_json(job)]))[0]
    return JSON({"job": data, "certification": certification})


async def _act(request: Request, action: str, target: str | None, outcome: str, **detail: Any) -> Response:
    entry = await audit(request, action, target, outcome, detail)
    return JSON({"ok": True, "action": action, "target": target, "outcome": outcome, "audit": entry})


async def _require_job(request: Request) -> tuple[str, Any]:
    job_id = job_id_param(request)
    job = await queue_of(request).get(job_id)
    if job is None:
        raise Problem(404, f"no job {job_id} in the queue", field="jobId")
    return job_id, job


def _state(job: Any) -> str:
    state = getattr(job, "state", None)
    return str(getattr(state, "value", state))


async def retry_job(request: Request) -> Response:
    job_id, job = await _require_job(request)
    if _state(job) != "failed":
        raise Problem(409, f"job {job_id} is {_state(job)}, only failed jobs can be retried", field="jobId")
    if getattr(job, "cancelled", False):
        raise Problem(409, f"job {job_id} was cancelled; certify the model again instead", field="jobId")
    # The run goes back to QUEUED first, so the worker that claims the retried job may start it; when
    # PostgreSQL refuses, the queue job is left failed too, so both still tell the same story.
    reopened = False
    if deps(request).store is not None:
        queries = queries_of(request)
        if await queries.certification_exists(job_id):
            record = await store_of(request).get_certification(job_id)
            if record is not None and record.status == "CANCELLED":
                raise Problem(
                    409, f"certification {job_id} was cancelled; certify the model again instead", field="jobId"
                )
            try:
                reopened = await queries.reopen_failed(job_id)
            except RunSuperseded as exc:
                raise Problem(409, f"{exc}; job {job_id} stays failed", field="jobId") from None
    await queue_of(request).retry(job_id)
    note = " (its certification is QUEUED again)" if reopened else ""
    return await _act(request, "retry", job_id, f"job moved from failed to waiting{note}")


async def retry_all(request: Request) -> Response:
    queue = queue_of(request)
    failed = await queue.list("failed", offset=0, limit=10_000)
    superseded: set[str] = set()
    if deps(request).store is not None:
        queries = queries_of(request)
        for job in failed:
            if await queries.certification_exists(job.id):
                try:
                    await queries.reopen_failed(job.id)
                except RunSuperseded:
                    superseded.add(job.id)
    if not superseded:
        moved = await queue.retry_all_failed()
        return await _act(request, "retry-all-failed", None, f"{moved} failed job(s) moved to waiting", count=moved)
    # Runs whose model+region already has a newer live run stay FAILED, so their jobs stay failed too.
    moved = 0
    for job in failed:
        if job.id in superseded or getattr(job, "cancelled", False):
            continue
        try:
            await queue.retry(job.id)
        except JobStateError:  # it left the failed list since it was listed
            continue
        moved += 1
    outcome = (
        f"{moved} failed job(s) moved to waiting; {len(superseded)} left failed: a newer certification "
        "of the same model+region is already queued or running"
    )
    return await _act(request, "retry-all-failed", None, outcome, count=moved, superseded=sorted(superseded))


async def promote_job(request: Request) -> Response:
    job_id, job = await _require_job(request)
    if _state(job) != "delayed":
        raise Problem(409, f"job {job_id} is {_state(job)}, only delayed jobs can be promoted", field="jobId")
    await queue_of(request).promote(job_id)
    return await _act(request, "promote", job_id, "delayed job moved to waiting")


async def _cancel_run(request: Request, job_id: str) -> bool:
    """End a live certification run CANCELLED, so the reconciler does not enqueue it again."""
    if deps(request).store is None or not await queries_of(request).certification_exists(job_id):
        return False
    return await store_of(request).mark_cancelled(job_id)


async def remove_job(request: Request) -> Response:
    job_id, job = await _require_job(request)
    if _state(job) == "active":
        raise Problem(409, f"job {job_id} is running; cancel it instead of removing it", field="jobId")
    cancelled = await _cancel_run(request, job_id)
    await queue_of(request).remove(job_id)
    note = " (its certification is CANCELLED)" if cancelled else ""
    return await _act(request, "remove", job_id, f"{_state(job)} job removed from the queue{note}")


async def cancel_job(request: Request) -> Response:
    job_id, job = await _require_job(request)
    cancelled = await _cancel_run(request, job_id)
    result = await queue_of(request).cancel(job_id)
    outcome = {
        "removed": "job cancelled before it ran",
        "flagged": "running job asked to stop",
        "finished": "job had already finished",
        "not_found": "job is gone",
    }.get(result, result)
    note = " (its certification is CANCELLED)" if cancelled else ""
    return await _act(request, "cancel", job_id, outcome + note, result=result)


class CleanOrder(BaseModel):
    state: Literal["completed", "failed"]
    older_than_minutes: float = Field(alias="olderThanMinutes", ge=0, le=525_600)
    limit: int = Field(1000, ge=1, le=100_000)


async def clean_state(request: Request) -> Response:
    order: CleanOrder = await body_as(request, CleanOrder)
    removed = await queue_of(request).clean(order.state, int(order.older_than_minutes * 60_000), order.limit)
    return await _act(
        request,
        "clean",
        order.state,
        f"{removed} {order.state} job(s) older than {order.older_than_minutes:g} min removed",
        olderThanMinutes=order.older_than_minutes,
        limit=order.limit,
        removed=removed,
    )


async def pause_queue(request: Request) -> Response:
    await queue_of(request).pause()
    return await _act(request, "pause", None, "queue paused: workers finish running jobs and claim no new ones")


async def resume_queue(request: Request) -> Response:
    await queue_of(request).resume()
    return await _act(request, "resume", None, "queue resumed")


async def workers(request: Request) -> Response:
    return JSON({"workers": await queue_of(request).workers(), "at": int(time.time() * 1000)})


class AuditQuery(BoardQuery):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(25, ge=1, le=100)


async def audit_log(request: Request) -> Response:
    query = parse_query(request, AuditQuery)
    page, limit = query.page, query.limit
    found = await queries_of(request).list_audit(page=page, limit=limit)
    items = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome,
            "detail": e.detail,
            "remoteAddr": e.remote_addr,
        }
        for e in found.items
    ]
    return JSON({"items": items, "total": found.total, "page": page, "limit": limit})


routes = [
    Route("/api/overview", overview),
    Route("/api/jobs", list_jobs),
    Route("/api/jobs/retry-failed", audited("retry-all-failed", retry_all), methods=["POST"]),
    Route("/api/jobs/{job_id}", job_detail),
    Route("/api/jobs/{job_id}/retry", audited("retry", retry_job), methods=["POST"]),
    Route("/api/jobs/{job_id}/promote", audited("promote", promote_job), methods=["POST"]),
    Route("/api/jobs/{job_id}/remove", audited("remove", remove_job), methods=["POST"]),
    Route("/api/jobs/{job_id}/cancel", audited("cancel", cancel_job), methods=["POST"]),
    Route("/api/queue/clean", audited("clean", clean_state), methods=["POST"]),
    Route("/api/queue/pause", audited("pause", pause_queue), methods=["POST"]),
    Route("/api/queue/resume", audited("resume", resume_queue), methods=["POST"]),
    Route("/api/workers", workers),
    Route("/api/audit", audit_log),
]
