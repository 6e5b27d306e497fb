"""`python -m certq schedules list|add|pause|resume|delete`: recurring certifications, straight in PostgreSQL.

Every change is written to the audit log (the dashboard's) as `cli:<user>@<host>`, like the API's
`token:<fingerprint>`. The workers pick changes up within a second; nothing needs restarting.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from certq.cli import EXIT_OK, EXIT_USAGE, CommandError
from certq.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    parse_duration_ms,
    print_json,
    redact_url,
    run_async,
    settings_from,
    table,
)
from certq.cron import CATCH_UPS, Cron, CronError
from certq.settings import Settings
from certq.store import STANDINGS, ScheduleRecord, ScheduleSpec, Store

T = TypeVar("T")

_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schedules",
        help="recurring certifications: list, add, pause, resume, delete",
        description="Schedules certify on a cron expression in a time zone; every worker fires them, each slot once."
        "\n\nexample: certq schedules add --name nightly --cron '30 2 * * *' --timezone Europe/Berlin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)

    listing = actions.add_parser("list", help="every schedule, its target and its next slot")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _database_option(listing)
    listing.set_defaults(run=run_list)

    add = actions.add_parser("add", help="create a schedule")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--cron",
        required=True,
        help="5 fields (minute hour day-of-month month day-of-week), 6 with "
        "seconds first, or @hourly/@daily/@weekly/@monthly/@yearly",
    )
    add.add_argument("--timezone", default="UTC", help="IANA time zone the cron is read in (default UTC)")
    add.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="only this model (repeat for several; default: every active model)",
    )
    add.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="REGION",
        help="only this region (repeat for several; default: every region each model offers)",
    )
    add.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    only = add.add_mutually_exclusive_group()
    only.add_argument(
        "--only-standing",
        action="append",
        choices=STANDINGS,
        metavar="STANDING",
        help="only pairs in this standing now (repeatable), e.g. FAILED",
    )
    only.add_argument(
        "--expiring-within",
        metavar="DURATION",
        help="only pairs whose verdict stops standing within this long (e.g. 2d), expired and never-certified ones too",
    )
    add.add_argument(
        "--catch-up",
        choices=CATCH_UPS,
        default="once",
        help="after downtime: once = one run for all missed slots (default), skip = drop them",
    )
    add.add_argument("--paused", action="store_true", help="create it paused")
    add.add_argument("--json", action="store_true", help="print the schedule as JSON")
    _database_option(add)
    add.set_defaults(run=run_add)

    for name, run, text in (
        ("pause", run_pause, "stop firing (slots while paused are not caught up)"),
        ("resume", run_resume, "fire again, from the next slot"),
        ("delete", run_delete, "delete it (the jobs it made stay)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("schedule_id", metavar="ID")
        _database_option(action)
        action.set_defaults(run=run)


def _database_option(parser: Any) -> None:
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL to use instead of DATABASE_URL")


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers with an arbitrary uid)
        user = f"uid{os.getuid()}"
    return f"cli:{user}@{socket.gethostname()}"


def _with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            store = await asyncio.wait_for(Store.connect(settings.database_url, min_size=1, max_size=2), 10)
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise CommandError(
                f"cannot reach PostgreSQL at {redact_url(settings.database_url)}: "
                f"{exc or type(exc).__name__}. Check DATABASE_URL.",
                EXIT_UNAVAILABLE,
            ) from None
        try:
            return await work(store)
        except asyncpg.UndefinedTableError:
            raise CommandError("the database has no schedules table: run `certq migrate`", EXIT_UNAVAILABLE) from None
        finally:
            await store.close()

    return run_async(go)


def _uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise CommandError(f"{what}: {text!r} is not a UUID", EXIT_USAGE) from None


def view(record: ScheduleRecord) -> dict[str, Any]:
    """The schedule as JSON, with the API's names."""
    filter_ = None
    if record.filter_standings is not None or record.filter_expiring_s is not None:
        filter_ = {"standing": record.filter_standings, "expiresWithinSeconds": record.filter_expiring_s}
    return {
        "id": str(record.id),
        "name": record.name,
        "cron": record.cron,
        "timezone": record.timezone,
        "modelIds": [str(m) for m in record.model_ids],
        "regions": record.regions,
        "priority": record.priority,
        "filter": filter_,
        "catchUp": record.catch_up,
        "paused": record.paused,
        "nextSlotAt": record.next_slot_at.isoformat(),
        "lastSlotAt": None if record.last_slot_at is None else record.last_slot_at.isoformat(),
    }


