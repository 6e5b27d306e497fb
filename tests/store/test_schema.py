"""schema.sql: shipped in the package, identical at the root, applied idempotently and concurrently."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from certq.store import SCHEMA_VERSION, Store, schema_sql
from tests.support.databases import own_database

ROOT = Path(__file__).resolve().parents[2]


def test_root_schema_is_the_packaged_schema() -> None:
    assert (ROOT / "schema.sql").read_text(encoding="utf-8") == schema_sql()


@pytest.fixture
async def empty_database(postgres_server_url: str) -> AsyncIterator[str]:
    async with own_database(postgres_server_url, "migrate", migrate=False) as (_, url):
        yield url


async def test_migrate_from_many_connections_at_once_applies_the_schema_once(empty_database: str) -> None:
    stores = [await Store.connect(empty_database, min_size=1, max_size=1) for _ in range(4)]
    try:
        assert await stores[0].schema_version() is None
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [SCHEMA_VERSION] * 4
        assert await stores[0].migrate() == SCHEMA_VERSION
        rows = await stores[0].pool.fetchval("SELECT count(*) FROM schema_version")
        assert rows == SCHEMA_VERSION
    finally:
        for s in stores:
            await s.close()


def test_migrate_command_applies_the_schema_twice_in_parallel_processes(empty_database: str) -> None:
    command = [sys.executable, "-m", "certq", "migrate", "--database-url", empty_database]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert all(f"schema version {SCHEMA_VERSION}" in out for out, _ in outputs)


def test_migrate_command_names_an_unreachable_database_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "certq", "migrate", "--database-url", "postgresql://postgres:secret@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5  # the exit-code table's "cannot be reached"
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_status_words_outside_the_vocabulary_are_rejected_by_the_database(store: Store) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO certification_jobs (type, status, regions, model_ids, total_models) "
            "VALUES ('SINGLE_MODEL', 'PAUSED', '{}', '{}', 0)"
        )


async def test_a_schema_2_database_with_verdicts_is_upgraded_to_3_keeping_them(empty_database: str) -> None:
    store = await Store.connect(empty_database, min_size=1, max_size=2)
    try:
        await store.migrate()
        model = await store.create_model(name="m", provider="openai", api_model_id="x", regions=["local"])
        # Back to what schema 2 had: no served_model/validity_s/valid_until, no MODEL_MISMATCH.
        await store.pool.execute("""
            DROP VIEW latest_certifications;
            ALTER TABLE certifications DROP COLUMN valid_until;
            ALTER TABLE models DROP COLUMN served_model, DROP COLUMN validity_s;
            ALTER TABLE certifications DROP CONSTRAINT certifications_error_category_check;
            ALTER TABLE certifications ADD CONSTRAINT certifications_error_category_check
                CHECK (error_category IS NULL OR error_category IN ('AUTH_ERROR', 'SERVER_ERROR'));
            DELETE FROM schema_version WHERE version > 2;
        """)
        assert await store.schema_version() == 2
        assert await store.migrate() == SCHEMA_VERSION == 6
        created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])  # type: ignore[union-attr]
        run = created.certifications[0]  # type: ignore[union-attr]
        assert await store.begin_attempt(run.id, 1)
        verdict = {
            "status": "FAILED",
            "passed": False,
            "score": 59,
            "rating": "F",
            "errorCategory": "MODEL_MISMATCH",
            "errorMessage": "the endpoint serves 'y', not 'x'",
            "durationMs": 10,
        }
        assert await store.finish_certification(run.id, 1, verdict, validity_s=3600)
        row = await store.pool.fetchrow(
            "SELECT error_category, valid_until - completed_at AS validity FROM latest_certifications"
        )
        assert row is not None and row["error_category"] == "MODEL_MISMATCH"
        assert row["validity"].total_seconds() == 3600
    finally:
        await store.close()


async def test_a_schema_5_database_is_upgraded_to_6_with_no_capabilities_declared_or_found(
    empty_database: str,
) -> None:
    store = await Store.connect(empty_database, min_size=1, max_size=2)
    try:
        await store.migrate()
        # Back to what schema 5 had: no capabilities columns, and the view over certifications without one.
        view = schema_sql().split("CREATE OR REPLACE VIEW latest_certifications AS", 1)[1].split(") latest;", 1)[0]
        await store.pool.execute(f"""
            DROP VIEW latest_certifications;
            ALTER TABLE models DROP COLUMN capabilities;
            ALTER TABLE certifications DROP COLUMN capabilities;
            CREATE VIEW latest_certifications AS {view}) latest;
            DELETE FROM schema_version WHERE version > 5;
        """)
        assert await store.schema_version() == 5
        model_id = await store.pool.fetchval(
            "INSERT INTO models (name, provider, api_model_id, base_url, regions) "
            "VALUES ('old', 'openai', 'x', 'http://127.0.0.1:9/v1', '{local}') RETURNING id"
        )
        created = await store.create_job(type="SINGLE_MODEL", pairs=[(model_id, "local")])
        run = created.certifications[0]  # type: ignore[union-attr]
        await store.pool.execute(
            "UPDATE certifications SET status = 'CERTIFIED', passed = true, score = 90, completed_at = now(), "
            "valid_until = now() + interval '1 hour' WHERE id = $1",
            run.id,
        )

        assert await store.migrate() == SCHEMA_VERSION == 6
        model = await store.get_model(model_id)
        assert model is not None and model.capabilities == {}
        record = await store.get_certification(run.id)
        assert record is not None and record.status == "CERTIFIED" and record.capabilities is None
        [standing] = await store.standing(model_id=model_id)
        assert standing.standing == "CERTIFIED" and standing.capabilities is None
        assert await store.standing(model_id=model_id, verified=["tools"]) == []
        columns = await store.pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'latest_certifications'"
        )
        assert "capabilities" in {c["column_name"] for c in columns}
        assert await store.migrate() == 6  # and again: idempotent
    finally:
        await store.close()
