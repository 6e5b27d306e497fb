"""`doctor` (what is wrong, in plain words) and `healthcheck` (the container's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from redis.exceptions import RedisClusterException, RedisError

from certq.cli import EXIT_FAILURE, EXIT_OK, CommandError
from certq.cli.common import (
    EXIT_UNAVAILABLE,
    add_connection_options,
    connect_postgres,
    non_negative_seconds,
    positive_seconds,
    print_json,
    redact_url,
    redis_connection,
    redis_where,
    settings_from,
)
from certq.jobs import queue_config
from certq.queue import Queue
from certq.settings import Settings, hash_tag
from certq.store.migrations import SCHEMA_VERSION, current_version

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Finding:
    level: Level
    area: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "area": self.area, "message": self.message}


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check Redis, PostgreSQL, the schema and the workers; say what is wrong",
        description="Check everything certq needs and explain each problem with what to do about it: Redis "
        "(reachable, persistence, eviction policy), PostgreSQL (reachable, schema version), workers "
        "(heartbeats) and the queue (paused, backlog, failures). Exit 0 when nothing FAILs, 1 when "
        "something does, 3 on invalid configuration.",
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.add_argument("--api-url", metavar="URL", help="also check this API (e.g. http://127.0.0.1:3001)")
    add_connection_options(doctor, database=True)
    doctor.set_defaults(run=run_doctor)

    health = subparsers.add_parser(
        "healthcheck",
        help="exit 0 if the API or worker in this container answers /live",
        description="For container HEALTHCHECKs: GET /live on 127.0.0.1 at WORKER_HEALTH_PORT and API_PORT; "
        "exit 0 when either answers 200, 5 otherwise.",
    )
    health.add_argument("--timeout", type=positive_seconds, default=2.0, help="seconds per request (default 2)")
    health.set_defaults(run=run_healthcheck)

    wait = subparsers.add_parser(
        "schema-wait",
        help="wait until the database schema is the one this certq needs (init containers)",
        description="Block until DATABASE_URL answers and its schema version is this certq's (run `certq migrate` "
        "elsewhere, e.g. in the API pods). For Kubernetes initContainers: pods of a new release do not "
        "start on an old schema. Exit 0 when the schema is current, 1 on timeout, 3 on bad configuration.",
    )
    wait.add_argument(
        "--timeout", type=non_negative_seconds, default=300.0, metavar="S", help="give up after S seconds (300)"
    )
    wait.add_argument("--database-url", metavar="URL", help="PostgreSQL to use instead of DATABASE_URL")
    wait.set_defaults(run=run_schema_wait)


def run_doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    findings = asyncio.run(diagnose(settings, api_url=args.api_url))
    if args.json:
        print_json([finding.to_dict() for finding in findings])
    else:
        for finding in findings:
            print(f"{finding.level:<4}  {finding.area:<10} {finding.message}")
        failed = sum(finding.level == "FAIL" for finding in findings)
        print(f"\n{failed} problem(s) found" if failed else "\neverything certq needs is in place")
    return EXIT_FAILURE if any(finding.level == "FAIL" for finding in findings) else EXIT_OK


async def diagnose(settings: Settings, *, api_url: str | None = None) -> list[Finding]:
    findings = await _check_redis(settings)
    findings += await _check_postgres(settings)
    if api_url:
        findings += await _check_api(api_url)
    return findings


async def _check_redis(settings: Settings) -> list[Finding]:
    where = redis_where(settings)
    try:
        async with redis_connection(settings) as client:
            info = await client.info()
            findings = [Finding("ok", "redis", f"answers at {where} (Redis {info.get('redis_version', '?')})")]
            findings += _redis_settings(info, settings)
            findings += await _check_queue(Queue(client, queue_config(settings)), settings)
            return findings
    except CommandError as exc:
        return [
            Finding("FAIL", "redis", str(exc)),
            Finding("FAIL", "workers", "cannot check worker heartbeats without Redis"),
        ]
    except (RedisError, RedisClusterException) as exc:
        return [Finding("FAIL", "redis", f"Redis at {where} answered PING but then failed: {exc}")]


def _redis_settings(info: dict[str, Any], settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        findings.append(
            Finding(
                "FAIL",
                "redis",
                f"maxmemory-policy is {policy}: when memory is full Redis will "
                "silently delete queued jobs. Set `maxmemory-policy noeviction`.",
            )
        )
    if int(info.get("aof_enabled", 0)) != 1:
        level: Level = "FAIL" if settings.env == "production" else "warn"
        findings.append(
            Finding(
                level,
                "redis",
                "AOF persistence is off: a Redis restart loses every queued job. "
                "Run redis-server with `--appendonly yes` (compose.yaml does).",
            )
        )
    if info.get("redis_mode") == "cluster" and hash_tag(settings.queue_prefix) is None:
        findings.append(
            Finding(
                "FAIL",
                "redis",
                f"Redis Cluster needs a hash-tagged prefix so a queue's keys share "
                f"one slot: set BULL_QUEUE_PREFIX={{{settings.queue_prefix}}}",
            )
        )
    return findings


async def _check_queue(queue: Queue, settings: Settings) -> list[Finding]:
    counts = await queue.counts()
    workers = await queue.workers()
    paused = await queue.is_paused()
    waiting, active = counts.get("waiting", 0), counts.get("active", 0)
    name = f"{settings.queue_prefix}:{settings.queue_name}"
    findings: list[Finding] = []
    if workers:
        busy = sum(int(w.get("active") or 0) for w in workers)
        slots = sum(int(w.get("concurrency") or 0) for w in workers)
        findings.append(Finding("ok", "workers", f"{len(workers)} alive (heartbeats), {busy}/{slots} slots busy"))
    else:
        level: Level = "FAIL" if waiting or active else "warn"
        findings.append(
            Finding(
                level,
                "workers",
                f"no worker heartbeat on {name}: nothing will process "
                f"{waiting} waiting job(s). Start one (certq-worker, or python -m certq.worker) "
                "with the same REDIS_* and BULL_QUEUE_PREFIX/CERTIFICATION_QUEUE_NAME as the API.",
            )
        )
    findings += await _probe_workers(workers)
    if paused:
        findings.append(
            Finding("warn", "queue", f"{name} is paused: workers claim nothing. `certq resume` to continue.")
        )
    findings.append(
        Finding(
            "ok",
            "queue",
            ", ".join(
                f"{state} {counts.get(state, 0)}" for state in ("waiting", "active", "delayed", "completed", "failed")
            ),
        )
    )
    if workers and waiting > 2 * sum(int(w.get("concurrency") or 0) for w in workers) and not paused:
        findings.append(
            Finding(
                "warn",
                "queue",
                f"{waiting} jobs waiting for {len(workers)} worker(s): add workers "
                "or raise CERTIFICATION_CONCURRENCY (see docs/operations.md, 'Slow processing').",
            )
        )
    if counts.get("failed", 0):
        findings.append(
            Finding(
                "warn",
                "queue",
                f"{counts['failed']} failed job(s): `certq jobs --state failed` "
                "to see why, `certq retry-failed` to run them again.",
            )
        )
    return findings


async def _probe_workers(workers: list[dict[str, Any]]) -> list[Finding]:
    """Ask each live worker's health port whether it is ready; report the ones that answer "no".

    A worker that cannot be reached from here (another network, a pod name) is not reported: its
    heartbeat already says it is alive.
    """
    findings: list[Finding] = []
    async with httpx.AsyncClient(timeout=2) as client:
        for worker in workers:
            host, port = worker.get("host"), worker.get("healthPort")
            if not host or not isinstance(port, int):
                continue
            try:
                response = await client.get(f"http://{host}:{port}/ready")
            except httpx.HTTPError:
                continue
            if response.status_code != 200:
                reason = _reason(response)
                findings.append(
                    Finding(
                        "warn",
                        "workers",
                        f"worker {worker.get('id')} ({host}:{port}) is alive but "
                        f"not ready: {reason}. See its /health and logs.",
                    )
                )
    return findings


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("reason") or f"HTTP {response.status_code}") if isinstance(body, dict) else str(body)


async def _check_postgres(settings: Settings) -> list[Finding]:
    where = redact_url(settings.database_url)
    try:
        conn = await connect_postgres(settings.database_url)
    except CommandError as exc:
        return [Finding("FAIL", "postgres", str(exc))]
    try:
        version = await current_version(conn)
    finally:
        await conn.close()
    findings = [Finding("ok", "postgres", f"answers at {where}")]
    if version is None:
        findings.append(Finding("FAIL", "schema", "the database has no certq schema: run `certq migrate`"))
    elif version < SCHEMA_VERSION:
        findings.append(
            Finding(
                "FAIL",
                "schema",
                f"schema version {version} is older than this certq's {SCHEMA_VERSION}: run `certq migrate`",
            )
        )
    elif version > SCHEMA_VERSION:
        findings.append(
            Finding(
                "FAIL",
                "schema",
                f"schema version {version} is newer than this certq's "
                f"{SCHEMA_VERSION}: this process runs older code than the last migration",
            )
        )
    else:
        findings.append(Finding("ok", "schema", f"version {version} (current)"))
    return findings


async def _check_api(api_url: str) -> list[Finding]:
    url = api_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{url}/ready")
    except httpx.HTTPError as exc:
        return [Finding("FAIL", "api", f"no answer from {url}: {exc or type(exc).__name__}")]
    if response.status_code == 200:
        return [Finding("ok", "api", f"{url} is ready")]
    return [Finding("FAIL", "api", f"{url}/ready answered {response.status_code}: {response.text[:200]}")]


def run_healthcheck(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ports = dict.fromkeys([settings.worker_health_port, settings.api_port])
    problems: list[str] = []
    for port in ports:
        url = f"http://127.0.0.1:{port}/live"
        try:
            status = httpx.get(url, timeout=args.timeout).status_code
        except httpx.HTTPError as exc:
            problems.append(f"{url}: {type(exc).__name__}{f' ({exc})' if str(exc) else ''}")
            continue
        if status == 200:
            return EXIT_OK
        problems.append(f"{url} answered {status}")
    raise CommandError(
        "unhealthy: nothing answered 200 on /live (WORKER_HEALTH_PORT, API_PORT): " + "; ".join(problems),
        EXIT_UNAVAILABLE,
    )


def run_schema_wait(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    deadline = time.monotonic() + args.timeout

    async def go() -> str:
        last = ""
        while True:
            findings = await _check_postgres(settings)
            failed = [f.message for f in findings if f.level == "FAIL"]
            if not failed:
                return ""
            if failed[0] != last:
                last = failed[0]
                print(f"certq: waiting: {last}", file=sys.stderr, flush=True)
            if time.monotonic() >= deadline:
                return last
            await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    problem = asyncio.run(go())
    if problem:
        raise CommandError(f"schema not ready after {args.timeout:g}s: {problem}", EXIT_FAILURE)
    print(f"certq: schema version {SCHEMA_VERSION} is in place")
    return EXIT_OK
