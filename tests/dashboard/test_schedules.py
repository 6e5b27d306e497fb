"""Schedules in the dashboard over real HTTP: listed with their next and newest slots; created, changed, paused,
resumed and deleted through the API's own schedule logic (same validation), each change audited with the
board user; the CSRF and read-only rules hold. And the pair history marks where the standing changed class."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from certq.settings import load_settings
from certq.store import Store
from tests.dashboard.conftest import BOARD_PATH, PASSWORD, Api, Board, VerdictMaker, basic, serve_board

pytestmark = pytest.mark.timeout(60)


async def _audit(store: Store, target: str) -> list[tuple[str, str, str]]:
    rows = await store.pool.fetch(
        "SELECT actor, action, outcome FROM dashboard_audit WHERE target = $1 ORDER BY id", target
    )
    return [(r["actor"], r["action"], r["outcome"]) for r in rows]


def _name() -> str:
    return f"nightly-{uuid.uuid4().hex[:6]}"


async def test_a_schedule_created_from_the_board_is_stored_listed_and_audited_with_the_user(
    api: Api, make_model: Any
) -> None:
    model = await make_model(regions=["eu", "us"])
    body = {
        "name": _name(),
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "modelIds": [str(model.id)],
        "regions": ["eu"],
        "priority": "low",
        "filter": {"expiresWithinSeconds": 86_400},
        "catchUp": "skip",
    }
    created = await api.board.post("api/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()["schedule"]
    record = await api.store.get_schedule(schedule["id"])
    assert record is not None
    assert (record.cron, record.timezone, record.model_ids, record.regions) == (
        "30 2 * * *",
        "Europe/Berlin",
        [model.id],
        ["eu"],
    )
    assert (record.priority, record.filter_expiring_s, record.catch_up, record.paused) == ("low", 86_400, "skip", False)
    assert await _audit(api.store, schedule["id"]) == [(api.user, "schedule.create", "ok")]

    listed = (await api.board.get("api/schedules")).json()["schedules"]
    [mine] = [s for s in listed if s["id"] == schedule["id"]]
    assert mine["models"] == [{"id": str(model.id), "name": model.name}]
    assert mine["filter"] == {"standing": None, "expiresWithinSeconds": 86_400}
    assert (mine["catchUp"], mine["paused"], mine["recentSlots"]) == ("skip", False, [])
    assert datetime.fromisoformat(mine["nextSlotAt"]) == record.next_slot_at


async def test_the_list_shows_the_newest_fired_slots_first(api: Api, make_model: Any) -> None:
    model = await make_model()
    t0 = datetime(2031, 1, 6, 9, 59, 30, tzinfo=UTC)
    from certq.store import ScheduleSpec

    record = await api.store.create_schedule(
        ScheduleSpec(name=_name(), cron="0 * * * *", model_ids=[model.id]), actor="test", now=t0
    )
    for hour in range(1, 8):
        await api.store.fire_schedule(record.id, now=t0 + timedelta(hours=hour, minutes=1))
    listed = (await api.board.get("api/schedules")).json()["schedules"]
    [mine] = [s for s in listed if s["id"] == str(record.id)]
    slots = mine["recentSlots"]
    assert len(slots) == 5
    assert [datetime.fromisoformat(s["slotAt"]).hour for s in slots] == [17, 16, 15, 14, 13]  # 10:00 UTC is first
    assert slots[-1]["queued"] == 0 and slots[-1]["skipped"] == 1  # the first slot's run is still live
    assert mine["lastSlotAt"] == slots[0]["slotAt"]


async def test_pause_resume_change_and_delete_go_through_the_store_and_the_audit_log(api: Api, make_model: Any) -> None:
    model = await make_model()
    created = await api.board.post("api/schedules", json={"name": _name(), "cron": "0 3 * * *"})
    sid = created.json()["schedule"]["id"]
    paused = await api.board.post(f"api/schedules/{sid}/pause")
    assert paused.status_code == 200 and paused.json()["schedule"]["paused"] is True
    assert (await api.store.get_schedule(sid)).paused  # type: ignore[union-attr]
    resumed = await api.board.post(f"api/schedules/{sid}/resume")
    assert resumed.json()["schedule"]["paused"] is False
    changed = await api.board.patch(
        f"api/schedules/{sid}",
        json={"cron": "*/15 * * * *", "modelIds": [str(model.id)], "filter": {"standing": ["FAILED"]}},
    )
    assert changed.status_code == 200, changed.text
    record = await api.store.get_schedule(sid)
    assert record is not None and (record.cron, record.model_ids, record.filter_standings) == (
        "*/15 * * * *",
        [model.id],
        ["FAILED"],
    )
    deleted = await api.board.delete(f"api/schedules/{sid}")
    assert deleted.status_code == 200 and await api.store.get_schedule(sid) is None
    assert [action for _, action, _ in await _audit(api.store, sid)] == [
        "schedule.create",
        "schedule.pause",
        "schedule.resume",
        "schedule.update",
        "schedule.delete",
    ]
    assert {actor for actor, _, _ in await _audit(api.store, sid)} == {api.user}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "x", "cron": "61 * * * *"}, 400, "cron"),
        ({"name": "x", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, 400, "timezone"),
        ({"name": "x", "cron": "0 3 * * *", "modelIds": [str(uuid.uuid4())]}, 404, "modelIds[0]"),
        ({"name": "x", "cron": "0 3 * * *", "filter": {}}, 400, "filter"),
        ({"name": "x", "cron": "0 3 * * *", "catchUp": "twice"}, 400, "catchUp"),
        ({"cron": "0 3 * * *"}, 400, "name"),
        ({"name": "x", "cron": "0 3 * * *", "color": "red"}, 400, "color"),
    ],
)
async def test_bad_schedules_are_refused_by_the_apis_validation_naming_the_field_and_audited(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    refused = await api.board.post("api/schedules", json=body)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["field"] == field
    rows = await api.store.pool.fetch(
        "SELECT outcome FROM dashboard_audit WHERE actor = $1 AND action = 'schedule.create'", api.user
    )
    assert [r["outcome"].split(":")[0] for r in rows] == [f"refused ({status})"]


async def test_changes_to_unknown_or_malformed_schedule_ids_are_problems_naming_the_id(api: Api) -> None:
    missing = await api.board.post(f"api/schedules/{uuid.uuid4()}/pause")
    assert missing.status_code == 404 and missing.json()["field"] == "scheduleId"
    malformed = await api.board.delete("api/schedules/not-a-uuid")
    assert malformed.status_code == 400 and malformed.json()["field"] == "scheduleId"
    sid = (await api.board.post("api/schedules", json={"name": _name(), "cron": "0 3 * * *"})).json()["schedule"]["id"]
    bad_json = await api.board.patch(f"api/schedules/{sid}", content=b"{", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
    null_cron = await api.board.patch(f"api/schedules/{sid}", json={"cron": None})
    assert null_cron.status_code == 400 and null_cron.json()["field"] == "cron"


async def test_schedule_changes_need_the_csrf_header_and_a_same_origin_request(api: Api) -> None:
    body = {"name": _name(), "cron": "0 3 * * *"}
    async with httpx.AsyncClient(
        base_url=api.url + BOARD_PATH + "/", timeout=10, headers={"Authorization": basic(api.user, PASSWORD)}
    ) as client:
        assert (await client.post("api/schedules", json=body)).status_code == 403
        other = await client.post(
            "api/schedules", json=body, headers={"X-Certq-Board": "1", "Origin": "https://evil.example"}
        )
        assert other.status_code == 403
    assert not [s for s in await api.store.list_schedules() if s.name == body["name"]]


async def test_a_read_only_board_lists_schedules_but_changes_none(
    redis_client: Any, store: Store, queue_config: Any, key_prefix: str, board_user: str
) -> None:
    from certq.dashboard import StaticDeps
    from certq.queue import Queue
    from certq.store import ScheduleSpec

    record = await store.create_schedule(ScheduleSpec(name=_name(), cron="0 3 * * *"), actor="test")
    settings = load_settings(
        board_username=board_user,
        board_password=PASSWORD,
        queue_prefix=key_prefix,
        board_path=BOARD_PATH,
        board_read_only=True,
    )

    async def door(change: Any) -> dict[str, Any]:
        raise AssertionError("a read-only board must not reach the schedule logic")

    server, url = await serve_board(
        settings, StaticDeps(queue=Queue(redis_client, queue_config), store=store, schedules=door)
    )
    try:
        async with httpx.AsyncClient(
            base_url=url + BOARD_PATH + "/",
            timeout=10,
            headers={"Authorization": basic(board_user, PASSWORD), "X-Certq-Board": "1"},
        ) as client:
            listed = await client.get("api/schedules")
            assert str(record.id) in {s["id"] for s in listed.json()["schedules"]}
            for method, path in (
                ("POST", "api/schedules"),
                ("POST", f"api/schedules/{record.id}/pause"),
                ("PATCH", f"api/schedules/{record.id}"),
                ("DELETE", f"api/schedules/{record.id}"),
            ):
                refused = await client.request(method, path, json={"name": "x", "cron": "0 3 * * *"})
                assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    finally:
        await server.stop()
        await store.pool.execute("DELETE FROM schedules WHERE id = $1", record.id)
    assert await _audit(store, str(record.id)) == [("test", "schedule.create", "ok")]


async def test_a_board_without_the_api_lists_schedules_but_answers_503_to_changes(board: Board) -> None:
    assert (await board.client.get("api/schedules")).status_code == 200
    refused = await board.post("api/schedules", {"name": "x", "cron": "0 3 * * *"})
    assert refused.status_code == 503


async def test_the_pair_history_marks_degraded_recovered_and_expired_verdicts(
    api: Api, make_model: Any, finished_run: VerdictMaker
) -> None:
    model = await make_model(regions=["eu"])
    first = await finished_run(model, "eu", status="CERTIFIED", score=95)
    worse = await finished_run(model, "eu", status="QUALITY_WARNING", score=78)
    better = await finished_run(model, "eu", status="CERTIFIED", score=93)
    degraded = await api.store.record_drift(worse)
    recovered = await api.store.record_drift(better)
    assert degraded is not None and recovered is not None
    await api.store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 minute' WHERE id = $1", better
    )
    [expired] = [e for e in await api.store.record_expiries() if e.certification_id == better]

    data = (await api.board.get(f"api/certifications/pair?modelId={model.id}&region=eu")).json()
    marks = {run["id"]: [t["kind"] for t in run["transitions"]] for run in data["runs"]}
    assert marks == {str(first): [], str(worse): ["degraded"], str(better): ["recovered", "expired"]}
    assert [e["kind"] for e in data["events"]] == ["expired", "recovered", "degraded"]
    [down] = [t for run in data["runs"] if run["id"] == str(worse) for t in run["transitions"]]
    assert (down["previousStatus"], down["previousScore"], down["status"], down["score"]) == (
        "CERTIFIED",
        95.0,
        "QUALITY_WARNING",
        78.0,
    )
    assert expired.status == "EXPIRED"
