"""/api/certification-queue: the original system's routes, on PostgreSQL (truth) and the Redis queue."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from certq.api import certify
from certq.api.openapi import Endpoint
from certq.api.present import certification_out, job_detail, job_out, pagination
from certq.api.problems import Problem, parse_body, parse_query, parse_uuid
from certq.api.regions import AWS_REGIONS, DEFAULT_REGIONS, region_name
from certq.api.responses import answer, services_of
from certq.api.schemas import (
    BatchAnswer,
    CancelAnswer,
    CertificationsAnswer,
    CertificationsQuery,
    CertifyAllBody,
    CertifyAnswer,
    CertifyBody,
    CertifyMultipleBody,
    HistoryAnswer,
    HistoryQuery,
    JobDetail,
    RegionCount,
    RegionOut,
    StatsAnswer,
)
from certq.store import CERTIFICATION_STATUSES, JOB_STATUSES

log = logging.getLogger("certq.api")
BASE = "/api/certification-queue"
QUEUE_STATES = ("waiting", "active", "delayed", "completed", "failed", "paused")


def _scope(request: Request, route: str) -> str:
    return f"{request.scope.get('state', {}).get('token_id', '')}:{route}"


async def certify_model(request: Request) -> Response:
    body, raw = await parse_body(request, CertifyBody)
    key = certify.idempotency_key(request.headers.get("idempotency-key"), _scope(request, "certify"), raw)
    status, content = await certify.certify_one(services_of(request), body.model_id, body.region, body.priority, key)
    return answer(status, content)


async def certify_multiple(request: Request) -> Response:
    body, raw = await parse_body(request, CertifyMultipleBody)
    key = certify.idempotency_key(request.headers.get("idempotency-key"), _scope(request, "certify-multiple"), raw)
    status, content = await certify.certify_batch(
        services_of(request), list(body.model_ids), list(body.regions), body.priority, key
    )
    return answer(status, content)


async def certify_all(request: Request) -> Response:
    body, raw = await parse_body(request, CertifyAllBody)
    key = certify.idempotency_key(request.headers.get("idempotency-key"), _scope(request, "certify-all"), raw)
    status, content = await certify.certify_batch(services_of(request), None, list(body.regions), body.priority, key)
    return answer(status, content)


async def get_job(request: Request) -> Response:
    job_id = parse_uuid(request.path_params["job_id"], "jobId")
    store = services_of(request).need_store()
    job = await store.get_job(job_id)
    if job is None:
        raise Problem(404, f"no job with id {job_id}", field="jobId", kind="job-not-found")
    return answer(200, job_detail(job, await store.job_certifications(job_id)))


async def cancel_job(request: Request) -> Response:
    job_id = parse_uuid(request.path_params["job_id"], "jobId")
    status, content = await certify.cancel(services_of(request), job_id)
    return answer(status, content)


async def history(request: Request) -> Response:
    query = parse_query(request, HistoryQuery)
    page = (
        await services_of(request)
        .need_store()
        .list_jobs(page=query.page, limit=query.limit, status=query.status, type=query.type)
    )
    return answer(200, HistoryAnswer(jobs=[job_out(j) for j in page.items], pagination=pagination(page)))


async def certifications(request: Request) -> Response:
    query = parse_query(request, CertificationsQuery)
    page = (
        await services_of(request)
        .need_store()
        .list_certifications(
            page=query.page, limit=query.limit, model_id=query.model_id, region=query.region, status=query.status
        )
    )
    items = [certification_out(c) for c in page.items]
    return answer(200, CertificationsAnswer(certifications=items, pagination=pagination(page)))


async def stats(request: Request) -> Response:
    services = services_of(request)
    queue_counts: dict[str, int] = {state: 0 for state in QUEUE_STATES}
    available = True
    try:
        counts = await asyncio.wait_for(services.queue.counts(), 2.0)
        queue_counts.update({str(k): int(v) for k, v in counts.items()})
    except Exception as exc:  # PostgreSQL's half of the answer is still worth giving
        available = False
        log.warning("stats without queue counts: %s: %s", type(exc).__name__, exc)
    counted = await services.need_store().certification_counts()
    by_status = {status: counted["by_status"].get(status, 0) for status in CERTIFICATION_STATUSES}
    jobs = {status: counted["jobs_by_status"].get(status, 0) for status in JOB_STATUSES}
    return answer(
        200,
        StatsAnswer(
            queue=queue_counts,
            queue_available=available,
            certifications_by_status=by_status,
            certifications_by_region=[RegionCount(**row) for row in counted["by_region"]],
            jobs_by_status=jobs,
            timestamp=datetime.now(UTC),
        ),
    )


async def regions(request: Request) -> Response:
    in_use = await services_of(request).need_store().regions_in_use()
    ordered = list(DEFAULT_REGIONS) + sorted(r for r in in_use if r not in DEFAULT_REGIONS)
    return answer(
        200,
        [
            RegionOut(id=r, name=region_name(r), active_models=in_use.get(r, 0))
            for r in ordered
            if r in in_use or r in AWS_REGIONS
        ],
    )


_JOB = BASE + "/jobs/{job_id}"
_TAGS = ("certification",)
ENDPOINTS = [
    Endpoint(
        "POST",
        BASE + "/certify-model",
        certify_model,
        "Certify one model in one region",
        {201: CertifyAnswer, 200: CertifyAnswer},
        body=CertifyBody,
        tags=_TAGS,
        idempotent_post=True,
    ),
    Endpoint(
        "POST",
        BASE + "/certify",
        certify_model,
        "Same as /certify-model (the seeds' name)",
        {201: CertifyAnswer, 200: CertifyAnswer},
        body=CertifyBody,
        tags=_TAGS,
        idempotent_post=True,
    ),
    Endpoint(
        "POST",
        BASE + "/certify-multiple",
        certify_multiple,
        "Certify models x regions",
        {201: BatchAnswer, 200: BatchAnswer},
        body=CertifyMultipleBody,
        tags=_TAGS,
        idempotent_post=True,
    ),
    Endpoint(
        "POST",
        BASE + "/certify-all",
        certify_all,
        "Certify every active model in the regions it offers",
        {201: BatchAnswer, 200: BatchAnswer},
        body=CertifyAllBody,
        tags=_TAGS,
        idempotent_post=True,
    ),
    Endpoint(
        "GET", _JOB, get_job, "A job with its certifications", {200: JobDetail}, path_params=("job_id",), tags=_TAGS
    ),
    Endpoint(
        "DELETE",
        _JOB,
        cancel_job,
        "Cancel every unfinished certification of a job",
        {200: CancelAnswer},
        path_params=("job_id",),
        tags=_TAGS,
    ),
    Endpoint(
        "GET", BASE + "/history", history, "Jobs, newest first", {200: HistoryAnswer}, query=HistoryQuery, tags=_TAGS
    ),
    Endpoint(
        "GET",
        BASE + "/certifications",
        certifications,
        "Certification runs, newest first",
        {200: CertificationsAnswer},
        query=CertificationsQuery,
        tags=_TAGS,
    ),
    Endpoint(
        "GET",
        BASE + "/stats",
        stats,
        "Queue counts (Redis) and certification counts (PostgreSQL)",
        {200: StatsAnswer},
        tags=_TAGS,
    ),
    Endpoint(
        "GET",
        BASE + "/regions",
        regions,
        "Regions: the AWS defaults and those offered by active models",
        {200: RegionOut},
        tags=_TAGS,
        list_answer={200},
    ),
]
