"""How the dashboard's PostgreSQL reads scale with the history: search, the verdict matrix, a pair's runs.

    .venv/bin/python bench/dashboard.py [--runs 200000] [--models 100] [--repeat 20]

Creates a fresh database (dropped at the end), applies schema.sql, fills it with `--runs` finished
certification runs spread over `--models` models x 10 regions and 30 days, then times each query the
dashboard makes (median and p95 of `--repeat` calls, through `DashboardQueries`/`Store`, as the routes do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from certq.store import Store
from certq.store.dashboard import DashboardQueries, HistoryFilter

DATABASE = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REGIONS = [f"region-{i}" for i in range(10)]
# latest_certifications as schema 1 defined it, for comparison with its probing replacement (schema 2).
DISTINCT_ON = """
    SELECT c.*, m.name AS model_name FROM (
        SELECT DISTINCT ON (model_id, region) * FROM certifications
        WHERE status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED') ORDER BY model_id, region, completed_at DESC, id
    ) c JOIN models m ON m.id = c.model_id ORDER BY m.name, c.region
"""


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{name}"


async def fill(conn: asyncpg.Connection, runs: int, models: int) -> None:
    await conn.execute(
        """
        INSERT INTO models (name, provider, api_model_id, base_url, regions)
        SELECT 'model-' || i, 'openai', 'api-model-' || i, 'http://127.0.0.1:9/v1', $1::text[]
        FROM generate_series(1, $2) AS i
        """,
        REGIONS,
        models,
    )
    batch = 1000
    await conn.execute(
        """
        INSERT INTO certification_jobs (type, status, regions, model_ids, total_models, processed_models,
                                        success_count, created_at)
        SELECT 'ALL_MODELS', 'COMPLETED', $1::text[], ARRAY[]::uuid[], $2, $2, $2,
               now() - (g * interval '1 minute')
        FROM generate_series(1, $3) AS g
        """,
        REGIONS,
        batch,
        (runs + batch - 1) // batch,
    )
    await conn.execute(
        """
        WITH m AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM models),
             j AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM certification_jobs)
        INSERT INTO certifications (job_id, model_id, region, status, attempt, passed, score, rating, test_results,
                                    metrics, created_at, started_at, completed_at, attempt_log)
        SELECT j.id, m.id, ($1::text[])[1 + (g % 10)],
               (ARRAY['CERTIFIED', 'CERTIFIED', 'QUALITY_WARNING', 'FAILED'])[1 + (g % 4)], 1,
               g % 4 < 2, 40 + (g % 60), (ARRAY['A', 'B', 'C', 'D', 'F'])[1 + (g % 5)],
               '[{"name": "basic-chat", "passed": true, "score": 100, "latencyMs": 120}]'::jsonb,
               jsonb_build_object('latencyMs', jsonb_build_object('p50', 100 + g % 300)),
               t, t, t + interval '20 seconds', '[]'::jsonb
        FROM generate_series(0, $2 - 1) AS g
        CROSS JOIN LATERAL (SELECT now() - (g * interval '30 days' / $2) AS t) AS times
        JOIN m ON m.n = (g / 10) % $3
        JOIN j ON j.n = g / $4
        ON CONFLICT DO NOTHING
        """,
        REGIONS,
        runs,
        models,
        batch,
    )
    await conn.execute("ANALYZE")


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    samples = []
    await call()
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


async def main(runs: int, models: int, repeat: int) -> None:
    name = f"certq_bench_board_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(DATABASE)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = await Store.connect(_with_database(DATABASE, name), min_size=1, max_size=2)
        try:
            await store.migrate()
            started = time.perf_counter()
            # Its own connection: filling a million rows takes longer than the pool's command timeout.
            conn = await asyncpg.connect(_with_database(DATABASE, name))
            try:
                await fill(conn, runs, models)
                total = await conn.fetchval("SELECT count(*) FROM certifications")
                some = await conn.fetchrow(
                    "SELECT id, job_id, model_id, region FROM certifications OFFSET $1 LIMIT 1", total // 2
                )
            finally:
                await conn.close()
            print(
                f"filled {total} runs, {models} models x {len(REGIONS)} regions in {time.perf_counter() - started:.1f}s"
            )
            queries = DashboardQueries(store.pool)
            now = datetime.now(UTC)
            cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("history, no filter, page 1", lambda: queries.search_history(HistoryFilter())),
                ("history, no filter, page 100", lambda: queries.search_history(HistoryFilter(), page=100)),
                ("history by run id", lambda: queries.search_history(HistoryFilter(job_id=str(some["id"])))),
                (
                    "history by id prefix (8 chars)",
                    lambda: queries.search_history(HistoryFilter(job_id=str(some["id"])[:8])),
                ),
                (
                    "history by request (job) id",
                    lambda: queries.search_history(HistoryFilter(job_id=str(some["job_id"]))),
                ),
                ("history by model name", lambda: queries.search_history(HistoryFilter(model="model-7"))),
                (
                    "history by region + status",
                    lambda: queries.search_history(HistoryFilter(region="region-3", status="FAILED")),
                ),
                ("history, last 24 h", lambda: queries.search_history(HistoryFilter(since=now - timedelta(days=1)))),
                ("matrix (latest verdict per pair)", lambda: queries.latest_matrix()),
                ("store.latest_verdicts (the view)", lambda: store.latest_verdicts()),
                ("store.latest_verdicts(one model)", lambda: store.latest_verdicts(some["model_id"])),
                ("schema-1 view: DISTINCT ON, all verdicts", lambda: store.pool.fetch(DISTINCT_ON)),
                ("pair history (30 runs)", lambda: queries.pair_history(some["model_id"], some["region"], limit=30)),
                ("audit log page", lambda: queries.list_audit()),
            ]
            print(f"{'query':40} {'median ms':>10} {'p95 ms':>10}")
            for label, call in cases:
                median, p95 = await timed(repeat, call)
                print(f"{label:40} {median:10.1f} {p95:10.1f}")
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.models, args.repeat))
