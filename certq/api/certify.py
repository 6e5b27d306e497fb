"""The certify logic shared by the routes and the dashboard: validate, record, then enqueue."""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from uuid import UUID

from certq.api.problems import Problem
from certq.api.schemas import BatchAnswer, CancelAnswer, CertifyAnswer, Priority, SkippedOut
from certq.api.services import Services
from certq.jobs import enqueue_runs
from certq.store import IdempotencyKey, JobCreated, JobType, ModelRecord, Replay

log = logging.getLogger("certq.api")

Answer = tuple[int, dict[str, Any]]


def idempotency_key(header: str | None, scope: str, fingerprint_source: bytes) -> IdempotencyKey | None:
    if header is None:
        return None
    if not 1 <= len(header) <= 255 or not all(" " <= c <= "~" for c in header):
        raise Problem(400, "Idempotency-Key must be 1-255 printable ASCII characters", field="Idempotency-Key")
    return IdempotencyKey(scope=scope, key=header, fingerprint=hashlib.sha256(fingerprint_source).hexdigest())


def replayed(replay: Replay) -> Answer:
    if not replay.matches:
        raise Problem(
            422,
            "this Idempotency-Key was already used with a different request",
            field="Idempotency-Key",
            kind="idempotency-key-reused",
        )
    return replay.status_code, replay.body


def _dump(answer: Any) -> dict[str, Any]:
    return dict(answer.model_dump(mode="json", by_alias=True))


async def _enqueue(services: Services, created: JobCreated) -> None:
    """After the commit: a Redis failure here loses nothing (the reconciler enqueues the rows later)."""
    if not created.certifications:
        return
    try:
        await enqueue_runs(services.queue, services.settings, created.certifications)
        services.metrics.enqueued.inc(len(created.certifications))
    except Exception as exc:  # the rows are committed: answer as accepted, let the reconciler retry
        services.metrics.enqueue_failures.inc(len(created.certifications))
        log.error(
            "certifications %s recorded but not enqueued (%s: %s); the reconciler will enqueue them",
            [str(c.id) for c in created.certifications],
            type(exc).__name__,
            exc,
        )


def _certifiable(model: ModelRecord | None, model_id: UUID, field: str) -> ModelRecord:
    if model is None:
        raise Problem(404, f"no model with id {model_id}", field=field, kind="model-not-found")
    if not model.is_active:
        raise Problem(422, f"model {model_id} is inactive", field=field, kind="model-inactive")
    return model


async def certify_one(
    services: Services, model_id: UUID, region: str, priority: Priority, key: IdempotencyKey | None = None
) -> Answer:
    store = services.need_store()
    model = _certifiable(await store.get_model(model_id), model_id, "modelId")
    if not model.offers(region):
        raise Problem(
            422,
            f"model {model_id} does not offer region {region!r} (it offers {model.regions})",
            field="region",
            kind="region-not-offered",
        )

    def render(created: JobCreated) -> Answer:
        if created.job is not None:
            run = created.certifications[0]
            answer = CertifyAnswer(
                job_id=created.job.id,
                certification_id=run.id,
                model_id=model_id,
                region=region,
                status="QUEUED",
                priority=priority,
            )
            return 201, _dump(answer)
        live = created.skipped[0]
        answer = CertifyAnswer(
            job_id=live.job_id,
            certification_id=live.certification_id,
            model_id=model_id,
            region=region,
            status=live.status,
            priority=priority,
            existing=True,
        )
        return 200, _dump(answer)

    result = await store.create_job(
        type="SINGLE_MODEL", pairs=[(model_id, region)], priority=priority, idempotency=key, render=render
    )
    if isinstance(result, Replay):
        return replayed(result)
    await _enqueue(services, result)
    return render(result)


