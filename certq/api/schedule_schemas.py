"""Pydantic models of /api/schedules: bodies (a cron in a time zone, a target, a filter, a catch-up policy) and
answers, camelCase on the wire like the rest of the API (certq/api/schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import AfterValidator, Field, model_validator

from certq.api.schemas import MAX_LIMIT, Answer, Body, Name, Priority, Regions
from certq.cron import CatchUp, Cron, CronError, time_zone

StandingName = Literal["CERTIFIED", "QUALITY_WARNING", "FAILED", "EXPIRED", "NEVER_CERTIFIED"]


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("items must be unique")
    return values


def _cron(value: str) -> str:
    text = " ".join(value.split())
    try:
        Cron.parse(text, "UTC")
    except CronError as exc:
        raise ValueError(exc.message) from None
    return text


def _zone(value: str) -> str:
    try:
        time_zone(value)
    except CronError as exc:
        raise ValueError(exc.message) from None
    return value


CronText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description=(
            "5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @hourly, @daily, @weekly, "
            "@monthly, @yearly"
        ),
        examples=["30 2 * * *"],
    ),
    AfterValidator(_cron),
]
TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=100, description="an IANA time zone name", examples=["Europe/Berlin"]),
    AfterValidator(_zone),
]
ModelIds = Annotated[
    list[UUID],
    Field(min_length=1, max_length=MAX_LIMIT, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
Standings = Annotated[
    list[StandingName],
    Field(min_length=1, max_length=5, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
ExpiresWithin = Annotated[int, Field(ge=60, le=31_622_400, description="seconds")]


class ScheduleFilter(Body):
    """Exactly one: `standing` (only pairs in one of these standings now, e.g. ["FAILED"]) or
    `expiresWithinSeconds` (only pairs whose verdict stops standing within that long: expired and never
    certified pairs too)."""

    standing: Standings | None = None
    expires_within_seconds: ExpiresWithin | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.standing is None) == (self.expires_within_seconds is None):
            raise ValueError("give exactly one of standing, expiresWithinSeconds")
        return self


class ScheduleCreate(Body):
    """Without modelIds: every active model; without regions: every region each model offers."""

    name: Name
    cron: CronText
    timezone: TimeZone = "UTC"
    model_ids: ModelIds | None = None
    regions: Regions | None = None
    priority: Priority = "normal"
    filter: ScheduleFilter | None = None
    catch_up: CatchUp = Field(
        "once", description="after downtime: once = one run for every missed slot, skip = drop missed slots"
    )
    paused: bool = False


class ScheduleUpdate(Body):
    """Only the fields given change; null clears modelIds, regions and filter. `{"paused": true}` pauses."""

    name: Name | None = None
    cron: CronText | None = None
    timezone: TimeZone | None = None
    model_ids: ModelIds | None = None
    regions: Regions | None = None
    priority: Priority | None = None
    filter: ScheduleFilter | None = None
    catch_up: CatchUp | None = None
    paused: bool | None = None


class ScheduleFilterOut(Answer):
    standing: list[StandingName] | None
    expires_within_seconds: int | None


class ScheduleOut(Answer):
    id: UUID
    name: str
    cron: str
    timezone: str
    model_ids: list[UUID] = Field(description="empty: every active model")
    regions: list[str] = Field(description="empty: every region each model offers")
    priority: Priority
    filter: ScheduleFilterOut | None
    catch_up: CatchUp
    paused: bool
    next_slot_at: datetime = Field(description="the slot it waits for")
    last_slot_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SlotOut(Answer):
    slot_at: datetime
    fired_at: datetime
    outcome: Literal["fired", "dropped"]
    missed: int = Field(description="earlier slots this one ran for (catch-up once) or dropped with it (skip)")
    missed_since: datetime | None
    job_id: UUID | None = Field(description="null when no pair needed a run (filtered out, or already live)")
    queued: int
    skipped: int = Field(description="pairs that already had a queued or running certification")


class ScheduleDetail(ScheduleOut):
    recent_slots: list[SlotOut] = Field(description="the newest 20 slots first")


class ScheduleList(Answer):
    schedules: list[ScheduleOut]