def _row(record: ScheduleRecord) -> list[object]:
    cron = Cron.parse(record.cron, record.timezone)
    target = (f"{len(record.model_ids)} model(s)" if record.model_ids else "all models") + (
        f" in {', '.join(record.regions)}" if record.regions else ""
    )
    only = "-"
    if record.filter_standings:
        only = "standing " + "|".join(record.filter_standings)
    elif record.filter_expiring_s:
        only = f"expiring within {_span(record.filter_expiring_s)}"
    next_local = record.next_slot_at.astimezone(cron.zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    return [
        record.id,
        record.name,
        f"{record.cron} ({record.timezone})",
        target,
        only,
        record.catch_up,
        "paused" if record.paused else next_local,
    ]


def run_list(args: argparse.Namespace) -> int:
    records = _with_store(settings_from(args), lambda store: store.list_schedules())
    if args.json:
        print_json([view(r) for r in records])
    elif not records:
        print("no schedules (add one: certq schedules add --name N --cron '30 2 * * *' --timezone Europe/Berlin)")
    else:
        print(table([_row(r) for r in records], ["id", "name", "cron", "target", "only", "catch-up", "next slot"]))
    return EXIT_OK


def run_add(args: argparse.Namespace) -> int:
    try:
        Cron.parse(args.cron, args.timezone)
    except CronError as exc:
        raise CommandError(f"--{exc.field}: {exc.message}", EXIT_USAGE) from None
    if not _NAME.fullmatch(args.name):
        raise CommandError("--name: 1-200 characters, no control characters", EXIT_USAGE)
    for region in args.region:
        if not _REGION.fullmatch(region):
            raise CommandError(f"--region: {region!r} is not a region (letters, digits and . _ : -)", EXIT_USAGE)
    expiring_s = None
    if args.expiring_within is not None:
        try:
            expiring_s = parse_duration_ms(args.expiring_within) // 1000
        except CommandError as exc:
            raise CommandError(f"--expiring-within: {exc}", EXIT_USAGE) from None
        if not 60 <= expiring_s <= 31_622_400:
            raise CommandError("--expiring-within: between 1m and 366d", EXIT_USAGE)
    model_ids = [_uuid(text, "--model") for text in dict.fromkeys(args.model)]
    spec = ScheduleSpec(
        name=args.name,
        cron=" ".join(args.cron.split()),
        timezone=args.timezone,
        model_ids=model_ids,
        regions=list(dict.fromkeys(args.region)),
        priority=args.priority,
        filter_standings=None if not args.only_standing else list(dict.fromkeys(args.only_standing)),
        filter_expiring_s=expiring_s,
        catch_up=args.catch_up,
        paused=args.paused,
    )

    async def work(store: Store) -> ScheduleRecord:
        found = await store.get_models(model_ids)
        for model_id in model_ids:
            if model_id not in found:
                raise CommandError(f"--model: no model with id {model_id}", EXIT_NOT_FOUND)
            if not found[model_id].is_active:
                raise CommandError(f"--model: model {model_id} is inactive", EXIT_USAGE)
        return await store.create_schedule(spec, actor=actor())

    record = _with_store(settings_from(args), work)
    if args.json:
        print_json(view(record))
    else:
        print(f"certq: schedule {record.id} created; next slot {_row(record)[-1]}")
    return EXIT_OK


def _change(args: argparse.Namespace, changes: dict[str, Any] | None, verb: str) -> int:
    schedule_id = _uuid(args.schedule_id, "ID")

    async def work(store: Store) -> ScheduleRecord | None:
        if changes is None:
            return await store.delete_schedule(schedule_id, actor=actor())
        return await store.update_schedule(schedule_id, changes, actor=actor())

    record = _with_store(settings_from(args), work)
    if record is None:
        raise CommandError(f"no schedule with id {schedule_id}", EXIT_NOT_FOUND)
    detail = "" if changes is None or record.paused else f"; next slot {_row(record)[-1]}"
    print(f"certq: schedule {record.id} ({record.name}) {verb}{detail}")
    return EXIT_OK


def run_pause(args: argparse.Namespace) -> int:
    return _change(args, {"paused": True}, "paused")


def run_resume(args: argparse.Namespace) -> int:
    return _change(args, {"paused": False}, "resumed")


def run_delete(args: argparse.Namespace) -> int:
    return _change(args, None, "deleted")


def _span(seconds: int) -> str:
    """172800 -> "2d", 5400 -> "90m": the largest unit that divides it, as the flags take it."""
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
