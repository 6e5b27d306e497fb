"""Cron expressions in a time zone: validation, the next slot after an instant, and what is due after downtime.

Parsing and iteration are cronsim's, which follows Debian cron's rules for daylight-saving changes:
- an expression with a fixed minute and hour (`30 2 * * *`) is read on the local wall clock. A time the
  spring-forward gap skips runs at the first real minute after it (02:30 -> 03:00 that day); a time the
  fall-back hour repeats runs once, at its first occurrence (02:30 summer time);
- an expression with `*` in its minute or hour field (`0 * * * *`, `*/15 2 * * *`) follows real time: no
  run inside the gap, and a run in both copies of the repeated hour;
- six fields (seconds first) and time zone UTC follow real time too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["once", "skip"]
CATCH_UPS: tuple[CatchUp, ...] = ("once", "skip")

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

LATE_GRACE_S = 60.0
"""A slot reached this late still counts as on time: `skip` fires it (later than that it is dropped)."""
MISSED_COUNT_CAP = 1000
"""Missed slots are counted up to this many (a per-second schedule down for a day would be 86,400)."""


class CronError(ValueError):
    """An expression or a time zone that cannot be used; `field` is "cron" or "timezone"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone of this name (`Europe/Berlin`, `UTC`); CronError("timezone") for anything else."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path rather than a key
        raise CronError(
            "timezone", f"{name[:100]!r} is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)"
        ) from None


def normalise(expression: str) -> str:
    """Single spaces between fields, and `@daily` & co. spelled out."""
    text = " ".join(expression.split())
    return ALIASES.get(text.lower(), text)


@dataclass(frozen=True)
class Cron:
    """A valid expression in a zone. `Cron.parse(expression, zone_name)` raises CronError naming the field."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, zone_name: str) -> Cron:
        zone = time_zone(zone_name)
        text = normalise(expression)
        if len(text.split(" ")) not in (5, 6):
            raise CronError(
                "cron",
                f"{expression[:200]!r}: a cron expression has 5 fields (minute hour "
                "day-of-month month day-of-week), or 6 with seconds first",
            )
        try:
            next(CronSim(text, datetime.now(UTC).astimezone(zone)))
        except CronSimError as exc:
            raise CronError("cron", f"{expression[:200]!r}: {str(exc).lower()}") from None
        except StopIteration:
            raise CronError("cron", f"{expression[:200]!r} never fires") from None
        return cls(text, zone)

    def next_after(self, instant: datetime) -> datetime:
        """The first slot strictly after `instant` (an aware datetime), in UTC.

        cronsim reads a wall-clock expression on naive local time, so from inside a repeated hour it can
        answer that hour's first copy, which is already past: such answers are stepped over. (Compared in UTC:
        Python compares two datetimes of one zone by their wall clocks, ignoring `fold`.)
        """
        after = instant.astimezone(UTC)
        for slot in CronSim(self.expression, instant.astimezone(self.zone)):
            if slot.astimezone(UTC) > after:
                return slot.astimezone(UTC)
        raise CronError("cron", f"{self.expression!r} does not fire again within 50 years")

    def latest_at_or_before(self, instant: datetime) -> datetime | None:
        """The last slot at or before `instant`, in UTC (None if there is none in 50 years)."""
        at = instant.astimezone(UTC)
        try:
            for slot in CronSim(
                self.expression, instant.astimezone(self.zone) + timedelta(microseconds=1), reverse=True
            ):
                if slot.astimezone(UTC) <= at:
                    return slot.astimezone(UTC)
        except StopIteration:
            return None
        return None

    def explain(self) -> str:
        """Plain English ("At 02:30 on Monday through Friday"), for the CLI."""
        return CronSim(self.expression, datetime.now(UTC)).explain()


@dataclass(frozen=True)
class Plan:
    """What a due schedule does now."""

    slot_at: datetime
    """The slot this firing stands for: the latest one due."""
    missed: int
    """Earlier due slots folded into it (`once`) or dropped (`skip`); at most MISSED_COUNT_CAP."""
    missed_since: datetime | None
    """The earliest of them."""
    fire: bool
    """False when `skip` finds even the latest slot too late (by more than LATE_GRACE_S)."""
    next_slot_at: datetime


def plan(
    cron: Cron, next_slot_at: datetime, now: datetime, catch_up: CatchUp, grace_s: float = LATE_GRACE_S
) -> Plan | None:
    """The firing due at `now` for a schedule waiting for `next_slot_at`; None if that is still ahead.

    However many slots passed (downtime, a paused database), it is one firing: `once` runs the latest
    for all of them, `skip` runs it only if it is on time, and drops the rest.
    """
    if next_slot_at > now:
        return None
    due = [next_slot_at.astimezone(UTC)]
    for local in CronSim(cron.expression, next_slot_at.astimezone(cron.zone)):
        slot = local.astimezone(UTC)
        if slot > now or len(due) > MISSED_COUNT_CAP:
            break
        if slot > due[-1]:
            due.append(slot)
    latest = due[-1]
    if len(due) > MISSED_COUNT_CAP:
        latest = max(latest, cron.latest_at_or_before(now) or latest)
    missed = len(due) - 1
    fire = catch_up == "once" or (now - latest).total_seconds() <= grace_s
    return Plan(
        slot_at=latest,
        missed=missed,
        missed_since=next_slot_at if missed else None,
        fire=fire,
        next_slot_at=cron.next_after(now),
    )
