"""The latest verdict per model+region: the same rows as DISTINCT ON over every verdict, read by index probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from certq.store import SCHEMA_VERSION, ModelRecord, Store
from tests.support.databases import own_database

VERDICTS = "('CERTIFIED', 'QUALITY_WARNING', 'FAILED')"
# The view as it was first written: it reads every verdict in the history.
DISTINCT_ON = f"""
    SELECT DISTINCT ON (model_id, region) id FROM certifications WHERE status IN {VERDICTS}
    ORDER BY model_id, region, completed_at DESC, id
"""
RUNS_PER_PAIR = 150


@pytest.fixture
async def history(postgres_server_url: str) -> AsyncIterator[Store]:
    """A database of its own (the row counts below must be this test's only), migrated, with a history:
    3 models (one inactive) x 4 regions (one no longer offered), many runs per pair, ties on completed_at,
    verdicts without a completion time and runs that are no verdict (cancelled, one queued)."""
    async with own_database(postgres_server_url, "latest") as (_, url):
        store = await Store.connect(url, min_size=1, max_size=2)
        try:
            yield await _with_history(store)
        finally:
            await store.close()


async def _with_history(store: Store) -> Store:
    made = [
        await store.create_model(
            name=f"m{i}",
            provider="openai",
            api_model_id=f"tiny-{i}",
            base_url="http://127.0.0.1:9/v1",
            regions=["a", "b", "c"],
        )
        for i in range(3)
    ]
    models = [model for model in made if isinstance(model, ModelRecord)]
    assert len(models) == 3
    await store.pool.execute("UPDATE models SET is_active = false WHERE id = $1", models[2].id)
    await store.pool.execute(
        """
        WITH runs AS (
            SELECT m, r, n FROM unnest($1::uuid[]) AS m, unnest(ARRAY['a', 'b', 'c', 'gone']) AS r,
                generate_series(1, $2) AS n
        ), jobs AS (
            INSERT INTO certification_jobs (type, regions, model_ids, total_models)
            SELECT 'SINGLE_MODEL', ARRAY[r], ARRAY[m], 1 FROM runs RETURNING id, regions[1] AS r, model_ids[1] AS m
        )
        INSERT INTO certifications (job_id, model_id, region, status, completed_at, score)
        SELECT j.id, j.m, j.r,
            (ARRAY['CERTIFIED', 'QUALITY_WARNING', 'FAILED', 'CANCELLED'])[1 + abs(hashtext(j.id::text)) % 4],
            CASE WHEN abs(hashtext(j.id::text || 'null')) % 37 = 0 THEN NULL
                 ELSE timestamptz '2026-01-01' + (abs(hashtext(j.id::text || 'at')) % 50) * interval '1 hour'
            END,
            50
        FROM jobs j
        """,
        [m.id for m in models],
        RUNS_PER_PAIR,
    )
    await store.pool.execute("ANALYZE certifications")  # plans as on a real history, which has statistics
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(models[0].id, "a")])
    assert created.certifications  # type: ignore[union-attr]
    return store


async def test_latest_verdicts_are_the_rows_distinct_on_picks(history: Store) -> None:
    expected = {r["id"] for r in await history.pool.fetch(DISTINCT_ON)}
    assert len(expected) == 3 * 4
    assert {r["id"] for r in await history.pool.fetch("SELECT id FROM latest_certifications")} == expected
    assert {r.id for r in await history.latest_verdicts()} == expected
    for model_id in await history.pool.fetch("SELECT id FROM models"):
        mine = {
            r["id"]
            for r in await history.pool.fetch(
                f"SELECT id FROM ({DISTINCT_ON}) d JOIN certifications USING (id) WHERE model_id = $1", model_id["id"]
            )
        }
        assert {r.id for r in await history.latest_verdicts(model_id["id"])} == mine
    view = [dict(r) for r in await history.pool.fetch("SELECT * FROM latest_certifications ORDER BY id")]
    old = [
        dict(r)
        for r in await history.pool.fetch(
            f"SELECT c.* FROM ({DISTINCT_ON}) d JOIN certifications c USING (id) ORDER BY id"
        )
    ]
    assert view == old


def _rows_read(plan: dict[str, Any]) -> float:
    """Rows the plan took from the certifications table (per-loop rows times loops)."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == "certifications" else 0
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.parametrize("query", ["SELECT * FROM latest_certifications", "latest_verdicts"])
async def test_latest_verdicts_read_a_few_rows_per_pair_not_the_history(history: Store, query: str) -> None:
    if query == "latest_verdicts":
        from certq.store.listing import latest_verdicts_sql

        query = latest_verdicts_sql(by_model=False).replace("$1", "NULL")
    async with history.pool.acquire() as conn, conn.transaction():
        # The planner's choice on a table this small is not what it does on a big one; index paths only.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}")
    [plan] = orjson.loads(explained) if isinstance(explained, str) else explained
    pairs, verdicts = 3 * 4, 3 * 4 * RUNS_PER_PAIR * 3 // 4
    # Two probes to find each pair, then its newest verdicts (those tied with it on completed_at, and one more).
    assert _rows_read(plan["Plan"]) <= 10 * pairs < verdicts // 10


async def test_a_database_at_schema_1_gets_the_probing_view_on_migrate(history: Store) -> None:
    await history.pool.execute(f"""
        CREATE OR REPLACE VIEW latest_certifications AS
        SELECT DISTINCT ON (model_id, region) * FROM certifications WHERE status IN {VERDICTS}
        ORDER BY model_id, region, completed_at DESC, id;
        DELETE FROM schema_version WHERE version > 1;
    """)
    assert await history.schema_version() == 1
    before = {r["id"] for r in await history.pool.fetch("SELECT id FROM latest_certifications")}
    assert await history.migrate() == SCHEMA_VERSION == 6
    definition = await history.pool.fetchval("SELECT pg_get_viewdef('latest_certifications')")
    assert "DISTINCT" not in definition and "RECURSIVE" in definition
    assert {r["id"] for r in await history.pool.fetch("SELECT id FROM latest_certifications")} == before
