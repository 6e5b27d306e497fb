"""JSON endpoints over the certification history: search, the model x region matrix, a pair's runs, certify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certq.dashboard.ports import CertifyOrder
from certq.dashboard.web import (
    JSON,
    BoardQuery,
    audit,
    audited,
    body_as,
    deps,
    one_of,
    queries_of,
    run_json,
    store_of,
    text_param,
    time_param,
    uuid_param,
)
from certq.problems import Problem
from certq.store import CERTIFICATION_STATUSES, DriftEvent
from certq.store.dashboard import HistoryFilter
from certq.web_input import parse_query


class HistoryQuery(BoardQuery):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=100)
    status: Annotated[str, one_of(CERTIFICATION_STATUSES)] | None = None


class PairQuery(BoardQuery):
    limit: int = Field(30, ge=1, le=200)


async def history(request: Request) -> Response:
    paging = parse_query(request, HistoryQuery)
    page, limit = paging.page, paging.limit
    query = HistoryFilter(
        job_id=text_param(request, "jobId"),
        model=text_param(request, "model"),
        region=text_param(request, "region"),
        status=paging.status,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
    )
    found = await queries_of(request).search_history(query, page=page, limit=limit)
    return JSON(
        {
            "items": [run_json(r) for r in found.items],
            "total": found.total,
            "capped": found.capped,
            "page": page,
            "limit": limit,
        }
    )


EXPIRING_SOON = timedelta(hours=24)
"""A cell whose certificate runs out within this is marked as expiring soon."""


async def matrix(request: Request) -> Response:
    models = await store_of(request).active_models()
    standing = await store_of(request).standing()
    regions = sorted({region for model in models for region in model.regions})
    rows = [
        {
            "id": str(m.id),
            "name": m.name,
            "apiModelId": m.api_model_id,
            "provider": m.provider,
            "regions": m.regions,
            "capabilities": m.capabilities,
        }
        for m in models
    ]
    soon = datetime.now(UTC) + EXPIRING_SOON
    out = [
        {
            "modelId": str(c.model_id),
            "region": c.region,
            "id": str(c.certification_id),
            "status": c.verdict,
            "standing": c.standing,
            "expiresSoon": c.standing != "EXPIRED" and c.valid_until is not None and c.valid_until <= soon,
            "validUntil": c.valid_until and c.valid_until.isoformat(),
            "recertification": c.recertification,
            "rating": c.rating,
            "score": c.score,
            "completedAt": c.certified_at and c.certified_at.isoformat(),
            "verified": c.verified(),
            "failedCapabilities": _names(c.capabilities, "failed"),
        }
        for c in standing
        if c.certification_id is not None
    ]
    return JSON({"models": rows, "regions": regions, "cells": out})


async def pair(request: Request) -> Response:
    model_id = uuid_param(request.query_params.get("modelId"), "modelId")
    region = text_param(request, "region") or ""
    if not region:
        raise Problem(400, "region is required", field="region")
    model = await store_of(request).get_model(model_id)
    if model is None:
        raise Problem(404, f"no model {model_id}", field="modelId")
    limit = parse_query(request, PairQuery).limit
    runs = await queries_of(request).pair_history(model_id, region, limit=limit)
    events = await store_of(request).pair_drift(model_id, region)
    marks: dict[str, list[dict[str, Any]]] = {}
    for event in reversed(events):
        marks.setdefault(str(event.certification_id), []).append(_event_json(event))
    return JSON(
        {
            "model": {
                "id": str(model.id),
                "name": model.name,
                "apiModelId": model.api_model_id,
                "provider": model.provider,
            },
            "region": region,
            "runs": [{**run_json(r), "transitions": marks.get(str(r.id), [])} for r in runs],
            "events": [_event_json(e) for e in events],
        }
    )


def _names(findings: dict[str, Any] | None, key: str) -> list[str]:
    names = (findings or {}).get(key)
    return [str(name) for name in names] if isinstance(names, list) else []


def _event_json(event: DriftEvent) -> dict[str, Any]:
    """A change of the pair's standing class (or a score drop): `kind` is degraded, recovered or expired."""
    return {
        "kind": event.kind,
        "at": event.at.isoformat(),
        "certificationId": str(event.certification_id),
        "status": event.status,
        "score": event.score,
        "previousStatus": event.previous_status,
        "previousScore": event.previous_score,
    }


class CertifyForm(BaseModel):
    mode: Literal["single", "multiple", "all"]
    model_ids: list[str] = Field(default_factory=list, alias="modelIds", max_length=500)
    regions: list[str] = Field(min_length=1, max_length=50)
    priority: Literal["high", "normal", "low"] = "normal"


async def certify(request: Request) -> Response:
    form: CertifyForm = await body_as(request, CertifyForm)
    if form.mode == "single" and (len(form.model_ids) != 1 or len(form.regions) != 1):
        raise Problem(400, "single needs exactly one model and one region", field="modelIds")
    if form.mode == "multiple" and not form.model_ids:
        raise Problem(400, "choose at least one model", field="modelIds")
    run = deps(request).certify
    if run is None:
        raise Problem(503, "certification is not available in this process")
    order = CertifyOrder(
        mode=form.mode,
        model_ids=[] if form.mode == "all" else form.model_ids,
        regions=form.regions,
        priority=form.priority,
    )
    status, body = await run(order)
    detail = {"mode": form.mode, "modelIds": order.model_ids, "regions": form.regions}
    if status >= 400:
        await audit(request, "certify", None, f"refused ({status}): {body.get('detail')}", detail)
        return Problem(
            status,
            str(body.get("detail")),
            field=body.get("field"),
            errors=body.get("errors"),
            kind=str(body.get("type", "")).removeprefix("/problems/") or None,
        ).response(request.url.path)
    total = body.get("totalJobs", 1)
    outcome = f"{form.mode}: {total} certification(s) requested in {', '.join(form.regions)}"
    entry = await audit(request, "certify", body.get("jobId"), outcome, detail)
    return JSON({"ok": True, "outcome": outcome, "result": body, "audit": entry}, status_code=status)


routes = [
    Route("/api/history", history),
    Route("/api/certifications/matrix", matrix),
    Route("/api/certifications/pair", pair),
    Route("/api/certify", audited("certify", certify), methods=["POST"]),
]
