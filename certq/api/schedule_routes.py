"""/api/schedules: recurring certifications (writes need admin; each change goes to the audit log with its token)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from certq.api.openapi import Endpoint
from certq.api.problems import Problem, parse_body, parse_uuid
from certq.api.responses import answer, services_of
from certq.api.schedule_schemas import (
    ScheduleCreate,
    ScheduleDetail,
    ScheduleFilter,
    ScheduleFilterOut,
    ScheduleList,
    ScheduleOut,
    ScheduleUpdate,
    SlotOut,
)
from certq.cron import Cron, CronError
from certq.store import ScheduleRecord, ScheduleSpec, SlotRecord, Store

_FIELDS = {
    "name": "name",
    "cron": "cron",
    "timezone": "timezone",
    "modelIds": "model_ids",
    "regions": "regions",
    "priority": "priority",
    "catchUp": "catch_up",
    "paused": "paused",
}
_CLEARABLE: dict[str, list[Any]] = {"modelIds": [], "regions": []}


def schedule_out(record: ScheduleRecord) -> ScheduleOut:
    return ScheduleOut.model_validate({**record.__dict__, "filter": _filter_out(record)})


def schedule_detail(record: ScheduleRecord, slots: list[SlotRecord]) -> ScheduleDetail:
    return ScheduleDetail.model_validate(
        {
            **record.__dict__,
            "filter": _filter_out(record),
            "recent_slots": [SlotOut.model_validate(s.__dict__) for s in slots],
        }
    )


def _filter_out(record: ScheduleRecord) -> ScheduleFilterOut | None:
    if record.filter_standings is None and record.filter_expiring_s is None:
        return None
    return ScheduleFilterOut(standing=record.filter_standings, expires_within_seconds=record.filter_expiring_s)


def _filter_columns(value: ScheduleFilter | None) -> dict[str, Any]:
    if value is None:
        return {"filter_standings": None, "filter_expiring_s": None}
    return {"filter_standings": value.standing, "filter_expiring_s": value.expires_within_seconds}


def _actor(request: Request) -> tuple[str, str | None]:
    token = request.scope.get("state", {}).get("token_id", "unknown")
    return f"token:{token}", None if request.client is None else request.client.host


def _check_cron(cron: str, zone: str) -> None:
    try:
        Cron.parse(cron, zone)
    except CronError as exc:
        raise Problem(400, f"{exc.field}: {exc.message}", field=exc.field, kind="invalid-input") from None


async def _check_models(store: Store, model_ids: list[UUID]) -> None:
    found = await store.get_models(model_ids)
    for index, model_id in enumerate(model_ids):
        model = found.get(model_id)
        if model is None:
            raise Problem(
                404,
                f"modelIds[{index}]: no model with id {model_id}",
                field=f"modelIds[{index}]",
                kind="model-not-found",
            )
        if not model.is_active:
            raise Problem(
                422,
                f"modelIds[{index}]: model {model_id} is inactive",
                field=f"modelIds[{index}]",
                kind="model-inactive",
            )


async def create_schedule(request: Request) -> Response:
    body, _ = await parse_body(request, ScheduleCreate)
    actor, remote = _actor(request)
    return answer(201, await create_with(services_of(request).need_store(), body, actor, remote))


async def create_with(store: Store, body: ScheduleCreate, actor: str, remote: str | None) -> ScheduleOut:
    """POST /api/schedules without the request: the dashboard's door too (api/board.py)."""
    _check_cron(body.cron, body.timezone)
    await _check_models(store, body.model_ids or [])
    spec = ScheduleSpec(
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        model_ids=body.model_ids or [],
        regions=body.regions or [],
        priority=body.priority,
        catch_up=body.catch_up,
        paused=body.paused,
        **_filter_columns(body.filter),
    )
    record = await store.create_schedule(spec, actor=actor, remote_addr=remote)
    return schedule_out(record)


