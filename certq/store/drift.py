"""Drift events: a new verdict against the pair's previous one, and certificates that expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from certq.drift import DriftKind, transition
from certq.store.base import StoreBase


@dataclass(frozen=True)
class DriftEvent:
    id: int
    at: datetime
    kind: DriftKind
    model_id: UUID
    model_name: str
    region: str
    certification_id: UUID
    status: str
    score: float | None
    previous_certification_id: UUID | None
    previous_status: str | None
    previous_score: float | None

    def to_json(self) -> dict[str, Any]:
        """The webhook body: `certification.<kind>` with the model, the region and both verdicts."""
        return {
            "event": f"certification.{self.kind}",
            "at": self.at.isoformat(),
            "modelId": str(self.model_id),
            "modelName": self.model_name,
            "region": self.region,
            "previous": None
            if self.previous_status is None
            else {
                "certificationId": None
                if self.previous_certification_id is None
                else str(self.previous_certification_id),
                "status": self.previous_status,
                "score": self.previous_score,
            },
            "current": {"certificationId": str(self.certification_id), "status": self.status, "score": self.score},
        }


_VERDICTS = "('CERTIFIED', 'QUALITY_WARNING', 'FAILED')"

_INSERT = """
WITH new AS (
    INSERT INTO certification_events (kind, model_id, region, certification_id, status, score,
                                      previous_certification_id, previous_status, previous_score)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT ON CONSTRAINT certification_events_once DO NOTHING
    RETURNING *
)
SELECT new.*, m.name AS model_name FROM new JOIN models m ON m.id = new.model_id
"""


class DriftMixin(StoreBase):
    async def record_drift(
        self, certification_id: UUID | str, *, margin: float = 10.0, default_validity_s: int = 7 * 86_400
    ) -> DriftEvent | None:
        """The event the verdict of `certification_id` makes against the pair's previous verdict, recorded
        once (a second call, from any process, returns None); None when nothing changed."""
        async with self._pool.acquire() as conn:
            current = await conn.fetchrow(
                f"SELECT id, model_id, region, status, score, completed_at FROM certifications "
                f"WHERE id = $1 AND status IN {_VERDICTS}",
                UUID(str(certification_id)),
            )
            if current is None:
                return None
            previous = await conn.fetchrow(
                f"""
                SELECT id, status, score,
                       COALESCE(valid_until, completed_at + make_interval(secs => $4)) <= $3 AS expired
                FROM certifications
                WHERE model_id = $1 AND region = $2 AND status IN {_VERDICTS} AND completed_at < $3
                ORDER BY completed_at DESC, id LIMIT 1
                """,
                current["model_id"],
                current["region"],
                current["completed_at"],
                default_validity_s,
            )
            if previous is None:
                return None
            kind = transition(
                previous["status"],
                previous["score"],
                current["status"],
                current["score"],
                margin=margin,
                previous_expired=bool(previous["expired"]),
            )
            if kind is None:
                return None
            row = await conn.fetchrow(
                _INSERT,
                kind,
                current["model_id"],
                current["region"],
                current["id"],
                current["status"],
                current["score"],
                previous["id"],
                previous["status"],
                previous["score"],
            )
        return None if row is None else DriftEvent(**dict(row))

    async def record_expiries(self, *, default_validity_s: int = 7 * 86_400) -> list[DriftEvent]:
        """An `expired` event for each active pair whose newest verdict's certificate has run out, once."""
        rows = await self._pool.fetch(
            f"""
            WITH due AS (
                SELECT v.model_id, v.region, v.id, v.status, v.score FROM latest_certifications v
                JOIN models m ON m.id = v.model_id AND m.is_active
                WHERE COALESCE(v.valid_until, v.completed_at + make_interval(secs => $1)) <= now()
                    AND v.status IN {_VERDICTS}
            ), new AS (
                INSERT INTO certification_events (kind, model_id, region, certification_id, status, score,
                                                  previous_certification_id, previous_status, previous_score)
                SELECT 'expired', model_id, region, id, 'EXPIRED', score, id, status, score FROM due
                ON CONFLICT ON CONSTRAINT certification_events_once DO NOTHING
                RETURNING *
            )
            SELECT new.*, m.name AS model_name FROM new JOIN models m ON m.id = new.model_id ORDER BY new.id
            """,
            default_validity_s,
        )
        return [DriftEvent(**dict(row)) for row in rows]

    async def pair_drift(self, model_id: UUID, region: str, limit: int = 200) -> list[DriftEvent]:
        """One pair's events, newest first (the dashboard marks them in the pair's history)."""
        rows = await self._pool.fetch(
            "SELECT e.*, m.name AS model_name FROM certification_events e JOIN models m ON m.id = e.model_id "
            "WHERE e.model_id = $1 AND e.region = $2 ORDER BY e.at DESC, e.id DESC LIMIT $3",
            model_id,
            region,
            limit,
        )
        return [DriftEvent(**dict(row)) for row in rows]

    async def recent_drift(self, limit: int = 100) -> list[DriftEvent]:
        rows = await self._pool.fetch(
            "SELECT e.*, m.name AS model_name FROM certification_events e JOIN models m ON m.id = e.model_id "
            "ORDER BY e.at DESC, e.id DESC LIMIT $1",
            limit,
        )
        return [DriftEvent(**dict(row)) for row in rows]
