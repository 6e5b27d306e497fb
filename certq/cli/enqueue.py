"""`enqueue` / `certify-model`: queue a certification of model M in region R, through the API or directly."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from certq.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from certq.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    ProgressBar,
    add_connection_options,
    open_store,
    positive_seconds,
    print_json,
    redact_url,
    redis_connection,
    settings_from,
)
from certq.cli.render import record_view, render_verdict
from certq.jobs import enqueue_runs, queue_config
from certq.queue import Queue
from certq.settings import Settings
from certq.store import FINAL_STATUSES, JobCreated

QUEUE_BASE = "/api/certification-queue"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enqueue",
        aliases=["certify-model"],
        help="queue a certification of a model in a region",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Queue a certification of MODEL_ID (a registered model's uuid) in REGION, as POST "
        f"{QUEUE_BASE}/certify-model does.\n\n"
        "With --api-url the API does it (needs --token or the first of API_TOKENS); without, this "
        "command records\nthe run in PostgreSQL and enqueues it in Redis itself. A model+region already "
        "queued or running is not\nqueued twice: its job comes back instead.\n\n"
        "--wait follows the run to its verdict (progress bar on a terminal). Exit codes: 0 queued "
        "(with --wait:\nCERTIFIED), 1 finished without certification or refused, 4 no such model, "
        "5 unreachable.",
    )
    parser.add_argument("model_id", metavar="MODEL_ID", help="the model's id (uuid)")
    parser.add_argument("--region", required=True, help="a region the model offers (e.g. us-east-1, local)")
    parser.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    parser.add_argument("--api-url", metavar="URL", help="go through this API (e.g. http://127.0.0.1:3001)")
    parser.add_argument("--token", help="bearer token for --api-url (default: the first of API_TOKENS)")
    parser.add_argument("--wait", action="store_true", help="wait for the verdict and print it")
    parser.add_argument(
        "--timeout", type=positive_seconds, default=900.0, metavar="S", help="--wait gives up after S seconds"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_connection_options(parser, database=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        model_id = UUID(args.model_id)
    except ValueError:
        raise CommandError(f"MODEL_ID {args.model_id!r} is not a uuid (see GET /api/models)", EXIT_USAGE) from None
    settings = settings_from(args)
    if args.api_url:
        answer = _through_api(args, settings, model_id)
        return _finish(args, answer, lambda: _wait_api(args, settings, answer))
    try:
        answer = asyncio.run(_directly(settings, model_id, args.region, args.priority))
    except asyncpg.UndefinedTableError:
        raise CommandError(
            f"the database at {redact_url(settings.database_url)} has no certq schema: run `certq migrate`",
            EXIT_FAILURE,
        ) from None
    except asyncpg.PostgresError as exc:
        raise CommandError(f"PostgreSQL refused: {exc}", EXIT_FAILURE) from None
    return _finish(args, answer, lambda: asyncio.run(_wait_store(settings, answer, args.timeout)))


def _finish(args: argparse.Namespace, answer: dict[str, Any], wait: Any) -> int:
    if not args.wait:
        if args.json:
            print_json(answer)
        else:
            state = "already queued or running" if answer.get("existing") else "queued"
            print(
                f"{state}: job {answer['jobId']}, certification {answer['certificationId']} "
                f"({answer['modelId']} in {answer['region']})"
            )
        return EXIT_OK
    verdict: dict[str, Any] | None = wait()
    if verdict is None:
        certification = answer["certificationId"]
        raise CommandError(
            f"no verdict within {args.timeout:g}s; certification {certification} (job "
            f"{answer['jobId']}) goes on: `certq job {certification}` shows it",
            EXIT_FAILURE,
        )
    if args.json:
        print_json(verdict)
    else:
        print(render_verdict(verdict))
    return EXIT_OK if verdict.get("status") == "CERTIFIED" else EXIT_FAILURE


def _token(args: argparse.Namespace, settings: Settings) -> str:
    # A read-only token would get 403 on certify-model; take the first that may certify.
    able = [secret for secret, role in settings.token_roles if role != "read"]
    token = args.token or next(iter(able or settings.tokens), None)
    if not token:
        raise CommandError("--api-url needs a bearer token: --token T, or API_TOKENS in the environment", EXIT_USAGE)
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise CommandError(
            "the bearer token must be ASCII, without spaces or control characters (--token or API_TOKENS)", EXIT_USAGE
        )
    return str(token)


def _through_api(args: argparse.Namespace, settings: Settings, model_id: UUID) -> dict[str, Any]:
    body = {"modelId": str(model_id), "region": args.region, "priority": args.priority}
    try:
        response = httpx.post(
            f"{args.api_url.rstrip('/')}{QUEUE_BASE}/certify-model",
            json=body,
            timeout=15,
            headers={"Authorization": f"Bearer {_token(args, settings)}"},
        )
    except httpx.HTTPError as exc:
        raise CommandError(
            f"no answer from the API at {args.api_url}: {exc or type(exc).__name__}", EXIT_UNAVAILABLE
        ) from None
    data = response.json() if response.headers.get("content-type", "").endswith("json") else {}
    if response.status_code >= 400:
        detail = data.get("detail") or response.text[:300]
        code = EXIT_NOT_FOUND if response.status_code == 404 else EXIT_FAILURE
        raise CommandError(f"the API refused ({response.status_code}): {detail}", code)
    answer = dict(data)
    answer.setdefault("existing", response.status_code == 200)
    return answer


async def _directly(settings: Settings, model_id: UUID, region: str, priority: str) -> dict[str, Any]:
    store = await open_store(settings)
    try:
        model = await store.get_model(model_id)
        if model is None:
            raise CommandError(f"no model with id {model_id}", EXIT_NOT_FOUND)
        if not model.is_active:
            raise CommandError(f"model {model_id} ({model.name}) is inactive", EXIT_FAILURE)
        if not model.offers(region):
            raise CommandError(
                f"model {model.name} does not offer region {region!r} (it offers {', '.join(model.regions)})",
                EXIT_FAILURE,
            )
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            created = await store.create_job(type="SINGLE_MODEL", pairs=[(model_id, region)], priority=priority)  # type: ignore[arg-type]
            assert isinstance(created, JobCreated)  # no idempotency key, so never a Replay
            if created.job is None:
                live = created.skipped[0]
                return {
                    "jobId": str(live.job_id),
                    "certificationId": str(live.certification_id),
                    "modelId": str(model_id),
                    "region": region,
                    "status": live.status,
                    "existing": True,
                }
            await enqueue_runs(queue, settings, created.certifications)
            return {
                "jobId": str(created.job.id),
                "certificationId": str(created.certifications[0].id),
                "modelId": str(model_id),
                "region": region,
                "status": "QUEUED",
                "existing": False,
            }
    finally:
        await store.close()


async def _wait_store(settings: Settings, answer: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    store = await open_store(settings)
    bar = ProgressBar(None, "certifying")
    deadline = time.monotonic() + timeout_s
    try:
        async with redis_connection(settings) as client:
            queue = Queue(client, queue_config(settings))
            while time.monotonic() < deadline:
                record = await store.get_certification(answer["certificationId"])
                if record is not None and record.status in FINAL_STATUSES:
                    return record_view(record)
                job = await queue.get(answer["certificationId"])
                done, total = _probe_progress(job.progress if job else None)
                bar.update(done, total, (record.status.lower() if record else ""))
                await asyncio.sleep(0.5)
    finally:
        bar.close()
        await store.close()
    return None


def _wait_api(args: argparse.Namespace, settings: Settings, answer: dict[str, Any]) -> dict[str, Any] | None:
    url = f"{args.api_url.rstrip('/')}{QUEUE_BASE}/jobs/{answer['jobId']}"
    headers = {"Authorization": f"Bearer {_token(args, settings)}"}
    bar = ProgressBar(None, "certifying")
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            job = httpx.get(url, headers=headers, timeout=10).json()
            for certification in job.get("certifications") or []:
                if str(certification.get("id")) == str(answer["certificationId"]):
                    if certification.get("status") in FINAL_STATUSES:
                        return dict(certification)
                    bar.update(0, None, str(certification.get("status", "")).lower())
            time.sleep(0.5)
    except httpx.HTTPError as exc:
        raise CommandError(f"lost the API at {args.api_url}: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        bar.close()
    return None


def _probe_progress(value: Any) -> tuple[int, int | None]:
    """The worker reports progress as {"done", "total"} (probes); anything else shows as a spinner count."""
    if isinstance(value, dict) and isinstance(value.get("done"), int):
        total = value.get("total")
        return value["done"], total if isinstance(total, int) else None
    return 0, None
