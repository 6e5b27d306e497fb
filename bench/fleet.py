"""Fleet benchmark (run by hand): certifications/s through the whole path, API to verdict, per worker setup.

    .venv/bin/python -m bench.fleet [--pairs 2000] [--workers 1 2] [--concurrency 3 25 100] \
        [--delay-ms 0 50 500] [--redis-url ...] [--database-url ...]

For each case (delay x worker processes x concurrency): a fresh database (created, migrated, dropped), a
fresh Redis key prefix (removed), an OpenAI-compatible loopback stub in its own process that answers every
request after `delay` ms (tests/certification/stubs.py), `python -m certq.api` (one process) and W
`python -m certq.worker --concurrency C` processes. `pairs` model x region pairs are registered, then
POSTed one per request to /api/certification-queue/certify-model from 10 keep-alive connections while the
workers run; the clock stops when every pair has a verdict row in PostgreSQL. Reported per case:
certifications/s (first accept to last verdict), accept rate, the time from the last accept to the last
verdict, CPU ms per certification of the API and of the workers (utime+stime from /proc), the stub's,
and each worker's RSS (VmRSS at the end, VmHWM the peak).

The ceiling is measured the same way: `--ceiling` also drives the stub alone with httpx (the workers'
client) at 1, 10 and 100 requests in flight, giving the stub's capacity (requests/s) and httpx's CPU per request;
divided by the requests one certification sends, that bounds certifications/s on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis

from bench.api import exchange
from certq.embedded import free_port, url_answers
from certq.store import Store

DATABASE = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REGIONS = [f"r{i:02d}" for i in range(50)]
FINISHED = ("CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED")
CLIENTS = 10
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the API's uvicorn workers under --workers N)."""
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            for child in children.read().split():
                found += process_tree(int(child))
    return found


