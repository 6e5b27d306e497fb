"""`demo`: from nothing to a real certification on screen, through the real API, queue and worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from certq.cli import EXIT_FAILURE, EXIT_OK, CommandError
from certq.cli.common import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, positive_seconds, redact_url
from certq.cli.render import render_verdict
from certq.cli.stack import Stack, StackError, Ticker, child_env, pick_port
from certq.connections import connect_redis
from certq.credentials import url_target
from certq.embedded import EmbeddedServerError, start_postgres, start_redis, url_answers
from certq.jobs import queue_config
from certq.queue import Queue
from certq.settings import DOTENV, Settings, load_settings
from certq.store import Store

FINAL = {"CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"}
CI_TIMEOUT_S = 170.0
INTERACTIVE_TIMEOUT_S = 900.0
QUEUE_BASE = "/api/certification-queue"
# REDIS_URL is set for the children; these would otherwise win over it.
REDIS_TOPOLOGY = frozenset({"REDIS_SENTINELS", "REDIS_CLUSTER_NODES"})


@dataclass(frozen=True)
class Target:
    """The model deployment the demo certifies."""

    description: str
    provider: str
    api_model_id: str
    region: str
    base_url: str | None = None
    api_key_env: str | None = None


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="start everything privately and certify a real model, showing the verdict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start a private Redis and PostgreSQL (unless REDIS_URL / DATABASE_URL are set), apply the "
        "schema, start the API and one worker,\nregister a model and certify it through the HTTP API, "
        "then print the verdict and where to look next.\n\n"
        "What is certified: OPENAI_BASE_URL (+ OPENAI_API_KEY, model CERTQ_DEMO_MODEL) when set; else "
        "Amazon Bedrock when AWS\ncredentials are configured; else a tiny model the demo generates and "
        "serves with llama.cpp on 127.0.0.1.\n\n"
        "Ctrl-C stops everything it started. Exit codes: 0 verdict printed, 1 no verdict (timeout or "
        "failure),\n5 a part could not start, 130 interrupted.",
    )
    demo.add_argument(
        "--ci",
        action="store_true",
        help="non-interactive: exit right after printing the verdict instead of waiting for Ctrl-C",
    )
    demo.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        default=None,
        help=f"give up when no verdict after S seconds (default {CI_TIMEOUT_S:g} with --ci, "
        f"else {INTERACTIVE_TIMEOUT_S:g})",
    )
    demo.add_argument("--api-port", type=int, default=3001, help="API port if free (default 3001, else any)")
    demo.add_argument("--worker-port", type=int, default=3002, help="worker health port if free (default 3002)")
    demo.set_defaults(run=run_demo)


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    # os.write, not print: a handler that prints while the main thread is printing hits a reentrant write.
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), b"\n[demo] still stopping what it started (each part has a time limit)\n")


def run_demo(args: argparse.Namespace) -> int:
    settings = load_settings(env_file=DOTENV)
    timeout_s = args.timeout if args.timeout is not None else (CI_TIMEOUT_S if args.ci else INTERACTIVE_TIMEOUT_S)
    deadline = time.monotonic() + timeout_s
    stack = Stack()
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    try:
        _say(f"working files (logs, private databases) in {stack.workdir}: removed when the demo stops")
        code = _run(args, settings, stack, deadline)
        if code == EXIT_OK and not args.ci:
            _say("everything keeps running so you can look around; press Ctrl-C to stop")
            _wait_for_interrupt(stack)
        return code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _say("interrupted")
        return EXIT_INTERRUPTED
    except StackError as exc:
        raise CommandError(f"demo: {exc}", EXIT_UNAVAILABLE) from None
    except EmbeddedServerError as exc:
        raise CommandError(f"demo: could not start a private server: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        # Whatever happened, output errors included (`demo | head` closes stdout), the children stop; a
        # second Ctrl-C must not cut that short (every stop has its own time limit).
        for sig in previous:
            signal.signal(sig, _still_stopping)
        stack.close(_say)
        stop_leftover_postgres(stack.workdir, _say)
        shutil.rmtree(stack.workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(OSError):
            gone = "removed" if not stack.workdir.exists() else "could not remove"
            _say(f"stopped everything it started; {gone} {stack.workdir}")


def _run(args: argparse.Namespace, settings: Settings, stack: Stack, deadline: float) -> int:
    redis_url = _redis(settings, stack)
    database_url = _database(settings, stack)
    version = asyncio.run(_migrate(database_url))
    _say(f"schema version {version} applied")
    target = _target(settings, stack)
    _say(f"certifying {target.description}")

    token = secrets.token_urlsafe(24)
    board_password = secrets.token_urlsafe(12)
    api_port = pick_port(args.api_port, "the API", _say)
    worker_port = pick_port(args.worker_port, "the worker's health port", _say)
    env = child_env(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "API_TOKENS": token,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
            "WORKER_HEALTH_PORT": str(worker_port),
            "BULL_BOARD_USERNAME": "admin",
            "BULL_BOARD_PASSWORD": board_password,
            "CERTQ_ENV": "development",
            "CERTIFICATION_SHUTDOWN_GRACE": "5",
            "BULL_QUEUE_PREFIX": settings.queue_prefix,
            "CERTIFICATION_QUEUE_NAME": settings.queue_name,
            "LOG_FORMAT": "text",
            "MODEL_CREDENTIALS": _demo_credentials(settings, target),
        },
        drop=REDIS_TOPOLOGY,
    )
    api_url = f"http://127.0.0.1:{api_port}"
    worker_url = f"http://127.0.0.1:{worker_port}"
    api = stack.spawn("api", [sys.executable, "-m", "certq.api"], env)
    worker = stack.spawn(
        "worker",
        [sys.executable, "-m", "certq.worker", "--concurrency", "1", "--health-port", str(worker_port)],
        env,
        stop_timeout_s=15,
    )
    ready_s = max(5.0, min(60.0, deadline - time.monotonic()))
    stack.wait_http(api, f"{api_url}/ready", ready_s, lambda r: r.status_code == 200)
    _say(f"API ready at {api_url} (pid {api.process.pid})")
    stack.wait_http(worker, f"{worker_url}/ready", ready_s, lambda r: r.status_code == 200)
    _say(f"worker ready, health and metrics at {worker_url} (pid {worker.process.pid})")

    outcome = asyncio.run(
        _certify(api_url, token, target, settings.model_copy(update={"redis_url": redis_url}), deadline)
    )
    if outcome is None:
        _say(f"no verdict in time; the worker's log ends with:\n{worker.log_tail()}")
        return EXIT_FAILURE
    print()
    print(render_verdict(outcome))
    print()
    print(
        render_next_steps(
            api_url,
            worker_url,
            token,
            board_password,
            outcome,
            stack,
            None if args.ci else {"REDIS_URL": redis_url, "DATABASE_URL": database_url},
        )
    )
    return EXIT_OK


def _redis(settings: Settings, stack: Stack) -> str:
    configured = settings.model_fields_set & {"redis_url", "redis_host", "redis_port"}
    if configured:
        if not url_answers(settings.redis_dsn):
            raise CommandError(
                f"nothing answers at {redact_url(settings.redis_dsn)} (REDIS_URL / REDIS_HOST): "
                "start Redis or unset the variable to let the demo start its own",
                EXIT_UNAVAILABLE,
            )
        _say(f"using your Redis at {redact_url(settings.redis_dsn)}")
        return settings.redis_dsn
    server = start_redis(stack.workdir / "redis")
    stack.on_close("redis", server.stop)
    _say(f"started a private Redis at {server.url} (pid {server.process.pid if server.process else '?'})")
    return server.url


def _database(settings: Settings, stack: Stack) -> str:
    if "database_url" in settings.model_fields_set:
        _say(f"using your PostgreSQL at {redact_url(settings.database_url)}")
        return settings.database_url
    server = start_postgres(stack.workdir / "postgres")
    stack.on_close("postgres", server.stop)
    _say("started a private PostgreSQL")
    return server.url


async def _migrate(dsn: str) -> int:
    try:
        store = await Store.connect(dsn, min_size=1, max_size=1)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot reach PostgreSQL at {redact_url(dsn)}: {exc}", EXIT_UNAVAILABLE) from None
    try:
        return await store.migrate()
    finally:
        await store.close()


def _demo_credentials(settings: Settings, target: Target) -> str:
    """The operator's MODEL_CREDENTIALS, else the demo's one key scoped to the one host it certifies."""
    if settings.model_credentials or not (target.api_key_env and target.base_url):
        return settings.model_credentials
    where = url_target(target.base_url)
    if where is None:
        return ""
    host = f"[{where[0]}]" if ":" in where[0] else where[0]
    return f"{target.api_key_env}@{host}:{where[1]}"


def _target(settings: Settings, stack: Stack) -> Target:
    if settings.openai_base_url:
        model = settings.demo_model or "gpt-4o-mini"
        return Target(
            f"the OpenAI-compatible endpoint OPENAI_BASE_URL={settings.openai_base_url} (model {model})",
            "openai",
            model,
            "default",
            base_url=settings.openai_base_url,
            api_key_env="OPENAI_API_KEY" if settings.openai_api_key else None,
        )
    aws_region = _aws_region()
    if aws_region is not None:
        model = settings.demo_model or "amazon.nova-micro-v1:0"
        return Target(
            f"Amazon Bedrock model {model} in {aws_region} (AWS credentials found)", "bedrock", model, aws_region
        )
    from certq.certification.localmodel import (
        LocalServerError,
        llama_cpp_available,
        start_tiny_model_server,
        stop_llama_server,
    )

    if not llama_cpp_available():
        raise CommandError(
            "no OPENAI_BASE_URL, no AWS credentials, and llama-cpp-python is not installed for the "
            "local model: run `python3 -m certq.bootstrap demo`, or pip install -e '.[llm]'",
            EXIT_UNAVAILABLE,
        )
    _say("no OPENAI_BASE_URL or AWS credentials: generating a tiny model and serving it with llama.cpp")
    model_dir = stack.workdir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        base_url, process, _path = start_tiny_model_server(model_dir, "scripted")
    except (LocalServerError, OSError) as exc:
        raise CommandError(f"the local model server did not start: {exc}", EXIT_UNAVAILABLE) from None
    stack.on_close("model server", lambda: stop_llama_server(process))
    _say(f"llama.cpp server at {base_url} (pid {process.pid})")
    return Target(
        f"the local llama.cpp server at {base_url} (model tiny-scripted)",
        "openai",
        "tiny-scripted",
        "local",
        base_url=base_url,
    )


def _aws_region() -> str | None:
    """The AWS region when botocore finds credentials (environment, profile, instance role), else None."""
    try:
        import botocore.session

        session = botocore.session.get_session()
        if session.get_credentials() is None:
            return None
        return str(session.get_config_variable("region") or "us-east-1")
    except Exception:  # a broken ~/.aws config means "no AWS", not a crash
        return None


async def _certify(
    api_url: str, token: str, target: Target, settings: Settings, deadline: float
) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as client:
        body = {
            "name": f"demo: {target.api_model_id}",
            "provider": target.provider,
            "apiModelId": target.api_model_id,
            "regions": [target.region],
            "isActive": True,
        }
        if target.base_url:
            body["baseUrl"] = target.base_url
        if target.api_key_env:
            body["apiKeyEnv"] = target.api_key_env
        model = _expect(await client.post("/api/models", json=body), "register the model")
        _say(f"registered model {model['id']} (POST /api/models)")
        job = _expect(
            await client.post(f"{QUEUE_BASE}/certify-model", json={"modelId": model["id"], "region": target.region}),
            "enqueue",
        )
        _say(
            f"queued job {job['jobId']}: certification {job['certificationId']} of {target.api_model_id} in "
            f"{target.region} (POST {QUEUE_BASE}/certify-model)"
        )
        queued_at = time.monotonic()
        redis = connect_redis(settings)
        queue = Queue(redis, queue_config(settings))
        ticker = Ticker()
        try:
            while time.monotonic() < deadline:
                detail = _expect(await client.get(f"{QUEUE_BASE}/jobs/{job['jobId']}"), "read the job")
                certification = (detail.get("certifications") or [{}])[0]
                status = str(certification.get("status") or detail.get("status"))
                if status in FINAL:
                    ticker.done()
                    _say(
                        f"{status} {time.monotonic() - queued_at:.1f}s after it was queued "
                        "(claimed, probed, recorded in PostgreSQL, read back through the API)"
                    )
                    return {**certification, "jobId": job["jobId"]}
                ticker.show(f"[demo] {status.lower():<10} {await _progress(queue, certification.get('id'))}")
                await asyncio.sleep(0.5)
        finally:
            ticker.done()
            await redis.aclose()
    return None


async def _progress(queue: Queue, certification_id: object) -> str:
    if not certification_id:
        return ""
    queued = await queue.get(str(certification_id))
    if queued is None:
        return ""
    value = queued.progress
    done = total = None
    if isinstance(value, dict):
        done, total = value.get("done"), value.get("total")
    elif isinstance(value, list | tuple) and len(value) == 2:
        done, total = value
    attempt = f"attempt {queued.attempts}/{queued.max_attempts}"
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        filled = 24 * done // total
        return f"[{'#' * filled}{'.' * (24 - filled)}] {done}/{total} probes  {attempt}"
    return attempt


def _expect(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise CommandError(f"the API refused to {what}: {response.status_code} {response.text[:300]}", EXIT_FAILURE)
    data = response.json()
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], dict):
        data = data["data"]
    if not isinstance(data, dict):
        raise CommandError(f"unexpected answer when trying to {what}: {response.text[:300]}", EXIT_FAILURE)
    return data


def admin_cli() -> str:
    """How to run the admin CLI from any shell: this interpreter's `certq` script (the virtualenv's), whose
    absolute path works without activating anything; else this interpreter with `-m certq`."""
    script = Path(sys.executable).with_name("certq")
    return shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m certq"


def render_next_steps(
    api_url: str,
    worker_url: str,
    token: str,
    board_password: str,
    outcome: dict[str, Any],
    stack: Stack,
    servers: dict[str, str] | None,
) -> str:
    """What to open next; with `servers` (the demo's REDIS_URL/DATABASE_URL, only while they keep running)
    the admin CLI commands too, each one ready to paste into a new terminal."""
    job_id, certification_id = outcome.get("jobId", ""), outcome.get("id", "")
    lines = [
        "Where to look next:",
        f"  API             {api_url}   (bearer token: {token})",
        f"  this job        curl -H 'Authorization: Bearer {token}' {api_url}{QUEUE_BASE}/jobs/{job_id}",
        f"  API reference   {api_url}/openapi.json",
        f"  dashboard       {api_url}/admin/queues   (user admin, password {board_password})",
        f"  worker          {worker_url}/health   metrics: {worker_url}/metrics",
    ]
    if servers is None:
        return "\n".join(lines)
    cli = admin_cli()
    commands = [
        f"{cli} stats",
        f"{cli} job {certification_id}",
        f"{cli} job {job_id}",
        f"{cli} jobs --state completed",
        f"{cli} events --last 10",
        f"{cli} doctor",
    ]
    if outcome.get("modelId") and outcome.get("region"):
        commands.append(f"{cli} enqueue {outcome['modelId']} --region {shlex.quote(str(outcome['region']))} --wait")
    return "\n".join(
        [
            *lines,
            f"  logs            {stack.workdir}/api.log, {stack.workdir}/worker.log",
            "",
            "The admin CLI on the demo's servers: paste into any terminal while the demo runs (`job` takes the "
            "certification id\nor the job id; `enqueue --wait` certifies the model again):",
            "  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in servers.items()),
            *[f"  {command}" for command in commands],
        ]
    )


def stop_leftover_postgres(workdir: Path, say: Callable[[str], None]) -> None:
    """The last stop: a PostgreSQL still running from the demo's folder (Ctrl-C came while it was starting,
    before the demo held a handle to it) gets a fast shutdown, so no server outlives the folder it runs from."""
    for pidfile in workdir.glob("**/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            if str(pidfile.parent) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                continue
            with contextlib.suppress(OSError):
                say(f"stopping a PostgreSQL left running from {pidfile.parent} (pid {pid})")
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def _wait_for_interrupt(stack: Stack) -> None:
    while True:
        for child in stack.children.values():
            if child.process.poll() is not None:
                _say(
                    f"{child.name} exited (code {child.process.returncode}); stopping the demo. Its log ends "
                    f"with:\n{child.log_tail()}"
                )
                return
        time.sleep(0.5)
