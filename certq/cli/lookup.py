"""What an id names, and `certq job ID`: a certification (its queue job and/or its stored record), or a job
(`jobId`: one certify request) and each of its certifications."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from certq.cli import EXIT_FAILURE, EXIT_OK, CommandError
from certq.cli.common import (
    EXIT_NOT_FOUND,
    format_ms,
    open_store,
    print_json,
    printable,
    redact_url,
    redis_connection,
    run_async,
    settings_from,
)
from certq.cli.render import record_view, render_verdict
from certq.jobs import job_view, queue_config
from certq.queue import Job, Queue
from certq.settings import Settings
from certq.store import FINAL_STATUSES, CertificationRecord, JobRecord


@dataclass(frozen=True)
class Found:
    """What an id named: a certification (its queue job and/or its stored record), or a job and its certifications."""

    certifications: list[tuple[str, Job | None, CertificationRecord | None]]
    job: JobRecord | None = None


async def find(settings: Settings, queue: Queue, ident: str) -> Found | None:
    """The queue job with this id (a certification id: Redis only), else, through PostgreSQL, the stored
    certification (trimmed from the queue) or the job with this id and each of its certifications."""
    queued = await queue.get(ident)
    if queued is not None:
        return Found([(ident, queued, await _stored_verdict(settings, ident))])
    try:
        wanted = UUID(ident)
    except ValueError:
        return None  # certq's certification and job ids are uuids: nothing more to look up
    try:
        store = await open_store(settings)
    except CommandError as exc:
        raise CommandError(
            f"no queue job {ident!r} in {_queue_name(settings)}, and PostgreSQL cannot say whether "
            f"it is a finished certification or a job id: {exc}",
            exc.exit_code,
        ) from None
    try:
        record = await store.get_certification(wanted)
        if record is not None:
            return Found([(ident, None, record)])
        parent = await store.get_job(wanted)
        if parent is None:
            return None
        found: list[tuple[str, Job | None, CertificationRecord | None]] = []
        for certification in await store.job_certifications(wanted):
            found.append((str(certification.id), await queue.get(str(certification.id)), certification))
        return Found(found, parent)
    except asyncpg.UndefinedTableError:
        raise CommandError(
            f"the database at {redact_url(settings.database_url)} has no certq schema: run `certq migrate`",
            EXIT_FAILURE,
        ) from None
    finally:
        await store.close()


async def _stored_verdict(settings: Settings, ident: str) -> CertificationRecord | None:
    """The stored certification of a queue job, to show its verdict too; None when there is none yet or
    PostgreSQL cannot say (the queue job alone is then shown, as before)."""
    try:
        wanted = UUID(ident)
        store = await open_store(settings)
    except (ValueError, CommandError):
        return None
    try:
        record = await store.get_certification(wanted)
    except (asyncpg.PostgresError, OSError):
        return None
    finally:
        await store.close()
    return record if record is not None and record.status in FINAL_STATUSES else None


def not_found(settings: Settings, ident: str) -> str:
    try:
        UUID(ident)
    except ValueError:
        return f"no such job in {_queue_name(settings)}, and not a uuid, so no certq certification or job id"
    return f"neither in {_queue_name(settings)} nor in PostgreSQL at {redact_url(settings.database_url)}"


def _queue_name(settings: Settings) -> str:
    return f"queue {settings.queue_prefix}:{settings.queue_name}"


def run_job(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def go() -> Found | None:
        async with redis_connection(settings) as client:
            return await find(settings, Queue(client, queue_config(settings)), args.job_id)

    found = run_async(go)
    if found is None:
        raise CommandError(
            f"no certification or job with id {args.job_id!r}: {not_found(settings, args.job_id)}", EXIT_NOT_FOUND
        )
    # As `certify` and `enqueue --wait`: 1 when a certification failed (its verdict, or its queue job).
    failed = any(
        (record is not None and record.status == "FAILED") or (queued is not None and queued.state.value == "failed")
        for _, queued, record in found.certifications
    )
    code = EXIT_FAILURE if failed else EXIT_OK
    if args.json:
        print_json(_found_json(found))
        return code
    if found.job is not None:
        job = found.job
        print(
            f"job {job.id}: {job.status} ({job.type}, priority {job.priority}), {job.processed_models} of "
            f"{job.total_models} certification(s) final, created {_when_dt(job.created_at)}"
        )
    for ident, queued, record in found.certifications:
        if found.job is not None:
            print()
        print(_render_certification(ident, queued, record))
    return code


def _found_json(found: Found) -> Any:
    entries = [
        {
            "certification": None if record is None else record_view(record),
            "queue": None if queued is None else job_view(queued),
        }
        for _, queued, record in found.certifications
    ]
    if found.job is None:
        [(_, queued, _record)] = found.certifications
        # A certification still in the queue prints as its queue job, as `certq jobs --json` lists it.
        return job_view(queued) if queued is not None else entries[0]
    job = found.job
    return {
        "job": {
            "id": str(job.id),
            "type": job.type,
            "status": job.status,
            "priority": job.priority,
            "regions": job.regions,
            "modelIds": [str(m) for m in job.model_ids],
            "totalModels": job.total_models,
            "processedModels": job.processed_models,
            "createdAt": job.created_at.isoformat(),
            "completedAt": None if job.completed_at is None else job.completed_at.isoformat(),
        },
        "certifications": entries,
    }


def _render_certification(ident: str, queued: Job | None, record: CertificationRecord | None) -> str:
    if queued is None:
        assert record is not None
        lines = [
            f"certification {ident}: {record.status} (from PostgreSQL: the queue trims finished jobs)",
            f"  job        {record.job_id}",
            printable(f"  model      {record.model_name or record.model_id} in {record.region}"),
            f"  created    {_when_dt(record.created_at)}",
            f"  finished   {_when_dt(record.completed_at)}",
        ]
        if record.status in FINAL_STATUSES:
            lines += ["", render_verdict(record_view(record))]
        return "\n".join(lines)
    job = queued
    lines = [f"certification {job.id}: {job.state.value}{' (cancelled)' if job.cancelled else ''} in the queue"]
    for label, value in (
        ("job", job.payload.get("jobId")),
        ("payload", job.payload),
        ("priority", job.priority),
        ("group", job.group),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("stalls", job.stalls),
        ("created", format_ms(job.created_at)),
        ("started", format_ms(job.processed_at)),
        ("finished", format_ms(job.finished_at)),
        ("due", format_ms(job.due_at)),
        ("progress", job.progress),
        ("result", job.result),
        ("last error", job.last_error),
        ("category", job.error_category),
    ):
        if value not in (None, "", "-"):
            lines.append(printable(f"  {label:<10} {_plain(value)}"))
    for number, error in enumerate(job.errors, 1):
        attempt, category = error.get("attempt", number), error.get("category") or "-"
        lines.append(printable(f"  attempt {attempt}: {category}: {error.get('message', error)}"))
    if record is not None and record.status in FINAL_STATUSES:
        lines += ["", render_verdict(record_view(record))]
    return "\n".join(lines)


def _plain(value: object) -> str:
    """Text as it is; anything structured as JSON (what scripts and `jq` read), never a Python repr."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _when_dt(value: datetime | None) -> str:
    return "-" if value is None else format_ms(int(value.timestamp() * 1000))