def memory_mb(pid: int, field_name: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the stub, in its own process (its threads must not share the bench's GIL) -----------------------------


def serve_stub(delay_ms: float) -> None:
    from tests.certification.stubs import OpenAIHandler, serve

    class Handler(OpenAIHandler):
        # The stdlib handler writes the head and the body separately: with Nagle on, the body waits for the
        # client's delayed ACK (40 ms per answer on Linux), which would be the stub's cost, not certq's.
        disable_nagle_algorithm = True

    with serve(Handler, delay_s=delay_ms / 1000) as (root, state):
        print(root, flush=True)
        sys.stdin.read()  # until the bench closes our stdin
        del state


@dataclass
class Processes:
    stub: subprocess.Popen[str] | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def all(self) -> list[subprocess.Popen[Any]]:
        found: list[subprocess.Popen[Any]] = [p for p, _ in self.workers]
        return [p for p in (self.api, self.stub) if p is not None] + found

    def stop(self) -> None:
        for process in [p for p, _ in self.workers] + ([self.api] if self.api else []):
            if process.poll() is None:
                process.terminate()
        for process in [p for p, _ in self.workers] + ([self.api] if self.api else []):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.stub is not None and self.stub.stdin is not None:
            self.stub.stdin.close()
            self.stub.wait(timeout=30)


def start_stub(delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fleet", "--serve-stub", str(delay_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # clients closing kept-alive connections at the end log tracebacks
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def wait_http(url: str, process: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not get ready (exit code {process.poll()})")
            await asyncio.sleep(0.05)


# -- one case -------------------------------------------------------------------------------------------------


async def submit(port: int, token: str, bodies: list[bytes]) -> tuple[float, float, dict[int, int]]:
    """POST every body from CLIENTS connections; returns (first accept, last accept) perf_counter times."""
    statuses: dict[int, int] = {}
    pending = iter(bodies)
    accepted: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for body in pending:
                head = (
                    f"POST /api/certification-queue/certify-model HTTP/1.1\r\nHost: bench\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                status = await exchange(reader, writer, head, body)
                statuses[status] = statuses.get(status, 0) + 1
                accepted.append(time.perf_counter())
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return min(accepted), max(accepted), statuses


async def prepare(dsn: str, pairs: int, base_url: str) -> list[bytes]:
    store = await Store.connect(dsn, min_size=1, max_size=2)
    try:
        await store.migrate()
        bodies: list[bytes] = []
        for i in range((pairs + len(REGIONS) - 1) // len(REGIONS)):
            regions = REGIONS[: min(len(REGIONS), pairs - len(bodies))]
            model = await store.create_model(
                name=f"fleet-{i}", provider="openai", api_model_id="stub-model", base_url=base_url, regions=regions
            )
            bodies.extend(orjson.dumps({"modelId": str(model.id), "region": r}) for r in regions)  # type: ignore[union-attr]
        return bodies
    finally:
        await store.close()


async def run_case(args: argparse.Namespace, delay_ms: float, workers: int, concurrency: int) -> dict[str, Any]:
    name = f"certq_fleet_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = args.database_url.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"{{fleet{uuid.uuid4().hex[:8]}}}"
    token = uuid.uuid4().hex
    procs = Processes()
    logs: list[Any] = []
    redis = aioredis.Redis.from_url(args.redis_url)
    try:
        procs.stub, root = start_stub(delay_ms)
        bodies = await prepare(dsn, args.pairs, f"{root}/v1")
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "REDIS_URL": args.redis_url,
            "BULL_QUEUE_PREFIX": prefix,
            "API_TOKENS": token,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "WORKER_HEALTH_HOST": "127.0.0.1",
        }
        api_port = free_port()
        api_argv = [sys.executable, "-m", "certq.api", "--workers", str(args.api_workers)]
        procs.api = await asyncio.to_thread(subprocess.Popen, api_argv, env={**env, "API_PORT": str(api_port)})
        for _ in range(workers):
            port = free_port()
            argv = [sys.executable, "-m", "certq.worker", "--concurrency", str(concurrency), "--health-port", str(port)]
            log = tempfile.TemporaryFile()  # the worker's warnings (lease lost, stalled): counted per case
            logs.append(log)
            worker = await asyncio.to_thread(subprocess.Popen, argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
            procs.workers.append((worker, port))
        await wait_http(f"http://127.0.0.1:{api_port}/health", procs.api, "the API")
        for process, port in procs.workers:
            await wait_http(f"http://127.0.0.1:{port}/ready", process, "a worker")
        conn = await asyncpg.connect(dsn)
        try:
            api_pids = process_tree(procs.api.pid)
            cpu0 = {pid: cpu_seconds(pid) for pid in [p.pid for p in procs.all()] + api_pids}
            first, last_accept, statuses = await submit(api_port, token, bodies)
            api_cpu_accept = sum(cpu_seconds(pid) - cpu0[pid] for pid in api_pids)
            deadline = time.perf_counter() + args.case_timeout_s
            while True:
                done = await conn.fetchval("SELECT count(*) FROM certifications WHERE status = ANY($1)", list(FINISHED))
                if done >= len(bodies) or time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.02)
            last_verdict = time.perf_counter()
            cpu1 = {pid: cpu_seconds(pid) for pid in cpu0}
            outcome = dict(
                await conn.fetch("SELECT status, count(*) FROM certifications GROUP BY status")  # type: ignore[arg-type]
            )
            requests = await conn.fetchval(
                "SELECT avg((metrics->>'requests')::float) FROM certifications WHERE metrics ? 'requests'"
            )
        finally:
            await conn.close()
        worker_pids = [p.pid for p, _ in procs.workers]
        warnings = {"lease lost": 0, "stalled jobs moved back": 0}
        for log in logs:
            log.seek(0)
            for line in log.read().decode(errors="replace").splitlines():
                for needle in warnings:
                    warnings[needle] += needle in line
        n = len(bodies)
        return {
            "delay_ms": delay_ms,
            "workers": workers,
            "concurrency": concurrency,
            "pairs": n,
            "finished": done,
            "outcome": outcome,
            "http": statuses,
            "cert_per_s": done / (last_verdict - first),
            "accept_per_s": n / max(last_accept - first, 1e-9),
            "tail_s": last_verdict - last_accept,
            "api_cpu_ms": sum(cpu1[pid] - cpu0[pid] for pid in api_pids) * 1000 / n,
            "api_accept_cpu_ms": api_cpu_accept * 1000 / n,
            "worker_cpu_ms": sum(cpu1[pid] - cpu0[pid] for pid in worker_pids) * 1000 / max(done, 1),
            "stub_cpu_ms": (cpu1[procs.stub.pid] - cpu0[procs.stub.pid]) * 1000 / max(done, 1),
            "requests_per_cert": float(requests or 0),
            "lease_lost": warnings["lease lost"],
            "stalled_recoveries": warnings["stalled jobs moved back"],
            "worker_rss_mb": [memory_mb(pid, "VmRSS") for pid in worker_pids],
            "worker_hwm_mb": [memory_mb(pid, "VmHWM") for pid in worker_pids],
        }
    finally:
        procs.stop()
        for log in logs:
            log.close()
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.unlink(key)
        await redis.aclose()
        admin = await asyncpg.connect(args.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- the ceiling: the stub alone, driven by httpx as the workers drive it -----------------------------------


async def ceiling(delay_ms: float, requests: int, in_flight: int) -> dict[str, float]:
    process, root = start_stub(delay_ms)
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 8}
    try:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            await client.post(f"{root}/v1/chat/completions", json=body)
            left = iter(range(requests))

            async def one() -> None:
                for _ in left:
                    (await client.post(f"{root}/v1/chat/completions", json=body)).raise_for_status()

            stub0, cpu0, t0 = cpu_seconds(process.pid), time.process_time(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(in_flight)))
            elapsed, cpu, stub = (
                time.perf_counter() - t0,
                time.process_time() - cpu0,
                cpu_seconds(process.pid) - stub0,
            )
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    return {
        "rps": requests / elapsed,
        "httpx_cpu_us": cpu / requests * 1e6,
        "stub_cpu_us": stub / requests * 1e6,
    }


def print_case(row: dict[str, Any]) -> None:
    print(
        f"{row['delay_ms']:>6.0f} {row['workers']:>3} {row['concurrency']:>5} {row['finished']:>5}/{row['pairs']:<5} "
        f"{row['cert_per_s']:>8.1f} {row['accept_per_s']:>8.0f} {row['tail_s']:>8.1f} "
        f"{row['api_cpu_ms']:>7.2f} {row['worker_cpu_ms']:>8.1f} {row['stub_cpu_ms']:>7.1f} "
        f"{row['requests_per_cert']:>5.1f} {'/'.join(f'{v:.0f}' for v in row['worker_rss_mb']):>9} "
        f"{'/'.join(f'{v:.0f}' for v in row['worker_hwm_mb']):>9} {row['lease_lost']:>5}  "
        f"{row['outcome']} {row['http']}",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    if not (url_answers(args.database_url) and url_answers(args.redis_url)):
        sys.exit(f"bench/fleet.py needs PostgreSQL ({args.database_url}) and Redis ({args.redis_url})")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.pairs} pairs per case")
    if args.ceiling:
        print(f"{'delay':>6} {'in flight':>10} {'stub req/s':>11} {'httpx CPU us/req':>17} {'stub CPU us/req':>16}")
        for delay in args.delay_ms:
            for in_flight in args.ceiling_in_flight:
                row = await ceiling(delay, args.ceiling_requests, in_flight)
                print(
                    f"{delay:>6.0f} {in_flight:>10} {row['rps']:>11.0f} {row['httpx_cpu_us']:>17.0f} "
                    f"{row['stub_cpu_us']:>16.0f}"
                )
    print(
        f"{'delay':>6} {'W':>3} {'conc':>5} {'done':>11} {'cert/s':>8} {'accept/s':>8} {'tail s':>8} "
        f"{'API ms':>7} {'wrk ms':>8} {'stub ms':>7} {'reqs':>5} {'RSS MB':>9} {'peak MB':>9} {'lost':>5}  "
        "outcome, HTTP"
    )
    rows = []
    for delay in args.delay_ms:
        for workers in args.workers:
            for concurrency in args.concurrency:
                row = await run_case(args, delay, workers, concurrency)
                rows.append(row)
                print_case(row)
    if len(rows) > 1:
        print(f"median cert/s over the cases: {statistics.median(r['cert_per_s'] for r in rows):.1f}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="model x region pairs certified per case")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[3, 25, 100], help="per worker process")
    parser.add_argument("--delay-ms", type=float, nargs="+", default=[0, 50, 500], help="the stub's answer delay")
    parser.add_argument("--ceiling", action="store_true", help="also measure the stub alone with httpx")
    parser.add_argument("--ceiling-requests", type=int, default=5000)
    parser.add_argument("--ceiling-in-flight", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--case-timeout-s", type=float, default=1800)
    parser.add_argument("--redis-url", default=REDIS)
    parser.add_argument("--database-url", default=DATABASE)
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (--workers)")
    parser.add_argument("--serve-stub", type=float, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_stub is not None:
        serve_stub(arguments.serve_stub)
    else:
        asyncio.run(main(arguments))
