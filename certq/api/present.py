"""Records of the store -> answer models of the API."""

from __future__ import annotations

from certq.api.schemas import CertificationOut, JobDetail, JobOut, ModelOut, ModelRef, Pagination
from certq.certification.capabilities import Capabilities
from certq.store import CertificationRecord, JobRecord, ModelRecord, Page


def model_out(record: ModelRecord) -> ModelOut:
    capabilities = Capabilities.from_json(record.capabilities).to_json()
    return ModelOut.model_validate(
        {**record.__dict__, "validity_seconds": record.validity_s, "capabilities": capabilities}
    )


def job_out(job: JobRecord) -> JobOut:
    return JobOut(**_job_fields(job))


def job_detail(job: JobRecord, certifications: list[CertificationRecord]) -> JobDetail:
    return JobDetail(**_job_fields(job), certifications=[certification_out(c) for c in certifications])


def _job_fields(job: JobRecord) -> dict[str, object]:
    duration = None
    if job.completed_at is not None:
        duration = int((job.completed_at - job.created_at).total_seconds() * 1000)
    return {
        "id": job.id,
        "job_id": job.id,
        "type": job.type,
        "status": job.status,
        "priority": job.priority,
        "regions": job.regions,
        "model_ids": job.model_ids,
        "total_models": job.total_models,
        "processed_models": job.processed_models,
        "progress": job.progress,
        "success_count": job.success_count,
        "warning_count": job.warning_count,
        "failure_count": job.failure_count,
        "cancelled_count": job.cancelled_count,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "updated_at": job.updated_at,
        "duration_ms": duration,
    }


def certification_out(c: CertificationRecord) -> CertificationOut:
    return CertificationOut(
        id=c.id,
        job_id=c.job_id,
        model_id=c.model_id,
        name=c.model_name,
        api_model_id=c.api_model_id,
        model=ModelRef(id=c.model_id, name=c.model_name, api_model_id=c.api_model_id),
        region=c.region,
        status=c.status,
        priority=c.priority,
        passed=c.passed,
        score=c.score,
        rating=c.rating,
        test_results=c.test_results,
        metrics=c.metrics,
        error_category=c.error_category,
        error_message=c.error_message,
        attempts=c.attempts,
        attempt_log=c.attempt_log,
        duration_ms=c.duration_ms,
        valid_until=c.valid_until,
        capabilities=c.capabilities,
        created_at=c.created_at,
        started_at=c.started_at,
        completed_at=c.completed_at,
        updated_at=c.updated_at,
    )


def pagination(page: Page) -> Pagination:
    return Pagination(page=page.page, limit=page.limit, total=page.total, total_pages=page.total_pages)
