"""`certq schedules list|add|pause|resume|delete` on the real PostgreSQL, audited as cli:<user>@<host>."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from tests.cli.conftest import Result

RunCli = Callable[..., Result]


def _sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[str]:
    """The database URL; schedules this test adds are deleted after it."""
    before = {r["id"] for r in _sql(migrated_database_url, "SELECT id FROM schedules")}
    yield migrated_database_url
    made = [r["id"] for r in _sql(migrated_database_url, "SELECT id FROM schedules") if r["id"] not in before]
    _sql(migrated_database_url, "DELETE FROM schedules WHERE id = ANY($1::uuid[])", made)


@pytest.fixture
def model_id(db: str) -> str:
    [row] = _sql(
        db,
        "INSERT INTO models (name, provider, api_model_id, base_url, regions) "
        "VALUES ($1, 'openai', 'x', 'http://127.0.0.1:9/v1', '{eu,us}') RETURNING id",
        f"cli-{uuid.uuid4().hex[:6]}",
    )
    return str(row["id"])


def test_add_list_pause_resume_and_delete(run_cli: RunCli, cli_env: str, db: str, model_id: str) -> None:
    added = run_cli(
        "schedules",
        "add",
        "--name",
        "nightly",
        "--cron",
        "30  2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--model",
        model_id,
        "--region",
        "eu",
        "--expiring-within",
        "2d",
        "--catch-up",
        "skip",
        "--priority",
        "low",
        "--json",
        "--database-url",
        db,
    )
    assert added.code == 0, added.err
    schedule = added.json()
    assert {k: schedule[k] for k in ("cron", "timezone", "modelIds", "regions", "priority", "catchUp", "filter")} == {
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "modelIds": [model_id],
        "regions": ["eu"],
        "priority": "low",
        "catchUp": "skip",
        "filter": {"standing": None, "expiresWithinSeconds": 172800},
    }

    listed = run_cli("schedules", "list", "--json", "--database-url", db)
    assert schedule["id"] in [s["id"] for s in listed.json()]
    table = run_cli("schedules", "list", "--database-url", db)
    assert table.code == 0 and "nightly" in table.out and "30 2 * * * (Europe/Berlin)" in table.out
    assert "expiring within 2d" in table.out and ("CET" in table.out or "CEST" in table.out)

    paused = run_cli("schedules", "pause", schedule["id"], "--database-url", db)
    assert paused.code == 0 and "paused" in paused.out
    assert _sql(db, "SELECT paused FROM schedules WHERE id = $1", uuid.UUID(schedule["id"]))[0]["paused"] is True
    resumed = run_cli("schedules", "resume", schedule["id"], "--database-url", db)
    assert resumed.code == 0 and "resumed; next slot" in resumed.out
    deleted = run_cli("schedules", "delete", schedule["id"], "--database-url", db)
    assert deleted.code == 0 and "deleted" in deleted.out
    again = run_cli("schedules", "delete", schedule["id"], "--database-url", db)
    assert again.code == 4 and "no schedule" in again.err

    actions = _sql(db, "SELECT actor, action FROM dashboard_audit WHERE target = $1 ORDER BY id", schedule["id"])
    assert [r["action"] for r in actions] == ["schedule.create", "schedule.pause", "schedule.resume", "schedule.delete"]
    assert all(r["actor"].startswith("cli:") and "@" in r["actor"] for r in actions)


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--cron", "61 * * * *"], 2, "--cron: '61 * * * *': bad minute"),
        (["--cron", "@daily", "--timezone", "Mars/Base"], 2, "--timezone:"),
        (["--cron", "@daily", "--model", "nope"], 2, "--model: 'nope' is not a UUID"),
        (["--cron", "@daily", "--model", "00000000-0000-0000-0000-000000000001"], 4, "--model: no model"),
        (["--cron", "@daily", "--region", "bad region"], 2, "--region:"),
        (["--cron", "@daily", "--expiring-within", "5s"], 2, "--expiring-within"),
        (["--cron", "@daily", "--expiring-within", "2x"], 2, "--expiring-within: '2x' is not a duration"),
    ],
)
def test_bad_arguments_name_the_option(
    run_cli: RunCli, cli_env: str, db: str, argv: list[str], code: int, words: str
) -> None:
    result = run_cli("schedules", "add", "--name", "n", *argv, "--database-url", db)
    assert result.code == code and words in result.err, result.err
    assert "Traceback" not in result.err


def test_an_unreachable_database_is_exit_5_without_the_password(run_cli: RunCli, cli_env: str) -> None:
    result = run_cli("schedules", "list", "--database-url", "postgresql://u:secret@127.0.0.1:1/x")
    assert result.code == 5 and "cannot reach PostgreSQL" in result.err and "secret" not in result.err
