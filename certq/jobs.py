"""The certification job: its queue payload, how a run is enqueued, and the JSON view of a queue job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from certq.queue.config import QueueConfig
from certq.queue.job import Job
from certq.queue.queue import JobSpec, Queue
from certq.settings import Settings
from certq.store import CertificationRef


class InvalidJobPayload(ValueError):
    """A queue payload that is not a certification job; `field` names the bad key (None: not an object)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class CertificationJob:
    """The payload of one run's queue job. Its JSON keys are the contract with jobs already in Redis."""

    certification_id: UUID
    job_id: UUID
    """The parent job (the request) the run belongs to; not the queue job's id, which is the certification id."""
    model_id: UUID
    region: str

    @classmethod
    def of(cls, ref: CertificationRef) -> CertificationJob:
        return cls(certification_id=ref.id, job_id=ref.job_id, model_id=ref.model_id, region=ref.region)

    def to_payload(self) -> dict[str, str]:
        return {
            "certificationId": str(self.certification_id),
            "jobId": str(self.job_id),
            "modelId": str(self.model_id),
            "region": self.region,
        }

    @classmethod
    def from_payload(cls, data: object) -> CertificationJob:
        """Read a payload as stored; raise InvalidJobPayload naming the first bad field. Unknown keys are ignored."""
        if not isinstance(data, dict):
            raise InvalidJobPayload("the job payload is not a JSON object")
        certification_id, job_id, model_id = (_uuid(data, name) for name in ("certificationId", "jobId", "modelId"))
        region = data.get("region")
        if not isinstance(region, str) or not region:
            raise InvalidJobPayload(_problem(data, "region", "must be a non-empty string"), "region")
        return cls(certification_id=certification_id, job_id=job_id, model_id=model_id, region=region)


def _uuid(data: dict[Any, Any], name: str) -> UUID:
    value = data.get(name)
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidJobPayload(_problem(data, name, "must be a UUID string"), name)


def _problem(data: dict[Any, Any], name: str, problem: str) -> str:
    return f"job payload field {name!r} {problem if name in data else 'is missing'}"


def job_payload(ref: CertificationRef) -> dict[str, str]:
    """The queue payload of a run: the one identity of each thing, as strings."""
    return CertificationJob.of(ref).to_payload()


def queue_config(settings: Settings) -> QueueConfig:
    """The certification queue as configured by the environment."""
    return QueueConfig(
        prefix=settings.queue_prefix,
        name=settings.queue_name,
        rate_limits=settings.rate_limit_table,
        default_max_attempts=settings.max_attempts,
    )


def job_spec(ref: CertificationRef, settings: Settings) -> JobSpec:
    return JobSpec(
        payload=job_payload(ref),
        job_id=str(ref.id),
        priority=ref.priority,
        max_attempts=settings.max_attempts,
        timeout_ms=settings.timeout_ms,
        dedupe_key=f"{ref.model_id}:{ref.region}",
        group=ref.region,
    )


async def enqueue_runs(queue: Queue, settings: Settings, refs: list[CertificationRef]) -> list[Job]:
    """Enqueue committed runs in one round trip. Raises the queue's error if Redis fails."""
    return await queue.enqueue_many([job_spec(ref, settings) for ref in refs])


def job_view(job: Job) -> dict[str, Any]:
    """The JSON view of a queue job (camelCase, state as its string) that the dashboard and the CLI show."""
    return {
        "id": job.id,
        "payload": job.payload,
        "state": job.state.value,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "priority": job.priority,
        "group": job.group,
        "progress": job.progress,
        "result": job.result,
        "lastError": job.last_error,
        "errorCategory": job.error_category,
        "errors": job.errors,
        "createdAt": job.created_at,
        "processedAt": job.processed_at,
        "finishedAt": job.finished_at,
        "dueAt": job.due_at,
        "timeoutMs": job.timeout_ms,
        "dedupeKey": job.dedupe_key,
        "stalls": job.stalls,
        "attemptsBase": job.attempts_base,
        "cancelled": job.cancelled,
    }
