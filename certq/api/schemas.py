"""Pydantic models of every request body, query string and answer of the HTTP API (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from certq.api.regions import AWS_REGIONS
from certq.certification.capabilities import MAX_CONTEXT_WINDOW, MAX_OUTPUT_TOKENS, MIN_CONTEXT_WINDOW
from certq.web_input import Query

JobStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
JobType = Literal["SINGLE_MODEL", "MULTIPLE_MODELS", "ALL_MODELS"]
CertificationStatus = Literal["PENDING", "QUEUED", "PROCESSING", "CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"]
Priority = Literal["high", "normal", "low"]
Provider = Literal["openai", "bedrock"]

REGION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
MAX_LIMIT = 100


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("items must be unique")
    return values


Region = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=REGION_PATTERN,
        description="letters, digits and . _ : - (e.g. us-east-1, or local)",
    ),
]
Regions = Annotated[
    list[Region], Field(min_length=1, max_length=50, json_schema_extra={"uniqueItems": True}), AfterValidator(_unique)
]
# No control characters (PostgreSQL text cannot hold NUL; the others are never meant).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
ApiModelId = Annotated[str, Field(min_length=1, max_length=300, pattern=TEXT_PATTERN)]
BaseUrl = Annotated[str, Field(min_length=1, max_length=2000, pattern=TEXT_PATTERN)]
KeyEnv = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]
ServedModel = Annotated[
    str,
    Field(
        min_length=1,
        max_length=300,
        pattern=TEXT_PATTERN,
        description="the name the endpoint reports serving, where it is not apiModelId",
    ),
]
ValiditySeconds = Annotated[
    int,
    Field(ge=60, le=31_622_400, description="how long this model's verdicts stand (default CERTIFICATION_VALIDITY)"),
]

# Checked by certq.certification.capabilities.check_capabilities (422 naming `capabilities.<key>`), so that the
# API and the CLI refuse the same declarations; this is what the OpenAPI document shows of it.
_CAPABILITIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "description": "what the deployment claims beyond chat and streaming; each declared capability is probed. "
    "Absent or null: none (chat only, token accounting on). A PATCH replaces the whole object.",
    "properties": {
        "tools": {"type": "boolean", "default": False, "description": "tool (function) calling"},
        "structuredOutput": {
            "oneOf": [{"type": "boolean"}, {"type": "object", "required": ["type"]}],
            "default": False,
            "description": 'answers matching a JSON schema: true (certq\'s probe schema) or the schema ("type": '
            '"object", local $refs only) to certify against',
        },
        "contextWindow": {
            "type": ["integer", "null"],
            "minimum": MIN_CONTEXT_WINDOW,
            "maximum": MAX_CONTEXT_WINDOW,
            "description": "the advertised context window in tokens",
        },
        "maxOutputTokens": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_OUTPUT_TOKENS,
            "description": "the most tokens one answer may have; below contextWindow",
        },
        "tokenAccounting": {"type": "boolean", "default": True, "description": "honest usage numbers"},
    },
}
CapabilitiesIn = Annotated[Any, WithJsonSchema(_CAPABILITIES_SCHEMA)]


class Body(BaseModel):
    """A request body: camelCase names only, unknown fields rejected, no type coercion."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", strict=True, frozen=True)


