"""POST /certify-model throughput and latency (PostgreSQL insert + Redis enqueue per request), next to
GET /health on the same server as the framework's ceiling.

    .venv/bin/python bench/api.py [--seconds 10] [--concurrency 1 50] [--workers 2]

Starts `python -m certq.api` on a fresh database (dropped at the end) and a private Redis prefix
(removed at the end), registers enough models that every request certifies a new model+region, then
drives the server from a second process with a minimal keep-alive HTTP/1.1 client (so the client's
own cost stays small next to the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import orjson
import redis

from certq.embedded import free_port, url_answers
from certq.store import Store

DATABASE = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REGIONS = [f"r{i:02d}" for i in range(50)]


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    """One request on a kept-alive connection, written and read by hand (no client library cost); its status."""
    writer.write(head + body)
    status_line = await reader.readuntil(b"\r\n")
    length = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _drive(
    port: int, token: str, path: str, bodies: list[bytes] | None, clients: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_body = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal next_body
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                if bodies is None:
                    body = b""
                    head = (f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").encode()
                else:
                    if next_body >= len(bodies):
                        return
                    body = bodies[next_body]
                    next_body += 1
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode()
                started = time.perf_counter()
                status = await exchange(reader, writer, head, body)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "statuses": statuses,
    }


def _load_process(args: tuple[int, str, str, list[bytes] | None, int, float], out: Any) -> None:
    out.put(asyncio.run(_drive(*args)))


def drive(port: int, token: str, path: str, bodies: list[bytes] | None, clients: int, seconds: float) -> Any:
    """Run the load generator in a second process (its CPU is not the server's)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=_load_process, args=((port, token, path, bodies, clients, seconds), out))
    process.start()
    result = out.get(timeout=seconds + 120)
    process.join(timeout=30)
    return result


async def prepare(dsn: str, models: int) -> list[bytes]:
    store = await Store.connect(dsn, min_size=1, max_size=2)
    try:
        await store.migrate()
        bodies = []
        for i in range(models):
            model = await store.create_model(
                name=f"bench-{i}",
                provider="openai",
                api_model_id=f"bench-{i}",
                base_url="http://127.0.0.1:9/v1",
                regions=REGIONS,
            )
            bodies.extend(orjson.dumps({"modelId": str(model.id), "region": r}) for r in REGIONS)  # type: ignore[union-attr]
        return bodies
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--models", type=int, default=400, help="models x 50 regions = distinct certifications")
    parser.add_argument("--workers", type=int, default=1, help="API processes (python -m certq.api --workers N)")
    args = parser.parse_args()
    if not (url_answers(DATABASE) and url_answers(REDIS)):
        sys.exit(f"bench/api.py needs PostgreSQL ({DATABASE}) and Redis ({REDIS})")

    name = f"certq_bench_{uuid.uuid4().hex[:8]}"
    admin = DATABASE

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"{{bench{uuid.uuid4().hex[:8]}}}"
    token = uuid.uuid4().hex
    port = free_port()
    server = None
    try:
        bodies = asyncio.run(prepare(dsn, args.models))
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "REDIS_URL": REDIS,
            "BULL_QUEUE_PREFIX": prefix,
            "API_TOKENS": token,
            "API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen([sys.executable, "-m", "certq.api", "--workers", str(args.workers)], env=env)
        deadline = time.monotonic() + 30
        while not url_answers(f"redis://127.0.0.1:{port}"):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the API did not start")
            time.sleep(0.1)
        print(
            f"server: python -m certq.api --workers {args.workers} on :{port}; load: 1 process; "
            f"{args.seconds:g}s per row; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        print(f"{'route':<32}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  statuses")
        for clients in args.concurrency:
            for label, path, payload in (
                ("GET /health", "/health", None),
                ("POST .../certify-model", "/api/certification-queue/certify-model", bodies),
            ):
                result = drive(port, token, path, payload, clients, args.seconds)
                if payload is not None:
                    del bodies[: result["requests"]]
                print(
                    f"{label:<32}{clients:>8}{result['rps']:>10.0f}{result['p50_ms']:>10.2f}"
                    f"{result['p99_ms']:>10.2f}  {result['statuses']}"
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
