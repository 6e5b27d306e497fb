""" "Renew before expiry": re-certify standing certificates shortly before they run out, once per certificate.

One pass at a time across all processes (a transaction-scoped advisory lock; the others skip it), reading only
committed rows, so two workers never renew the same certificate. A certificate is renewed at most once: a
pair that has had any run since its verdict (a renewal, a schedule's or an operator's, live or cancelled) is
left alone, and the pair's live-run dedupe keeps out whatever races in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from certq.store.base import Conn
from certq.store.jobs import _insert_job
from certq.store.records import CertificationRef, JobRecord, JobType, Priority

RENEWAL_LOCK = 7_236_562_611_003_224_421
"""pg_try_advisory_xact_lock key of the renewal pass (advisory locks are per database)."""
MAX_PAIRS = 500
"""Pairs renewed by one pass; a larger backlog is taken by the next passes."""

# The pair's newest verdict must still be CERTIFIED or QUALITY_WARNING (a FAILED one is not renewed) and be
# within `window` of its end, but never in the first half of its life: a window longer than a model's
# validity would otherwise re-certify every fresh certificate at once. An expired one (workers down across
# its window, or the policy just turned on) is renewed too. "Any run since the verdict" is any other run of
# the pair created after the verdict's run was: none can be created while that one is live.
_DUE_SQL = """
SELECT m.id AS model_id, r.region, v.id AS certification_id, v.valid_until
FROM models m CROSS JOIN LATERAL unnest(m.regions) AS r(region)
JOIN LATERAL (
    SELECT c.id, c.status, c.created_at, c.completed_at,
           COALESCE(c.valid_until, c.completed_at + make_interval(secs => $3)) AS valid_until
    FROM certifications c
    WHERE c.model_id = m.id AND c.region = r.region AND c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
    ORDER BY c.completed_at DESC, c.id LIMIT 1
) v ON v.status IN ('CERTIFIED', 'QUALITY_WARNING')
WHERE m.is_active
    AND v.valid_until - LEAST(make_interval(secs => $2), (v.valid_until - v.completed_at) / 2) <= $1
    AND NOT EXISTS (
        SELECT 1 FROM certifications c
        WHERE c.model_id = m.id AND c.region = r.region AND c.created_at >= v.created_at AND c.id <> v.id
    )
ORDER BY v.valid_until, m.id, r.region
LIMIT $4
"""


@dataclass(frozen=True)
class Renewal:
    """One renewal pass: the job it created (None when nothing was due) and its runs, to enqueue now."""

    job: JobRecord | None
    runs: list[CertificationRef]
    certificates: list[UUID]
    """The verdicts (certification ids) the runs renew, in the order of `runs`' pairs."""


async def renew_expiring(
    conn: Conn,
    *,
    now: datetime,
    window_s: int,
    default_validity_s: int,
    priority: Priority = "normal",
    limit: int = MAX_PAIRS,
) -> Renewal | None:
    """Create one job renewing every certificate due by `now`; None when another process runs the pass.

    `conn` must not be in a transaction: the pass is one of its own.
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RENEWAL_LOCK):
            return None
        rows = await conn.fetch(_DUE_SQL, now, window_s, default_validity_s, limit)
        if not rows:
            return Renewal(job=None, runs=[], certificates=[])
        pairs = [(row["model_id"], row["region"]) for row in rows]
        model_ids = list(dict.fromkeys(m for m, _ in pairs))
        regions = list(dict.fromkeys(r for _, r in pairs))
        kind: JobType = "SINGLE_MODEL" if len(model_ids) == 1 else "MULTIPLE_MODELS"
        for _ in range(5):
            created = await _insert_job(conn, kind, priority, regions, model_ids, pairs)
            if created is not None:
                renewed = {(ref.model_id, ref.region) for ref in created.certifications}
                certificates = [row["certification_id"] for row in rows if (row["model_id"], row["region"]) in renewed]
                return Renewal(job=created.job, runs=created.certifications, certificates=certificates)
    raise RuntimeError("certifications kept finishing while being reported as live; the next pass tries again")