class Answer(BaseModel):
    """An answer: built from records, written camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


# --- models ---------------------------------------------------------------------------------------


_NO_USERINFO = (
    "may not carry a user name or password (user:secret@host): declare the key in MODEL_CREDENTIALS "
    "and name it in apiKeyEnv"
)


def check_deployment(provider: str, base_url: str | None, regions: list[str]) -> list[tuple[str, str]]:
    """Cross-field rules of a deployment; (field, message) per violation."""
    problems: list[tuple[str, str]] = []
    if provider == "openai":
        if base_url is None:
            problems.append(("baseUrl", "an openai deployment needs its base URL (ending in /v1)"))
        else:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(("baseUrl", "must be an http(s) URL"))
            elif "@" in parts.netloc:
                problems.append(("baseUrl", _NO_USERINFO))
            elif not parts.path.rstrip("/").endswith("/v1"):
                problems.append(("baseUrl", "an openai base URL ends in /v1 (e.g. http://127.0.0.1:8080/v1)"))
    if provider == "bedrock":
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(("baseUrl", "must be an http(s) URL"))
            elif "@" in parts.netloc:
                problems.append(("baseUrl", _NO_USERINFO))
        for index, region in enumerate(regions):
            if region not in AWS_REGIONS:
                problems.append((f"regions[{index}]", f"{region!r} is not an AWS region name (e.g. us-east-1)"))
    return problems


class ModelCreate(Body):
    name: Name
    provider: Provider
    api_model_id: ApiModelId
    base_url: BaseUrl | None = None
    api_key_env: KeyEnv | None = None
    regions: Regions
    is_active: bool = True
    served_model: ServedModel | None = None
    validity_seconds: ValiditySeconds | None = None
    capabilities: CapabilitiesIn = None


class ModelUpdate(Body):
    name: Name | None = None
    provider: Provider | None = None
    api_model_id: ApiModelId | None = None
    base_url: BaseUrl | None = None
    api_key_env: KeyEnv | None = None
    regions: Regions | None = None
    is_active: bool | None = None
    served_model: ServedModel | None = None
    validity_seconds: ValiditySeconds | None = None
    capabilities: CapabilitiesIn = None


class CapabilitiesOut(Answer):
    """A model's declared capabilities, every key shown (the defaults where the registration gave none)."""

    tools: bool
    structured_output: bool | dict[str, Any] = Field(description="true, false, or the schema certified against")
    context_window: int | None
    max_output_tokens: int | None
    token_accounting: bool


class ModelOut(Answer):
    id: UUID
    name: str
    provider: Provider
    api_model_id: str
    base_url: str | None
    api_key_env: str | None
    regions: list[str]
    is_active: bool
    served_model: str | None
    validity_seconds: int | None
    capabilities: CapabilitiesOut
    created_at: datetime
    updated_at: datetime


class Pagination(Answer):
    page: int
    limit: int
    total: int
    total_pages: int


class ModelList(Answer):
    models: list[ModelOut]
    pagination: Pagination


class PageQuery(Query):
    """`page` (from 1) and `limit` (at most MAX_LIMIT), shared by every paged list route."""

    page: int = Field(1, ge=1, le=1_000_000)
    limit: int = Field(20, ge=1, le=MAX_LIMIT)


class ModelsQuery(PageQuery):
    active: bool | None = None


# --- certification ---------------------------------------------------------------------------------


class CertifyBody(Body):
    model_id: UUID
    region: Region
    priority: Priority = "normal"


