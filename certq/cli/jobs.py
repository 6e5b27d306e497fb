"""Queue admin commands: stats, jobs, job (certq/cli/lookup.py), retry-failed, clean, pause, resume, events.

Ids: a queue job is one certification (one model in one region) and carries its certification id; a job id
(`jobId`, what POST /api/certification-queue/certify-* answers) names the request that created one or more
certifications, and lives in PostgreSQL. Commands that take an id accept either and say which they found.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from certq.cli import EXIT_FAILURE, EXIT_OK, CommandError
from certq.cli.common import (
    EXIT_INTERRUPTED,
    ProgressBar,
    add_connection_options,
    format_ms,
    parse_duration_ms,
    print_json,
    print_json_line,
    printable,
    redis_connection,
    run_async,
    settings_from,
    table,
)
from certq.cli.lookup import find, not_found, run_job
from certq.jobs import job_view, queue_config
from certq.queue import Job, JobState, Queue
from certq.queue.errors import JobStateError
from certq.settings import Settings

QUEUE_BASE = "/api/certification-queue"
STATES = [state.value for state in JobState]
CLEAN_STATES = ["completed", "failed"]
CLEAN_BATCH = 1_000


def register(subparsers: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    stats = subparsers.add_parser(
        "stats",
        help="job counts per state, paused flag, live workers",
        description="Show how many jobs are waiting, active, delayed, completed and failed, whether the queue "
        "is paused, and which workers are alive (their last heartbeat).",
        formatter_class=fmt,
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_connection_options(stats)
    stats.set_defaults(run=run_stats)

    jobs = subparsers.add_parser(
        "jobs",
        help="list jobs in one state",
        description="List the queue's jobs in one state, newest first: one per certification, shown by its "
        "certification id.\n\nexample: certq jobs --state failed",
        formatter_class=fmt,
    )
    jobs.add_argument("--state", choices=STATES, default="waiting", help="which jobs (default: waiting)")
    jobs.add_argument("--limit", type=_positive_int, default=50, help="at most this many (default 50)")
    jobs.add_argument("--offset", type=_non_negative_int, default=0, help="skip this many first")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_connection_options(jobs)
    jobs.set_defaults(run=run_jobs)

    job = subparsers.add_parser(
        "job",
        help="one certification in detail (payload, attempts, errors, verdict), by certification or job id",
        description="Show a certification's queue job: state, payload, attempts, progress, result and the error of "
        "every failed attempt;\nonce the queue has trimmed it, its verdict as PostgreSQL recorded it.\n\n"
        "ID is a certification id (`certificationId`; its queue job has the same id: what `certq jobs`, "
        "`certq events`\nand the dashboard's queue show) or a job id (`jobId`, what POST "
        f"{QUEUE_BASE}/certify-* answers):\na job id is looked up in PostgreSQL and each of its "
        "certifications is shown. Exit code 4 when neither exists.",
        formatter_class=fmt,
    )
    job.add_argument("job_id", metavar="ID", help="a certification id or a job id")
    job.add_argument(
        "--json",
        action="store_true",
        help="print JSON: the queue job; for a trimmed certification {certification, queue: null}; for "
        "a job id {job, certifications: [{certification, queue}]}",
    )
    add_connection_options(job, database=True)
    job.set_defaults(run=run_job)

    retry = subparsers.add_parser(
        "retry-failed",
        help="move failed jobs back to waiting",
        description="Move failed jobs back to waiting with fresh attempts: all of them, or the ids given: "
        "certification ids,\nor job ids (looked up in PostgreSQL: their failed certifications).",
        formatter_class=fmt,
    )
    retry.add_argument(
        "job_ids", metavar="ID", nargs="*", help="only these certification ids or job ids (default: every failed job)"
    )
    add_connection_options(retry, database=True)
    retry.set_defaults(run=run_retry_failed)

    clean = subparsers.add_parser(
        "clean",
        help="delete finished jobs older than an age",
        description="Delete completed or failed jobs that finished more than --older-than ago, with their data.\n"
        "Replaces `redis-cli --scan --pattern 'myia:*:completed' | xargs redis-cli DEL`, which also\n"
        "deletes the list itself and leaves every job's data behind.\n\n"
        "example: certq clean --state completed --older-than 7d",
        formatter_class=fmt,
    )
    clean.add_argument("--state", choices=CLEAN_STATES, required=True, help="which finished jobs")
    clean.add_argument(
        "--older-than",
        metavar="AGE",
        required=True,
        type=_duration,
        help="finished at least this long ago: 90s, 15m, 12h, 7d, 2w (0 = all)",
    )
    clean.add_argument("--limit", type=_positive_int, default=None, help="delete at most this many")
    add_connection_options(clean)
    clean.set_defaults(run=run_clean)

    pause = subparsers.add_parser(
        "pause",
        help="stop workers from claiming new jobs",
        description="Pause the queue: workers finish what they are running but claim nothing new; "
        "enqueueing still works.",
        formatter_class=fmt,
    )
    add_connection_options(pause)
    pause.set_defaults(run=lambda args: _set_paused(args, True))

    resume = subparsers.add_parser(
        "resume", help="let workers claim jobs again", description="Resume a paused queue.", formatter_class=fmt
    )
    add_connection_options(resume)
    resume.set_defaults(run=lambda args: _set_paused(args, False))

    events = subparsers.add_parser(
        "events",
        help="show the queue's state changes (added, active, completed, failed, stalled...)",
        description="Print the queue's recent state changes, oldest first, one line each; with --follow keep "
        "printing new ones until Ctrl-C. Replaces watching `redis-cli MONITOR`.",
        formatter_class=fmt,
    )
    events.add_argument(
        "--last",
        type=_non_negative_int,
        default=20,
        metavar="N",
        help="start with the last N (20; with --follow, 0 = only what happens from now on)",
    )
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    add_connection_options(events)
    events.set_defaults(run=run_events)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_stats(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def go() -> dict[str, Any]:
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            return {
                "queue": settings.queue_name,
                "prefix": settings.queue_prefix,
                "counts": await queue.counts(),
                "paused": await queue.is_paused(),
                "workers": await queue.workers(),
            }

    report = run_async(go)
    if args.json:
        print_json(report)
        return EXIT_OK
    counts = report["counts"]
    state = "PAUSED" if report["paused"] else "running"
    print(f"queue {report['prefix']}:{report['queue']} ({state})")
    print(table([[name, count] for name, count in counts.items()], ["state", "jobs"]))
    workers = report["workers"]
    print(f"\nworkers alive: {len(workers)}")
    if workers:
        print(
            table(
                [
                    [
                        w.get("id"),
                        w.get("host"),
                        w.get("pid"),
                        w.get("active"),
                        w.get("concurrency"),
                        format_ms(w.get("last_seen") or w.get("lastSeen")),
                    ]
                    for w in workers
                ],
                ["id", "host", "pid", "active", "concurrency", "last seen"],
            )
        )
    return EXIT_OK


def run_jobs(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def go() -> list[Job]:
        async with redis_connection(settings) as client:
            return await Queue(client, queue_config(settings)).list(JobState(args.state), args.offset, args.limit)

    found = run_async(go)
    if args.json:
        print_json([job_view(job) for job in found])
        return EXIT_OK
    if not found:
        print(f"no {args.state} jobs")
        return EXIT_OK
    print(
        table(
            [
                [
                    job.id,
                    job.payload.get("modelId", "-"),
                    job.group or "-",
                    job.priority,
                    f"{job.attempts}/{job.max_attempts}",
                    _when(job),
                    (job.last_error or "")[:60],
                ]
                for job in found
            ],
            [
                "certification",
                "model",
                "region",
                "priority",
                "attempts",
                "due" if args.state == "delayed" else "updated",
                "last error",
            ],
        )
    )
    return EXIT_OK


def _when(job: Job) -> str:
    """A delayed job's due time; otherwise its latest change."""
    if job.state is JobState.DELAYED and job.due_at:
        return format_ms(job.due_at)
    return format_ms(job.finished_at or job.processed_at or job.created_at)


