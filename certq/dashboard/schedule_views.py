"""JSON endpoints over the schedules: the list (with each one's next and newest slots) and the operator's
changes, which go through the API's own schedule logic (deps.schedules) and so its validation and audit."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certq.dashboard.ports import ScheduleChange, ScheduleVerb
from certq.dashboard.web import JSON, audited, capped_body, deps, store_of, user_of
from certq.problems import Problem
from certq.store import ScheduleRecord, SlotRecord

RECENT_SLOTS = 5


def _slot_json(slot: SlotRecord) -> dict[str, Any]:
    return {
        "slotAt": slot.slot_at.isoformat(),
        "firedAt": slot.fired_at.isoformat(),
        "outcome": slot.outcome,
        "missed": slot.missed,
        "jobId": None if slot.job_id is None else str(slot.job_id),
        "queued": slot.queued,
        "skipped": slot.skipped,
    }


def _schedule_json(record: ScheduleRecord, names: dict[str, str], slots: list[SlotRecord]) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "name": record.name,
        "cron": record.cron,
        "timezone": record.timezone,
        "models": [{"id": str(m), "name": names.get(str(m))} for m in record.model_ids],
        "regions": record.regions,
        "priority": record.priority,
        "filter": None
        if record.filter_standings is None and record.filter_expiring_s is None
        else {"standing": record.filter_standings, "expiresWithinSeconds": record.filter_expiring_s},
        "catchUp": record.catch_up,
        "paused": record.paused,
        "nextSlotAt": record.next_slot_at.isoformat(),
        "lastSlotAt": record.last_slot_at and record.last_slot_at.isoformat(),
        "recentSlots": [_slot_json(s) for s in slots],
    }


async def list_schedules(request: Request) -> Response:
    store = store_of(request)
    records = await store.list_schedules()
    slots = await store.recent_slots([r.id for r in records], RECENT_SLOTS)
    models = await store.get_models(list({m for r in records for m in r.model_ids}))
    names = {str(model_id): model.name for model_id, model in models.items()}
    return JSON({"schedules": [_schedule_json(r, names, slots.get(r.id, [])) for r in records]})


async def _change(request: Request, verb: ScheduleVerb, body: bytes, outcome: str) -> Response:
    door = deps(request).schedules
    if door is None:
        raise Problem(503, "schedules cannot be changed from this process (it hosts no API)")
    raw_id = request.path_params.get("schedule_id")
    if raw_id is not None and (len(raw_id) > 100 or "\0" in raw_id):
        raise Problem(400, "scheduleId must be a UUID", field="scheduleId")
    client = request.client
    schedule = await door(
        ScheduleChange(
            verb=verb,
            schedule_id=raw_id,
            body=body,
            actor=user_of(request),
            remote_addr=None if client is None else client.host,
        )
    )
    status = 201 if verb == "create" else 200
    return JSON({"ok": True, "outcome": f"{outcome} {schedule['name']!r}", "schedule": schedule}, status_code=status)


async def create_schedule(request: Request) -> Response:
    return await _change(request, "create", await capped_body(request), "created schedule")


async def update_schedule(request: Request) -> Response:
    return await _change(request, "update", await capped_body(request), "changed schedule")


async def pause_schedule(request: Request) -> Response:
    return await _change(request, "update", orjson.dumps({"paused": True}), "paused schedule")


async def resume_schedule(request: Request) -> Response:
    return await _change(request, "update", orjson.dumps({"paused": False}), "resumed schedule")


async def delete_schedule(request: Request) -> Response:
    return await _change(request, "delete", b"", "deleted schedule")


_ONE = "/api/schedules/{schedule_id}"
routes = [
    Route("/api/schedules", list_schedules, methods=["GET"]),
    Route("/api/schedules", audited("schedule.create", create_schedule), methods=["POST"]),
    Route(_ONE, audited("schedule.update", update_schedule), methods=["PATCH"]),
    Route(_ONE, audited("schedule.delete", delete_schedule), methods=["DELETE"]),
    Route(_ONE + "/pause", audited("schedule.pause", pause_schedule), methods=["POST"]),
    Route(_ONE + "/resume", audited("schedule.resume", resume_schedule), methods=["POST"]),
]