class CertifyMultipleBody(Body):
    model_ids: Annotated[
        list[UUID],
        Field(min_length=1, max_length=MAX_LIMIT, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ]
    regions: Regions
    priority: Priority = "normal"


class CertifyAllBody(Body):
    regions: Regions
    priority: Priority = "normal"


class CertifyAnswer(Answer):
    job_id: UUID
    certification_id: UUID
    model_id: UUID
    region: str
    status: CertificationStatus
    priority: Priority
    existing: bool = Field(False, description="true when a queued or running certification was returned")


class SkippedOut(Answer):
    model_id: UUID
    region: str
    job_id: UUID
    certification_id: UUID
    status: CertificationStatus


class BatchAnswer(Answer):
    job_id: UUID | None = Field(description="null when every pair was already queued or running (see skipped)")
    total_jobs: int
    model_ids: list[UUID]
    regions: list[str]
    status: JobStatus | None
    priority: Priority
    certification_ids: list[UUID]
    skipped: list[SkippedOut] = Field(description="pairs already queued or running: their live certification")


class ModelRef(Answer):
    id: UUID
    name: str | None
    api_model_id: str | None


class CertificationOut(Answer):
    id: UUID
    job_id: UUID
    model_id: UUID
    name: str | None = Field(description="the model's display name")
    api_model_id: str | None
    model: ModelRef
    region: str
    status: CertificationStatus
    priority: Priority
    passed: bool | None
    score: float | None
    rating: str | None
    test_results: list[dict[str, Any]] | None
    metrics: dict[str, Any] | None
    error_category: str | None
    error_message: str | None
    attempts: int
    attempt_log: list[dict[str, Any]]
    duration_ms: int | None = Field(
        description="wall time from the first attempt's start to the verdict; each "
        "attempt's own run time is in its attempt_log entry"
    )
    valid_until: datetime | None = Field(description="when this verdict stops standing (EXPIRED after)")
    capabilities: dict[str, Any] | None = Field(
        None,
        description="what the verdict found of the model's declared capabilities: verified, failed and "
        "notDeclared name lists (and what the engine adds); null for verdicts that probed none",
    )
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


class JobOut(Answer):
    id: UUID
    job_id: UUID
    type: JobType
    status: JobStatus
    priority: Priority
    regions: list[str]
    model_ids: list[UUID]
    total_models: int
    processed_models: int
    progress: float = Field(description="percent of certifications with a final outcome (0-100)")
    success_count: int = Field(description="CERTIFIED")
    warning_count: int = Field(description="QUALITY_WARNING")
    failure_count: int = Field(description="FAILED")
    cancelled_count: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    duration_ms: int | None


class JobDetail(JobOut):
    certifications: list[CertificationOut]


class CancelAnswer(Answer):
    job_id: UUID
    status: JobStatus
    cancelled: int = Field(description="certifications ended CANCELLED by this request")
    removed_from_queue: int
    stopped_running: int
    already_finished: bool


class HistoryQuery(PageQuery):
    status: JobStatus | None = None
    type: JobType | None = None


class HistoryAnswer(Answer):
    jobs: list[JobOut]
    pagination: Pagination


class CertificationsQuery(PageQuery):
    model_id: UUID | None = None
    region: Region | None = None
    status: CertificationStatus | None = None


class CertificationsAnswer(Answer):
    certifications: list[CertificationOut]
    pagination: Pagination


class RegionCount(Answer):
    region: str
    status: CertificationStatus
    count: int


class StatsAnswer(Answer):
    queue: dict[str, int] = Field(description="job counts from Redis: waiting, active, delayed, completed, failed...")
    queue_available: bool
    certifications_by_status: dict[str, int]
    certifications_by_region: list[RegionCount]
    jobs_by_status: dict[str, int]
    timestamp: datetime


class RegionOut(Answer):
    id: str
    name: str
    active_models: int


class Problem(Answer):
    """RFC 9457 problem details; `field` names the offending input."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, str]] | None = None


# --- standing --------------------------------------------------------------------------------------


class StandingQuery(Query):
    model_id: UUID | None = None
    region: Region | None = None
    capability: str | None = Field(
        None,
        max_length=200,
        description="only pairs whose standing verdict verified these capabilities (tools, structuredOutput, "
        "contextWindow, tokenAccounting): repeat the parameter or separate them with commas; all must be verified",
    )


class StandingIdentity(Answer):
    provider: str
    api_model_id: str
    served_model: str | None = Field(description="the name the endpoint must report, where it is not apiModelId")
    reported: list[str] = Field(description="the model names the endpoint's answers reported in that verdict")
    finding: str | None = Field(description="matched, unreported, by-path (Bedrock) or mismatch")


class CapabilityFindings(Answer):
    verified: list[str] = Field(description="declared and passed their probes")
    failed: list[str] = Field(description="declared and failed their probes")
    not_declared: list[str] = Field(description="not declared by the model, so not probed")


class StandingEntry(Answer):
    model_id: UUID
    model_name: str
    region: str
    standing: Literal["CERTIFIED", "QUALITY_WARNING", "FAILED", "EXPIRED", "NEVER_CERTIFIED"]
    recertification: Literal["QUEUED", "RUNNING"] | None = Field(
        description="a certification of this pair queued or running now"
    )
    certification_id: UUID | None
    verdict: str | None = Field(description="the newest verdict's status (also once it has expired)")
    passed: bool | None
    score: float | None
    rating: str | None
    certified_at: datetime | None
    valid_until: datetime | None
    error_category: str | None
    identity: StandingIdentity
    capabilities: CapabilityFindings | None = Field(
        description="what the newest verdict found of the declared capabilities (null before any verdict "
        "that probed them)"
    )


class StandingAnswer(Answer):
    standing: list[StandingEntry]