def run_retry_failed(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def go() -> tuple[int, list[str]]:
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            if not args.job_ids:
                return await queue.retry_all_failed(), []
            problems: list[str] = []
            bar = ProgressBar(len(args.job_ids), "retrying")
            moved = 0
            for done, job_id in enumerate(args.job_ids, 1):
                count, problem = await _retry_one(settings, queue, job_id)
                moved += count
                if problem is not None:
                    problems.append(problem)
                bar.update(done)
            bar.close()
            return moved, problems

    moved, problems = run_async(go)
    for problem in problems:
        print(f"certq: {problem}", file=sys.stderr)
    print(f"moved {moved} failed job(s) back to waiting")
    return EXIT_FAILURE if problems else EXIT_OK


async def _retry_one(settings: Settings, queue: Queue, ident: str) -> tuple[int, str | None]:
    """Retry the failed queue job `ident`, or, given a job id, its failed certifications: (moved, problem)."""
    try:
        await queue.retry(ident)
        return 1, None
    except JobStateError as exc:
        if exc.state != "missing":
            return 0, str(exc)
    found = await find(settings, queue, ident)
    if found is None:
        return 0, f"no certification or job with id {ident!r}: {not_found(settings, ident)}"
    if found.job is None:
        return 0, f"certification {ident} is no longer in the queue: certify the model again"
    failed = [i for i, queued, _ in found.certifications if queued is not None and queued.state is JobState.FAILED]
    for certification in failed:
        await queue.retry(certification)
    return len(failed), None if failed else f"job {ident} has no failed certification in the queue"


def run_clean(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    state = JobState(args.state)

    async def go() -> int:
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            total = (await queue.counts()).get(args.state, 0)
            budget = total if args.limit is None else min(total, args.limit)
            bar = ProgressBar(budget, f"cleaning {args.state}")
            removed = 0
            while removed < budget:
                batch = await queue.clean(state, args.older_than, min(CLEAN_BATCH, budget - removed))
                removed += batch
                bar.update(removed)
                if batch == 0:
                    break
            bar.close()
            return removed

    removed = run_async(go)
    print(f"removed {removed} {args.state} job(s) older than {args.older_than / 1000:g}s")
    return EXIT_OK


def run_events(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def go() -> int:
        # Ctrl-C sets a flag checked between short reads instead of cancelling a Redis call: redis-py
        # can swallow that cancellation, and the command would then never end.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            recent = await client.xrevrange(queue.keys.events, count=args.last) if args.last else []
            for entry_id, fields in reversed(recent):
                _print_event(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}, args.json)
            if not args.follow:
                return EXIT_INTERRUPTED if stop.is_set() else EXIT_OK
            # Follow from the newest entry's id, not "$": "$" re-read on every round would drop what arrives
            # between two reads. An empty stream starts at 0-0.
            newest = recent or await client.xrevrange(queue.keys.events, count=1)
            last = _text(newest[0][0]) if newest else "0-0"
            while not stop.is_set():
                for entry_id, fields in await queue.events(last, count=100, block_ms=300):
                    _print_event(entry_id, fields, args.json)
                    last = entry_id
            return EXIT_INTERRUPTED

    return run_async(go)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _print_event(entry_id: str, fields: dict[str, str], as_json: bool) -> None:
    if as_json:
        print_json_line({"id": entry_id, **fields})
        return
    at = format_ms(int(entry_id.split("-")[0]))
    extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("event", "jobId"))
    print(printable(f"{at}  {fields.get('event', '?'):<16} {fields.get('jobId', '')}  {extra}".rstrip()), flush=True)


def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    settings = settings_from(args)

    async def go() -> None:
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            await (queue.pause() if paused else queue.resume())

    run_async(go)
    name = f"{settings.queue_prefix}:{settings.queue_name}"
    print(f"queue {name} {'paused: workers claim nothing new' if paused else 'resumed'}")
    return EXIT_OK
