"""Cron slots in a time zone (cronsim's Debian cron rules across DST) and the catch-up plan after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from certq.cron import MISSED_COUNT_CAP, CatchUp, Cron, CronError, plan

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def slots(cron: Cron, start: datetime, n: int) -> list[datetime]:
    out, at = [], start
    for _ in range(n):
        at = cron.next_after(at)
        out.append(at)
    return out


def test_next_slot_is_read_in_the_schedules_time_zone_and_answered_in_utc() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    assert cron.next_after(utc(2025, 1, 10, 12)) == utc(2025, 1, 11, 1, 30)  # CET = UTC+1
    assert cron.next_after(utc(2025, 7, 10, 12)) == utc(2025, 7, 11, 0, 30)  # CEST = UTC+2
    assert cron.next_after(utc(2025, 7, 11, 0, 30)) == utc(2025, 7, 12, 0, 30)  # strictly after


def test_a_time_inside_the_spring_forward_gap_runs_once_at_the_first_minute_after_it() -> None:
    # 2025-03-30 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    got = slots(cron, datetime(2025, 3, 29, 12, tzinfo=BERLIN), 3)
    assert [s.astimezone(BERLIN).strftime("%d %H:%M %Z") for s in got] == [
        "30 03:00 CEST",
        "31 02:30 CEST",
        "01 02:30 CEST",
    ]


def test_a_time_inside_the_repeated_fall_back_hour_runs_once_at_its_first_occurrence() -> None:
    # 2025-10-26 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    got = slots(cron, datetime(2025, 10, 25, 12, tzinfo=BERLIN), 2)
    assert got == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]  # 02:30 CEST, then 02:30 CET next day
    # From inside the second copy of the hour the first 02:30 is past: the next one is tomorrow's, never "now".
    second_copy = datetime(2025, 10, 26, 2, 10, fold=1, tzinfo=BERLIN)
    assert cron.next_after(second_copy) == utc(2025, 10, 27, 1, 30)


def test_hourly_expressions_follow_real_time_across_both_changes() -> None:
    cron = Cron.parse("0 * * * *", "Europe/Berlin")
    spring = slots(cron, datetime(2025, 3, 30, 0, 30, tzinfo=BERLIN), 3)
    assert [s.astimezone(BERLIN).strftime("%H:%M") for s in spring] == ["01:00", "03:00", "04:00"]  # no 02:00
    fall = slots(cron, datetime(2025, 10, 26, 1, 30, tzinfo=BERLIN), 3)
    assert fall == [utc(2025, 10, 26, 0), utc(2025, 10, 26, 1), utc(2025, 10, 26, 2)]  # 02:00 twice, then 03:00


def test_aliases_and_six_fields_with_seconds() -> None:
    assert Cron.parse("@daily", "UTC").next_after(utc(2025, 5, 5, 10)) == utc(2025, 5, 6)
    assert Cron.parse("*/5 * * * * *", "UTC").next_after(utc(2025, 5, 5, 10, 0, 2)) == utc(2025, 5, 5, 10, 0, 5)


@pytest.mark.parametrize(
    ("expression", "zone", "field", "words"),
    [
        ("", "UTC", "cron", "5 fields"),
        ("* * *", "UTC", "cron", "5 fields"),
        ("61 * * * *", "UTC", "cron", "bad minute"),
        ("0 0 31 4 *", "UTC", "cron", "bad day-of-month"),
        ("0 3 * * *", "Mars/Olympus", "timezone", "IANA"),
        ("0 3 * * *", "/etc/passwd", "timezone", "IANA"),
        ("0 3 * * *", "", "timezone", "IANA"),
    ],
)
def test_bad_expressions_and_zones_name_their_field(expression: str, zone: str, field: str, words: str) -> None:
    with pytest.raises(CronError) as error:
        Cron.parse(expression, zone)
    assert error.value.field == field and words in error.value.message


def test_nothing_is_planned_before_the_slot() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    assert plan(cron, utc(2025, 1, 1, 10), utc(2025, 1, 1, 9, 59, 59), "once") is None


def test_a_slot_reached_on_time_fires_with_nothing_missed() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    policies: tuple[CatchUp, ...] = ("once", "skip")
    for policy in policies:
        due = plan(cron, utc(2025, 1, 1, 10), utc(2025, 1, 1, 10, 0, 1), policy)
        assert due is not None and due.fire and due.missed == 0 and due.missed_since is None
        assert due.slot_at == utc(2025, 1, 1, 10) and due.next_slot_at == utc(2025, 1, 1, 11)


def test_catch_up_once_fires_one_run_for_every_missed_slot() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    due = plan(cron, utc(2025, 1, 1, 10), utc(2025, 1, 1, 15, 20), "once")  # down from 09:59 to 15:20
    assert due is not None and due.fire
    assert due.slot_at == utc(2025, 1, 1, 15) and due.missed == 5 and due.missed_since == utc(2025, 1, 1, 10)
    assert due.next_slot_at == utc(2025, 1, 1, 16)


def test_catch_up_skip_drops_missed_slots_but_fires_one_that_is_only_late() -> None:
    cron = Cron.parse("0 * * * *", "UTC")
    dropped = plan(cron, utc(2025, 1, 1, 10), utc(2025, 1, 1, 15, 20), "skip")
    assert dropped is not None and not dropped.fire and dropped.missed == 5
    assert dropped.next_slot_at == utc(2025, 1, 1, 16)
    late = plan(cron, utc(2025, 1, 1, 10), utc(2025, 1, 1, 15, 0, 30), "skip")  # 15:00 is 30 s late: on time
    assert late is not None and late.fire and late.slot_at == utc(2025, 1, 1, 15) and late.missed == 5


def test_a_long_outage_of_a_frequent_schedule_is_counted_up_to_the_cap_and_still_lands_on_the_latest_slot() -> None:
    cron = Cron.parse("* * * * * *", "UTC")
    now = utc(2025, 1, 1, 12) + timedelta(seconds=7200.5)
    due = plan(cron, utc(2025, 1, 1, 12), now, "once")
    assert due is not None and due.missed == MISSED_COUNT_CAP
    assert due.slot_at == utc(2025, 1, 1, 14) and due.next_slot_at == utc(2025, 1, 1, 14, 0, 1)


def test_missed_slots_across_the_fall_back_night_are_one_firing() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    # Down from before the first 02:30 (CEST) to after the second one (CET) and a day more.
    due = plan(cron, utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 6), "once")
    assert due is not None and due.slot_at == utc(2025, 10, 27, 1, 30) and due.missed == 1