async def certify_batch(
    services: Services,
    model_ids: list[UUID] | None,
    regions: list[str],
    priority: Priority,
    key: IdempotencyKey | None = None,
) -> Answer:
    """`model_ids` None: every active model, each in the requested regions it offers."""
    store = services.need_store()
    pairs: list[tuple[UUID, str]] = []
    if model_ids is None:
        for model in await store.active_models():
            pairs.extend((model.id, r) for r in regions if model.offers(r))
        if not pairs:
            raise Problem(
                422, f"no active model offers any of the regions {regions}", field="regions", kind="nothing-to-certify"
            )
    else:
        found = await store.get_models(model_ids)
        for index, model_id in enumerate(model_ids):
            model = _certifiable(found.get(model_id), model_id, f"modelIds[{index}]")
            for r_index, region in enumerate(regions):
                if not model.offers(region):
                    raise Problem(
                        422,
                        f"model {model_id} does not offer region {region!r} (it offers {model.regions})",
                        field=f"regions[{r_index}]",
                        kind="region-not-offered",
                    )
                pairs.append((model_id, region))

    def render(created: JobCreated) -> Answer:
        job = created.job
        answer = BatchAnswer(
            job_id=None if job is None else job.id,
            total_jobs=len(created.certifications),
            model_ids=list(dict.fromkeys(m for m, _ in pairs)),
            regions=regions,
            status=None if job is None else job.status,
            priority=priority,
            certification_ids=[c.id for c in created.certifications],
            skipped=[
                SkippedOut(
                    model_id=s.model_id,
                    region=s.region,
                    job_id=s.job_id,
                    certification_id=s.certification_id,
                    status=s.status,
                )
                for s in created.skipped
            ],
        )
        return (200 if job is None else 201), _dump(answer)

    job_type: JobType = "ALL_MODELS" if model_ids is None else "MULTIPLE_MODELS"
    result = await store.create_job(type=job_type, pairs=pairs, priority=priority, idempotency=key, render=render)
    if isinstance(result, Replay):
        return replayed(result)
    await _enqueue(services, result)
    return render(result)


async def cancel(services: Services, job_id: UUID) -> Answer:
    """End the job's unfinished runs in PostgreSQL first, then take them out of (or flag them in) the queue."""
    outcome = await services.need_store().cancel_job(job_id)
    if outcome is None:
        raise Problem(404, f"no job with id {job_id}", field="jobId", kind="job-not-found")
    removed = flagged = 0
    for run in outcome.cancelled:
        try:
            result = await services.queue.cancel(str(run.id))
        except Exception as exc:  # the row says CANCELLED: a worker that claims it later skips it
            log.error("could not cancel queue job %s: %s: %s", run.id, type(exc).__name__, exc)
            continue
        removed += result == "removed"
        flagged += result == "flagged"
    answer = CancelAnswer(
        job_id=outcome.job.id,
        status=outcome.job.status,
        cancelled=len(outcome.cancelled),
        removed_from_queue=removed,
        stopped_running=flagged,
        already_finished=outcome.already_finished,
    )
    return 200, _dump(answer)


async def certify_order(
    services: Services, mode: str, model_ids: list[str], regions: list[str], priority: str = "normal"
) -> Answer:
    """The routes' certify logic for other front ends (the dashboard): `mode` is single, multiple or all.

    Input is validated by the same pydantic bodies; any refusal comes back as (status, problem body).
    """
    from pydantic import ValidationError

    from certq.api.problems import validation_problem
    from certq.api.schemas import CertifyAllBody, CertifyBody, CertifyMultipleBody

    try:
        if mode == "single":
            if len(model_ids) != 1 or len(regions) != 1:
                raise Problem(
                    400,
                    "single needs exactly one model and one region",
                    field="modelIds" if len(model_ids) != 1 else "regions",
                )
            one = CertifyBody.model_validate(
                {"modelId": model_ids[0], "region": regions[0], "priority": priority}, strict=False
            )
            return await certify_one(services, one.model_id, one.region, one.priority)
        if mode == "multiple":
            many = CertifyMultipleBody.model_validate(
                {"modelIds": model_ids, "regions": regions, "priority": priority}, strict=False
            )
            return await certify_batch(services, list(many.model_ids), list(many.regions), many.priority)
        if mode == "all":
            every = CertifyAllBody.model_validate({"regions": regions, "priority": priority}, strict=False)
            return await certify_batch(services, None, list(every.regions), every.priority)
        raise Problem(400, f"mode must be single, multiple or all, not {mode!r}", field="mode")
    except ValidationError as exc:
        problem = validation_problem(exc)
    except Problem as exc:
        problem = exc
    body: dict[str, Any] = {
        "type": f"/problems/{problem.kind}",
        "status": problem.status,
        "detail": problem.detail,
        "field": problem.field,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return problem.status, body
