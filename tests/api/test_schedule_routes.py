"""/api/schedules: create, list, change, pause, delete; bad input names its field; writes need admin; audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from certq.api.auth import token_fingerprint
from tests.api.conftest import CreateModel
from tests.conftest import api_settings
from tests.support.servers import serve_app


@pytest.fixture
async def db(migrated_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection for looking at rows; every schedule made through the API in the test is deleted after it."""
    conn = await asyncpg.connect(migrated_database_url)
    before = {r["id"] for r in await conn.fetch("SELECT id FROM schedules")}
    try:
        yield conn
    finally:
        made = [r["id"] for r in await conn.fetch("SELECT id FROM schedules") if r["id"] not in before]
        await conn.execute("DELETE FROM schedules WHERE id = ANY($1::uuid[])", made)
        await conn.close()


def _body(**fields: Any) -> dict[str, Any]:
    return {"name": f"nightly-{uuid.uuid4().hex[:6]}", "cron": "30 2 * * *", "timezone": "Europe/Berlin", **fields}


async def test_create_list_get_patch_pause_and_delete(
    client: httpx.AsyncClient, create_model: CreateModel, db: asyncpg.Connection
) -> None:
    model = await create_model(regions=["local", "eu"])
    created = await client.post(
        "/api/schedules",
        json=_body(
            modelIds=[model["id"]], regions=["eu"], priority="low", filter={"standing": ["FAILED"]}, catchUp="skip"
        ),
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert {k: schedule[k] for k in ("cron", "timezone", "modelIds", "regions", "priority", "catchUp", "paused")} == {
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "modelIds": [model["id"]],
        "regions": ["eu"],
        "priority": "low",
        "catchUp": "skip",
        "paused": False,
    }
    assert schedule["filter"] == {"standing": ["FAILED"], "expiresWithinSeconds": None}
    assert schedule["nextSlotAt"].endswith(("T00:30:00Z", "T01:30:00Z"))  # 02:30 Berlin, summer or winter

    listed = (await client.get("/api/schedules")).json()["schedules"]
    assert schedule["id"] in [s["id"] for s in listed]
    one = await client.get(f"/api/schedules/{schedule['id']}")
    assert one.status_code == 200 and one.json()["recentSlots"] == []

    paused = await client.patch(f"/api/schedules/{schedule['id']}", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    changed = await client.patch(
        f"/api/schedules/{schedule['id']}",
        json={"cron": "@hourly", "timezone": "UTC", "regions": None, "filter": {"expiresWithinSeconds": 172800}},
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["cron"] == "@hourly" and after["regions"] == [] and after["paused"] is True
    assert after["filter"] == {"standing": None, "expiresWithinSeconds": 172800}
    assert after["nextSlotAt"].endswith(":00:00Z")

    deleted = await client.delete(f"/api/schedules/{schedule['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == schedule["id"]
    assert (await client.get(f"/api/schedules/{schedule['id']}")).status_code == 404
    assert (await client.delete(f"/api/schedules/{schedule['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"cron": "61 * * * *"}, 400, "cron"),
        ({"cron": "0 0 31 2 *"}, 400, "cron"),
        ({"cron": "* * *"}, 400, "cron"),
        ({"timezone": "Europe/Atlantis"}, 400, "timezone"),
        ({"timezone": "../../etc/passwd"}, 400, "timezone"),
        ({"modelIds": [str(uuid.uuid4())]}, 404, "modelIds[0]"),
        ({"modelIds": ["not-a-uuid"]}, 400, "modelIds[0]"),
        ({"priority": "urgent"}, 400, "priority"),
        ({"catchUp": "all"}, 400, "catchUp"),
        ({"filter": {"standing": ["FAILED"], "expiresWithinSeconds": 3600}}, 400, "filter"),
        ({"filter": {}}, 400, "filter"),
        ({"filter": {"expiresWithinSeconds": 5}}, 400, "filter.expiresWithinSeconds"),
        ({"filter": {"standing": ["BROKEN"]}}, 400, "filter.standing[0]"),
        ({"regions": ["bad region"]}, 400, "regions[0]"),
        ({"every": "day"}, 400, "every"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, db: asyncpg.Connection, fields: dict[str, Any], status: int, field: str
) -> None:
    response = await client.post("/api/schedules", json=_body(**fields))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


async def test_an_inactive_model_and_null_for_a_required_field_are_refused(
    client: httpx.AsyncClient, create_model: CreateModel, db: asyncpg.Connection
) -> None:
    model = await create_model(isActive=False)
    refused = await client.post("/api/schedules", json=_body(modelIds=[model["id"]]))
    assert refused.status_code == 422 and refused.json()["field"] == "modelIds[0]"
    schedule = (await client.post("/api/schedules", json=_body())).json()
    for name in ("name", "cron", "paused"):
        response = await client.patch(f"/api/schedules/{schedule['id']}", json={name: None})
        assert response.status_code == 400 and response.json()["field"] == name
    bad_zone = await client.patch(f"/api/schedules/{schedule['id']}", json={"timezone": "Nowhere/Land"})
    assert bad_zone.status_code == 400 and bad_zone.json()["field"] == "timezone"
    assert (await client.get("/api/schedules/xyz")).json()["field"] == "scheduleId"


@pytest.fixture
async def read_and_admin(
    migrated_database_url: str, redis_url: str, key_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[str, str, str]]:
    from certq.api import create_app

    read, admin = f"read-{uuid.uuid4().hex}", f"admin-{uuid.uuid4().hex}"
    app = create_app(api_settings(migrated_database_url, redis_url, key_prefix, f"{read}:read,{admin}:admin"))
    async with serve_app(app) as url:
        yield url, read, admin


async def test_a_read_token_may_look_but_not_write_and_every_write_is_audited_with_its_token(
    read_and_admin: tuple[str, str, str], db: asyncpg.Connection
) -> None:
    url, read, admin = read_and_admin
    async with (
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as as_admin,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {read}"}) as as_reader,
    ):
        schedule = (await as_admin.post("/api/schedules", json=_body())).json()
        one = f"/api/schedules/{schedule['id']}"
        for response in (
            await as_reader.post("/api/schedules", json=_body()),
            await as_reader.patch(one, json={"paused": True}),
            await as_reader.delete(one),
        ):
            assert response.status_code == 403 and response.json()["field"] == "Authorization"
        assert (await as_reader.get(one)).status_code == 200
        assert (await as_reader.get("/api/schedules")).status_code == 200
        assert (await as_admin.patch(one, json={"paused": True})).status_code == 200
        assert (await as_admin.patch(one, json={"paused": False})).status_code == 200
        assert (await as_admin.delete(one)).status_code == 200
    rows = await db.fetch(
        "SELECT actor, action, remote_addr FROM dashboard_audit WHERE target = $1 ORDER BY id", schedule["id"]
    )
    actor = f"token:{token_fingerprint(admin)}"
    assert [(r["actor"], r["action"]) for r in rows] == [
        (actor, "schedule.create"),
        (actor, "schedule.pause"),
        (actor, "schedule.resume"),
        (actor, "schedule.delete"),
    ]
    assert rows[0]["remote_addr"] == "127.0.0.1"


async def test_the_openapi_document_has_the_schedule_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/schedules"]) == {"get", "post"}
    assert set(paths["/api/schedules/{schedule_id}"]) == {"get", "patch", "delete"}
    assert paths["/api/schedules"]["post"]["x-certq-role"] == "admin"
