"""Rows as the rest of certq sees them, and the status vocabularies (one place, as in contract.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from certq.categories import ErrorCategory

JobType = Literal["SINGLE_MODEL", "MULTIPLE_MODELS", "ALL_MODELS"]
JobStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
CertificationStatus = Literal["PENDING", "QUEUED", "PROCESSING", "CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"]
Provider = Literal["openai", "bedrock"]
Priority = Literal["high", "normal", "low"]

JOB_TYPES: tuple[JobType, ...] = ("SINGLE_MODEL", "MULTIPLE_MODELS", "ALL_MODELS")
JOB_STATUSES: tuple[JobStatus, ...] = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
CERTIFICATION_STATUSES: tuple[CertificationStatus, ...] = (
    "PENDING",
    "QUEUED",
    "PROCESSING",
    "CERTIFIED",
    "QUALITY_WARNING",
    "FAILED",
    "CANCELLED",
)
LIVE_STATUSES: tuple[CertificationStatus, ...] = ("PENDING", "QUEUED", "PROCESSING")
VERDICT_STATUSES: tuple[CertificationStatus, ...] = ("CERTIFIED", "QUALITY_WARNING", "FAILED")
FINAL_STATUSES: tuple[CertificationStatus, ...] = (*VERDICT_STATUSES, "CANCELLED")
FINAL_JOB_STATUSES: tuple[JobStatus, ...] = ("COMPLETED", "FAILED", "CANCELLED")

FINAL_ERROR_CATEGORIES: tuple[str, ...] = tuple(c.value for c in ErrorCategory if not c.retryable)
RETRYABLE_ERROR_CATEGORIES: tuple[str, ...] = tuple(c.value for c in ErrorCategory if c.retryable)
ERROR_CATEGORIES = (*FINAL_ERROR_CATEGORIES, *RETRYABLE_ERROR_CATEGORIES)


@dataclass(frozen=True)
class ModelRecord:
    id: UUID
    name: str
    provider: Provider
    api_model_id: str
    base_url: str | None
    api_key_env: str | None
    regions: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    served_model: str | None = None
    validity_s: int | None = None
    # Declared capabilities as the API accepted them (camelCase JSON); {} declares none beyond chat.
    capabilities: dict[str, Any] = field(default_factory=dict)

    def offers(self, region: str) -> bool:
        return region in self.regions


@dataclass(frozen=True)
class JobRecord:
    id: UUID
    type: JobType
    status: JobStatus
    priority: Priority
    regions: list[str]
    model_ids: list[UUID]
    total_models: int
    processed_models: int
    success_count: int
    warning_count: int
    failure_count: int
    cancelled_count: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @property
    def progress(self) -> float:
        """Percent of children with a final outcome; never above 100 (a CHECK guarantees it)."""
        return 100.0 if self.total_models == 0 else round(100.0 * self.processed_models / self.total_models, 1)


@dataclass(frozen=True)
class CertificationRecord:
    id: UUID
    job_id: UUID
    model_id: UUID
    region: str
    status: CertificationStatus
    priority: Priority
    attempt: int
    generation: int
    attempt_log: list[dict[str, Any]]
    passed: bool | None
    score: float | None
    rating: str | None
    test_results: list[dict[str, Any]] | None
    metrics: dict[str, Any] | None
    error_category: str | None
    error_message: str | None
    duration_ms: int | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    valid_until: datetime | None = None
    # What the verdict found of the model's declared capabilities: {"verified", "failed", "notDeclared", ...}.
    capabilities: dict[str, Any] | None = None
    model_name: str | None = None
    api_model_id: str | None = None

    @property
    def attempts(self) -> int:
        """Attempts that ended (with an outcome, or lost to a crash), plus the one running now."""
        return len(self.attempt_log) + (1 if self.status == "PROCESSING" else 0)


@dataclass(frozen=True)
class CertificationRef:
    """What the dispatcher needs to (re-)enqueue a certification."""

    id: UUID
    job_id: UUID
    model_id: UUID
    region: str
    priority: Priority
    status: CertificationStatus
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return (self.total + self.limit - 1) // self.limit if self.limit else 0


@dataclass(frozen=True)
class SkippedPair:
    """A model+region that already had a live certification: that one is reported instead."""

    model_id: UUID
    region: str
    job_id: UUID
    certification_id: UUID
    status: CertificationStatus


@dataclass(frozen=True)
class JobCreated:
    job: JobRecord | None
    certifications: list[CertificationRef]
    skipped: list[SkippedPair] = field(default_factory=list)


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Replay:
    """A stored answer to a repeated Idempotency-Key; `matches` is False when the request differs."""

    status_code: int
    body: dict[str, Any]
    matches: bool


@dataclass(frozen=True)
class CancelOutcome:
    job: JobRecord
    cancelled: list[CertificationRef]
    already_finished: bool