async def list_schedules(request: Request) -> Response:
    records = await services_of(request).need_store().list_schedules()
    return answer(200, ScheduleList(schedules=[schedule_out(r) for r in records]))


async def _existing(request: Request) -> ScheduleRecord:
    return await existing(services_of(request).need_store(), request.path_params["schedule_id"])


async def existing(store: Store, raw_id: str) -> ScheduleRecord:
    """The schedule `raw_id` names; a Problem naming scheduleId when it is not a UUID or not found."""
    schedule_id = parse_uuid(raw_id, "scheduleId")
    record = await store.get_schedule(schedule_id)
    if record is None:
        raise Problem(404, f"no schedule with id {schedule_id}", field="scheduleId", kind="schedule-not-found")
    return record


async def get_schedule(request: Request) -> Response:
    record = await _existing(request)
    slots = await services_of(request).need_store().schedule_slots(record.id)
    return answer(200, schedule_detail(record, slots))


async def update_schedule(request: Request) -> Response:
    store = services_of(request).need_store()
    current = await _existing(request)
    body, _ = await parse_body(request, ScheduleUpdate)
    actor, remote = _actor(request)
    return answer(200, await update_with(store, current, body, actor, remote))


async def update_with(
    store: Store, current: ScheduleRecord, body: ScheduleUpdate, actor: str, remote: str | None
) -> ScheduleOut:
    """PATCH /api/schedules/{id} without the request: the dashboard's door too (api/board.py)."""
    given = body.model_dump(by_alias=True, exclude_unset=True)
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name == "filter":
            changes.update(_filter_columns(body.filter))
        elif value is None and name not in _CLEARABLE:
            raise Problem(400, f"{name} cannot be null", field=name, kind="invalid-input")
        else:
            changes[_FIELDS[name]] = _CLEARABLE[name] if value is None else getattr(body, _FIELDS[name])
    _check_cron(changes.get("cron", current.cron), changes.get("timezone", current.timezone))
    if changes.get("model_ids"):
        await _check_models(store, changes["model_ids"])
    record = await store.update_schedule(current.id, changes, actor=actor, remote_addr=remote)
    if record is None:
        raise Problem(404, f"no schedule with id {current.id}", field="scheduleId", kind="schedule-not-found")
    return schedule_out(record)


async def delete_schedule(request: Request) -> Response:
    current = await _existing(request)
    actor, remote = _actor(request)
    return answer(200, await delete_with(services_of(request).need_store(), current, actor, remote))


async def delete_with(store: Store, current: ScheduleRecord, actor: str, remote: str | None) -> ScheduleOut:
    record = await store.delete_schedule(current.id, actor=actor, remote_addr=remote)
    if record is None:
        raise Problem(404, f"no schedule with id {current.id}", field="scheduleId", kind="schedule-not-found")
    return schedule_out(record)


_ONE = "/api/schedules/{schedule_id}"
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/schedules",
        create_schedule,
        "Create a schedule of recurring certifications",
        {201: ScheduleOut},
        body=ScheduleCreate,
        tags=("schedules",),
    ),
    Endpoint(
        "GET",
        "/api/schedules",
        list_schedules,
        "List schedules, oldest first",
        {200: ScheduleList},
        tags=("schedules",),
    ),
    Endpoint(
        "GET",
        _ONE,
        get_schedule,
        "One schedule and its newest slots",
        {200: ScheduleDetail},
        path_params=("schedule_id",),
        tags=("schedules",),
    ),
    Endpoint(
        "PATCH",
        _ONE,
        update_schedule,
        'Change a schedule ({"paused": true} pauses it)',
        {200: ScheduleOut},
        body=ScheduleUpdate,
        path_params=("schedule_id",),
        tags=("schedules",),
    ),
    Endpoint(
        "DELETE",
        _ONE,
        delete_schedule,
        "Delete a schedule (the jobs it made stay)",
        {200: ScheduleOut},
        path_params=("schedule_id",),
        tags=("schedules",),
    ),
]
