"""GET /api/certification-queue/standing: what a model router may send traffic to, now.

Cheap to poll: the answer's ETag is a digest of its body, so it changes only when some pair's standing
(or its verdict, or a re-certification under way) changes, including when a certificate expires; a
request with that ETag in `If-None-Match` gets 304 and no body.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from certq.api.openapi import Endpoint
from certq.api.problems import Problem, validation_problem
from certq.api.responses import services_of
from certq.api.schemas import CapabilityFindings, StandingAnswer, StandingEntry, StandingIdentity, StandingQuery
from certq.certification.capabilities import CAPABILITY_NAMES
from certq.store import StandingRecord

PATH = "/api/certification-queue/standing"


def _names(value: Any) -> list[str]:
    return [str(name) for name in value] if isinstance(value, list) else []


def findings_out(found: dict[str, Any] | None) -> CapabilityFindings | None:
    if not found:
        return None
    return CapabilityFindings(
        verified=_names(found.get("verified")),
        failed=_names(found.get("failed")),
        not_declared=_names(found.get("notDeclared")),
    )


def entry_out(record: StandingRecord) -> StandingEntry:
    identity = record.identity or {}
    reported = identity.get("reported")
    return StandingEntry(
        model_id=record.model_id,
        model_name=record.model_name,
        region=record.region,
        standing=record.standing,
        recertification=record.recertification,
        certification_id=record.certification_id,
        verdict=record.verdict,
        passed=record.passed,
        score=record.score,
        rating=record.rating,
        certified_at=record.certified_at,
        valid_until=record.valid_until,
        error_category=record.error_category,
        identity=StandingIdentity(
            provider=record.provider,
            api_model_id=record.api_model_id,
            served_model=record.served_model,
            reported=[str(name) for name in reported] if isinstance(reported, list) else [],
            finding=str(identity["finding"]) if identity.get("finding") else None,
        ),
        capabilities=findings_out(record.capabilities),
    )


def _matches(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*`, or any listed tag equal under weak comparison."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def _query(request: Request) -> tuple[StandingQuery, list[str]]:
    """The query string: `capability` may repeat (and holds comma lists); any other parameter only once."""
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = request.query_params.getlist(key)
        if key == "capability":
            values[key] = ",".join(items)
        elif len(items) > 1:
            raise Problem(400, f"{key} is given {len(items)} times", field=key, kind="invalid-input")
        else:
            values[key] = items[0]
    try:
        query = StandingQuery.model_validate(values)
    except ValidationError as exc:
        raise validation_problem(exc) from None
    names = [name.strip() for name in (query.capability or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in CAPABILITY_NAMES]
    if unknown:
        raise Problem(
            400,
            f"capability: {unknown[0][:60]!r} is not a capability certq verifies ({', '.join(CAPABILITY_NAMES)})",
            field="capability",
            kind="invalid-input",
        )
    return query, list(dict.fromkeys(names))


async def standing(request: Request) -> Response:
    query, capabilities = _query(request)
    services = services_of(request)
    records = await services.need_store().standing(
        model_id=query.model_id,
        region=query.region,
        default_validity_s=services.settings.validity_s,
        verified=capabilities,
    )
    body = StandingAnswer(standing=[entry_out(r) for r in records]).model_dump_json(by_alias=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Authorization"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=200, media_type="application/json", headers=headers)


ENDPOINTS = [
    Endpoint(
        "GET",
        PATH,
        standing,
        "Every active model x region pair's standing now (ETag; 304 on If-None-Match)",
        {200: StandingAnswer},
        query=StandingQuery,
        tags=("certification",),
    ),
]
