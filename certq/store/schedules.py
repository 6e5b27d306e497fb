"""Schedules: their rows and audit trail, and firing a due slot (slot row + certification job, one transaction).

A slot fires once however many workers look: the firing locks the schedule row (others skip it), claims the
slot by inserting its row (unique per schedule and slot time), creates the job, and moves `next_slot_at` past
now, all in one commit. The runs are enqueued after it; if that fails the reconciler enqueues them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from certq.cron import CatchUp, Cron, plan
from certq.store.base import Conn, Row, StoreBase
from certq.store.jobs import _insert_job
from certq.store.records import CertificationRef, JobRecord, JobType, Priority
from certq.store.renewals import Renewal, renew_expiring
from certq.store.standing import _STANDING_SQL, Standing

SCHEDULE_COLUMNS = (
    "id, name, cron, timezone, model_ids, regions, priority, filter_standings, filter_expiring_s, catch_up, paused, "
    "next_slot_at, last_slot_at, created_at, updated_at"
)
SLOT_COLUMNS = "schedule_id, slot_at, fired_at, outcome, missed, missed_since, job_id, queued, skipped"
SLOT_RETENTION = timedelta(days=30)
"""Slot rows older than this are deleted when the schedule fires again (the jobs stay)."""


@dataclass(frozen=True)
class ScheduleSpec:
    """What an operator sets. Empty `model_ids`: every active model; empty `regions`: every region each offers.
    At most one filter: `filter_standings` (only pairs in one of these standings) or `filter_expiring_s` (only
    pairs whose verdict, if any, stops standing within that many seconds: expired and never-certified too)."""

    name: str
    cron: str
    timezone: str = "UTC"
    model_ids: list[UUID] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    priority: Priority = "normal"
    filter_standings: list[Standing] | None = None
    filter_expiring_s: int | None = None
    catch_up: CatchUp = "once"
    paused: bool = False


UPDATABLE = frozenset(ScheduleSpec.__dataclass_fields__)


@dataclass(frozen=True)
class ScheduleRecord:
    id: UUID
    name: str
    cron: str
    timezone: str
    model_ids: list[UUID]
    regions: list[str]
    priority: Priority
    filter_standings: list[Standing] | None
    filter_expiring_s: int | None
    catch_up: CatchUp
    paused: bool
    next_slot_at: datetime
    """The slot the schedule waits for (while paused: the one it waited for when paused)."""
    last_slot_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SlotRecord:
    schedule_id: UUID
    slot_at: datetime
    fired_at: datetime
    outcome: str
    """`fired` (the job, if any pair needed one) or `dropped` (catch-up `skip`, too late)."""
    missed: int
    """Earlier slots this one stood in for (`once`) or dropped along with it (`skip`)."""
    missed_since: datetime | None
    job_id: UUID | None
    queued: int
    """Runs created."""
    skipped: int
    """Pairs that already had a live run (not queued again)."""


@dataclass(frozen=True)
class FiredSlot:
    slot: SlotRecord
    job: JobRecord | None
    runs: list[CertificationRef]
    """To enqueue now that they are committed."""


def _schedule(row: Row) -> ScheduleRecord:
    return ScheduleRecord(**dict(row))


def _slot(row: Row) -> SlotRecord:
    return SlotRecord(**dict(row))


def _json(values: Mapping[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in values.items()}


async def _audit(
    conn: Conn, actor: str, action: str, target: UUID, detail: Mapping[str, Any], remote_addr: str | None
) -> None:
    # The dashboard's audit log (dashboard_audit): one trail of what operators did, whichever door they used.
    await conn.execute(
        "INSERT INTO dashboard_audit (actor, action, target, detail, outcome, remote_addr) "
        "VALUES ($1, $2, $3, $4, 'ok', $5)",
        actor[:200],
        action,
        str(target),
        _json(detail),
        remote_addr,
    )


class SchedulesMixin(StoreBase):
    async def create_schedule(
        self, spec: ScheduleSpec, *, actor: str, remote_addr: str | None = None, now: datetime | None = None
    ) -> ScheduleRecord:
        """Insert a schedule whose first slot is the first after `now`; raises CronError for a bad cron/zone."""
        first = Cron.parse(spec.cron, spec.timezone).next_after(now or datetime.now(UTC))
        values = asdict(spec)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                INSERT INTO schedules (name, cron, timezone, model_ids, regions, priority, filter_standings,
                                       filter_expiring_s, catch_up, paused, next_slot_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {SCHEDULE_COLUMNS}
                """,
                spec.name,
                spec.cron,
                spec.timezone,
                list(spec.model_ids),
                list(spec.regions),
                spec.priority,
                spec.filter_standings,
                spec.filter_expiring_s,
                spec.catch_up,
                spec.paused,
                first,
            )
            assert row is not None
            record = _schedule(row)
            await _audit(conn, actor, "schedule.create", record.id, values, remote_addr)
        return record

    async def get_schedule(self, schedule_id: UUID | str) -> ScheduleRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1", UUID(str(schedule_id))
        )
        return None if row is None else _schedule(row)

    async def list_schedules(self, limit: int = 1000) -> list[ScheduleRecord]:
        rows = await self._pool.fetch(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at, id LIMIT $1", limit
        )
        return [_schedule(row) for row in rows]

    async def update_schedule(
        self,
        schedule_id: UUID | str,
        changes: Mapping[str, Any],
        *,
        actor: str,
        remote_addr: str | None = None,
        now: datetime | None = None,
    ) -> ScheduleRecord | None:
        """Change fields (names of ScheduleSpec); None for an unknown schedule.

        A new cron or time zone, or a resume, starts from the first slot after `now`: slots that passed while
        it was paused are not missed ones (pausing is not downtime), so the catch-up policy does not apply.
        """
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not schedule fields: {sorted(unknown)}")
        sid = UUID(str(schedule_id))
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 FOR UPDATE", sid)
            if row is None:
                return None
            current = _schedule(row)
            merged = {**{name: getattr(current, name) for name in UPDATABLE}, **changes}
            restart = (
                merged["cron"] != current.cron
                or merged["timezone"] != current.timezone
                or (current.paused and not merged["paused"])
            )
            next_slot_at = current.next_slot_at
            if restart:
                next_slot_at = Cron.parse(merged["cron"], merged["timezone"]).next_after(now or datetime.now(UTC))
            row = await conn.fetchrow(
                f"""
                UPDATE schedules SET name = $2, cron = $3, timezone = $4, model_ids = $5, regions = $6, priority = $7,
                    filter_standings = $8, filter_expiring_s = $9, catch_up = $10, paused = $11, next_slot_at = $12,
                    updated_at = now()
                WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}
                """,
                sid,
                merged["name"],
                merged["cron"],
                merged["timezone"],
                list(merged["model_ids"]),
                list(merged["regions"]),
                merged["priority"],
                merged["filter_standings"],
                merged["filter_expiring_s"],
                merged["catch_up"],
                merged["paused"],
                next_slot_at,
            )
            assert row is not None
            if set(changes) == {"paused"}:
                action = "schedule.pause" if changes["paused"] else "schedule.resume"
            else:
                action = "schedule.update"
            await _audit(conn, actor, action, sid, dict(changes), remote_addr)
        return _schedule(row)

    async def delete_schedule(
        self, schedule_id: UUID | str, *, actor: str, remote_addr: str | None = None
    ) -> ScheduleRecord | None:
        """Delete it and its slot rows (the jobs it made stay); the audit entry keeps what it was."""
        sid = UUID(str(schedule_id))
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"DELETE FROM schedules WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}", sid)
            if row is None:
                return None
            record = _schedule(row)
            await _audit(conn, actor, "schedule.delete", sid, asdict(record), remote_addr)
        return record

    async def schedule_slots(self, schedule_id: UUID | str, limit: int = 20) -> list[SlotRecord]:
        """The newest slots first."""
        rows = await self._pool.fetch(
            f"SELECT {SLOT_COLUMNS} FROM schedule_slots WHERE schedule_id = $1 ORDER BY slot_at DESC LIMIT $2",
            UUID(str(schedule_id)),
            limit,
        )
        return [_slot(row) for row in rows]

    async def recent_slots(self, schedule_ids: Sequence[UUID], per_schedule: int = 5) -> dict[UUID, list[SlotRecord]]:
        """The newest `per_schedule` slots of each schedule, newest first, in one query (the dashboard's list)."""
        rows = await self._pool.fetch(
            f"""
            SELECT s.* FROM unnest($1::uuid[]) AS ids(id) CROSS JOIN LATERAL (
                SELECT {SLOT_COLUMNS} FROM schedule_slots WHERE schedule_id = ids.id ORDER BY slot_at DESC LIMIT $2
            ) s ORDER BY s.schedule_id, s.slot_at DESC
            """,
            list(schedule_ids),
            per_schedule,
        )
        found: dict[UUID, list[SlotRecord]] = {sid: [] for sid in schedule_ids}
        for row in rows:
            found[row["schedule_id"]].append(_slot(row))
        return found

    async def renew_expiring(
        self, *, now: datetime, window_s: int, default_validity_s: int = 7 * 86_400, priority: Priority = "normal"
    ) -> Renewal | None:
        """The "renew before expiry" pass (store/renewals.py); None when another process is running it."""
        async with self._pool.acquire() as conn:
            return await renew_expiring(
                conn, now=now, window_s=window_s, default_validity_s=default_validity_s, priority=priority
            )

    async def due_schedules(self, now: datetime, limit: int = 50) -> list[UUID]:
        """Schedules whose next slot is at or before `now`, earliest first (one probe of a partial index)."""
        rows = await self._pool.fetch(
            "SELECT id FROM schedules WHERE NOT paused AND next_slot_at <= $1 ORDER BY next_slot_at LIMIT $2",
            now,
            limit,
        )
        return [row["id"] for row in rows]

    async def fire_schedule(
        self,
        schedule_id: UUID | str,
        *,
        now: datetime,
        default_validity_s: int = 7 * 86_400,
        before_commit: Callable[[SlotRecord], Awaitable[None]] | None = None,
    ) -> FiredSlot | None:
        """Fire the schedule's due slot, once; None when it is not due, paused, gone, or another process holds it.

        `before_commit` (a test hook) runs with the slot row written but not yet committed."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 AND NOT paused AND next_slot_at <= $2 "
                "FOR UPDATE SKIP LOCKED",
                UUID(str(schedule_id)),
                now,
            )
            if row is None:
                return None
            schedule = _schedule(row)
            due = plan(Cron.parse(schedule.cron, schedule.timezone), schedule.next_slot_at, now, schedule.catch_up)
            assert due is not None  # next_slot_at <= now was just checked
            slot_row = await conn.fetchrow(
                f"""
                INSERT INTO schedule_slots (schedule_id, slot_at, outcome, missed, missed_since)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING {SLOT_COLUMNS}
                """,
                schedule.id,
                due.slot_at,
                "fired" if due.fire else "dropped",
                due.missed,
                due.missed_since,
            )
            job: JobRecord | None = None
            runs: list[CertificationRef] = []
            if slot_row is not None and due.fire:
                pairs = await _pairs(conn, schedule, now, default_validity_s)
                if pairs:
                    created = await _create_job(conn, schedule, pairs)
                    job, runs = created
                    slot_row = await conn.fetchrow(
                        f"UPDATE schedule_slots SET job_id = $3, queued = $4, skipped = $5 "
                        f"WHERE schedule_id = $1 AND slot_at = $2 RETURNING {SLOT_COLUMNS}",
                        schedule.id,
                        due.slot_at,
                        None if job is None else job.id,
                        len(runs),
                        len(pairs) - len(runs),
                    )
            await conn.execute(
                "UPDATE schedules SET next_slot_at = $2, last_slot_at = GREATEST(last_slot_at, $3) WHERE id = $1",
                schedule.id,
                due.next_slot_at,
                due.slot_at,
            )
            await conn.execute(
                "DELETE FROM schedule_slots WHERE schedule_id = $1 AND slot_at < $2", schedule.id, now - SLOT_RETENTION
            )
            if before_commit is not None and slot_row is not None:
                await before_commit(_slot(slot_row))
        # No row: the slot was recorded already (a clock that went back); its next_slot_at moved on all the same.
        return None if slot_row is None else FiredSlot(slot=_slot(slot_row), job=job, runs=runs)


async def _pairs(
    conn: Conn, schedule: ScheduleRecord, now: datetime, default_validity_s: int
) -> list[tuple[UUID, str]]:
    """The schedule's target now: active models x the regions they offer, narrowed by its models, regions and
    filter. The standing is the one GET /standing answers (store/standing.py)."""
    rows = await conn.fetch(_STANDING_SQL, None, None, default_validity_s)
    models, regions = set(schedule.model_ids), set(schedule.regions)
    horizon = None if schedule.filter_expiring_s is None else now + timedelta(seconds=schedule.filter_expiring_s)
    pairs = []
    for row in rows:
        if (models and row["model_id"] not in models) or (regions and row["region"] not in regions):
            continue
        if schedule.filter_standings is not None and row["standing"] not in schedule.filter_standings:
            continue
        if horizon is not None and row["valid_until"] is not None and row["valid_until"] > horizon:
            continue
        pairs.append((row["model_id"], row["region"]))
    return pairs


async def _create_job(
    conn: Conn, schedule: ScheduleRecord, pairs: Sequence[tuple[UUID, str]]
) -> tuple[JobRecord | None, list[CertificationRef]]:
    """store.create_job's insert, on this transaction: pairs with a live run are left out (and no job at all
    when every pair has one)."""
    pair_list = list(dict.fromkeys(pairs))
    model_ids = list(dict.fromkeys(m for m, _ in pair_list))
    regions = list(dict.fromkeys(r for _, r in pair_list))
    kind: JobType = "MULTIPLE_MODELS"
    if not schedule.model_ids and not schedule.regions:
        kind = "ALL_MODELS"
    elif len(model_ids) == 1:
        kind = "SINGLE_MODEL"
    for _ in range(5):
        created = await _insert_job(conn, kind, schedule.priority, regions, model_ids, pair_list)
        if created is not None:
            return created.job, created.certifications
    raise RuntimeError("certifications kept finishing while being reported as live; the next tick tries again")
