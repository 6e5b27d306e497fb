"""Every active model x region pair's standing now: its newest verdict, whether that still stands, and any
re-certification under way. Derived at read time from the runs, never stored, so it cannot drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson

from certq.store.base import StoreBase

Standing = Literal["CERTIFIED", "QUALITY_WARNING", "FAILED", "EXPIRED", "NEVER_CERTIFIED"]
STANDINGS: tuple[Standing, ...] = ("CERTIFIED", "QUALITY_WARNING", "FAILED", "EXPIRED", "NEVER_CERTIFIED")


@dataclass(frozen=True)
class StandingRecord:
    model_id: UUID
    model_name: str
    provider: str
    api_model_id: str
    served_model: str | None
    region: str
    standing: Standing
    certification_id: UUID | None
    verdict: str | None  # the newest verdict's status, also once it has expired
    passed: bool | None
    score: float | None
    rating: str | None
    certified_at: datetime | None
    valid_until: datetime | None
    error_category: str | None
    identity: dict[str, Any] | None
    recertification: Literal["QUEUED", "RUNNING"] | None
    capabilities: dict[str, Any] | None = None  # the newest verdict's findings: verified, failed, notDeclared

    def verified(self) -> list[str]:
        """The capabilities the newest verdict verified, while it stands and certifies the pair (CERTIFIED or
        QUALITY_WARNING): a FAILED or expired verdict vouches for nothing a router could send traffic to."""
        if self.standing not in ("CERTIFIED", "QUALITY_WARNING") or not self.capabilities:
            return []
        names = self.capabilities.get("verified")
        return [str(name) for name in names] if isinstance(names, list) else []


# One index probe per pair for its newest verdict (certifications_verdict_idx) and one for a live run
# (certifications_live_unique): the cost is models x regions, not the size of the history. A verdict from
# before schema 3 has no valid_until and stands for the default validity from its completion.
_STANDING_SQL = """
SELECT m.id AS model_id, m.name AS model_name, m.provider, m.api_model_id, m.served_model, r.region,
    CASE WHEN v.id IS NULL THEN 'NEVER_CERTIFIED'
         WHEN COALESCE(v.valid_until, v.completed_at + make_interval(secs => $3)) <= now() THEN 'EXPIRED'
         ELSE v.status END AS standing,
    v.id AS certification_id, v.status AS verdict, v.passed, v.score, v.rating, v.completed_at AS certified_at,
    COALESCE(v.valid_until, v.completed_at + make_interval(secs => $3)) AS valid_until, v.error_category,
    v.metrics -> 'modelIdentity' AS identity, v.capabilities,
    CASE WHEN live.status IS NULL THEN NULL WHEN live.status = 'PROCESSING' THEN 'RUNNING' ELSE 'QUEUED' END
        AS recertification
FROM models m CROSS JOIN LATERAL unnest(m.regions) AS r(region)
LEFT JOIN LATERAL (
    SELECT c.id, c.status, c.passed, c.score, c.rating, c.completed_at, c.valid_until, c.error_category, c.metrics,
        c.capabilities
    FROM certifications c
    WHERE c.model_id = m.id AND c.region = r.region AND c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
    ORDER BY c.completed_at DESC, c.id LIMIT 1
) v ON true
LEFT JOIN LATERAL (
    SELECT c.status FROM certifications c
    WHERE c.model_id = m.id AND c.region = r.region AND c.status IN ('PENDING', 'QUEUED', 'PROCESSING') LIMIT 1
) live ON true
WHERE m.is_active AND ($1::uuid IS NULL OR m.id = $1) AND ($2::text IS NULL OR r.region = $2)
ORDER BY m.name, m.id, r.region
"""


class StandingMixin(StoreBase):
    async def standing(
        self,
        *,
        model_id: UUID | None = None,
        region: str | None = None,
        default_validity_s: int = 7 * 86_400,
        verified: Sequence[str] = (),
    ) -> list[StandingRecord]:
        """Every active pair's standing; with `verified`, only pairs whose standing verdict verified all of them."""
        rows = await self._pool.fetch(_STANDING_SQL, model_id, region, default_validity_s)
        records = []
        for row in rows:
            values = dict(row)
            identity = values["identity"]
            values["identity"] = orjson.loads(identity) if isinstance(identity, str | bytes) else identity
            record = StandingRecord(**values)
            if all(name in record.verified() for name in verified):
                records.append(record)
        return records
