"""Queue benchmark (run by hand): enqueue one by one and in bulk, drain at concurrency 10, pickup latency.

    .venv/bin/python bench/queue_throughput.py [--redis-url redis://127.0.0.1:6379/0] [--jobs 20000] [--runs 3]

Without --redis-url it starts a private redis-server (certq.embedded: the same binary as the suite's) so
other users of a shared Redis do not skew the numbers. Every run uses its own key prefix and deletes it.
The drain is one consumer process (this one) running certq's Runner with a no-op handler: the full
reliable lifecycle (claim with a lease, complete, events, retention). Pickup latency: a separate idle
consumer process; 500 jobs enqueued 5 ms apart; latency = handler start minus the enqueue call's start
(same host clock).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from certq.embedded import start_redis
from certq.queue import ActiveJob, JobSpec, Queue, QueueConfig, Runner

SCRIPT = str(Path(__file__).resolve())


def config_for(prefix: str) -> QueueConfig:
    return QueueConfig(prefix=prefix, name="bench")


async def cleanup(client: aioredis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


async def enqueue_one_by_one(client: aioredis.Redis, jobs: int) -> float:
    prefix = f"{{bench{uuid.uuid4().hex[:8]}}}"
    queue = Queue(client, config_for(prefix))
    started = time.perf_counter()
    for n in range(jobs):
        await queue.enqueue({"n": n})
    rate = jobs / (time.perf_counter() - started)
    await cleanup(client, prefix)
    return rate


async def enqueue_bulk_and_drain(client: aioredis.Redis, jobs: int, concurrency: int) -> tuple[float, float, float]:
    prefix = f"{{bench{uuid.uuid4().hex[:8]}}}"
    config = config_for(prefix)
    queue = Queue(client, config)
    started = time.perf_counter()
    await queue.enqueue_many((JobSpec({"n": n}) for n in range(jobs)), batch_size=1_000)
    bulk_rate = jobs / (time.perf_counter() - started)

    async def noop(active: ActiveJob) -> None:
        return None

    runner = Runner(client, config, noop, concurrency=concurrency, burst=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    await runner.run()
    drain_rate = runner.stats.completed / (time.perf_counter() - started)
    drain_cpu_us = (time.process_time() - cpu_started) * 1e6 / max(1, runner.stats.completed)
    counts = await queue.counts()
    assert runner.stats.completed == jobs and counts["waiting"] == 0 and counts["active"] == 0, (runner, counts)
    await cleanup(client, prefix)
    return bulk_rate, drain_rate, drain_cpu_us


async def pickup_latency(client: aioredis.Redis, url: str, jobs: int, gap_s: float) -> tuple[float, float]:
    prefix = f"{{bench{uuid.uuid4().hex[:8]}}}"
    queue = Queue(client, config_for(prefix))
    seen_key = f"{prefix}:bench:seen"
    process = await asyncio.create_subprocess_exec(sys.executable, SCRIPT, "--consumer", url, prefix, seen_key)
    try:
        await client.blpop([seen_key], 30)  # type: ignore[misc]  # the consumer is up and idle
        for _ in range(jobs):
            await queue.enqueue({"t": time.time()})
            await asyncio.sleep(gap_s)
        latencies: list[float] = []
        while len(latencies) < jobs:
            item = await client.blpop([seen_key], 30)  # type: ignore[misc]
            assert item is not None, "consumer stopped answering"
            latencies.append(float(item[1]))
    finally:
        process.terminate()
        await process.wait()
        await cleanup(client, prefix)
    latencies.sort()
    return statistics.median(latencies), latencies[max(0, int(len(latencies) * 0.99) - 1)]


async def consumer_process(url: str, prefix: str, seen_key: str) -> None:
    client = aioredis.from_url(url)

    async def record(active: ActiveJob) -> None:
        await client.rpush(seen_key, (time.time() - float(active.job.payload["t"])) * 1000)  # type: ignore[misc]

    runner = Runner(client, config_for(prefix), record, concurrency=10)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await asyncio.sleep(0.3)
    await client.rpush(seen_key, "ready")  # type: ignore[misc]
    await task


async def main(argv: list[str]) -> None:
    if argv and argv[0] == "--consumer":
        await consumer_process(*argv[1:4])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default=None, help="an existing Redis (default: start a private one)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pickup-jobs", type=int, default=500)
    parser.add_argument("--skip", nargs="*", default=[], choices=["single", "drain", "pickup"])
    args = parser.parse_args(argv)
    server = None if args.redis_url else start_redis()
    url = args.redis_url or (server.url if server else "")
    try:
        await run_all(args, url)
    finally:
        if server is not None:
            server.stop()


async def run_all(args: argparse.Namespace, url: str) -> None:
    client = aioredis.from_url(url)
    results: dict[str, list[float]] = {
        "enqueue one by one (jobs/s)": [],
        "enqueue bulk (jobs/s)": [],
        "drain, concurrency 10 (jobs/s)": [],
        "drain CPU of this process (us/job)": [],
        "pickup p50 (ms)": [],
        "pickup p99 (ms)": [],
    }
    for run in range(args.runs):
        row: dict[str, Any] = {}
        if "single" not in args.skip:
            row["enqueue one by one (jobs/s)"] = await enqueue_one_by_one(client, args.jobs)
        if "drain" not in args.skip:
            bulk, drain, cpu = await enqueue_bulk_and_drain(client, args.jobs, args.concurrency)
            row["enqueue bulk (jobs/s)"], row["drain, concurrency 10 (jobs/s)"] = bulk, drain
            row["drain CPU of this process (us/job)"] = cpu
        if "pickup" not in args.skip:
            p50, p99 = await pickup_latency(client, url, args.pickup_jobs, 0.005)
            row["pickup p50 (ms)"], row["pickup p99 (ms)"] = p50, p99
        for name, value in row.items():
            results[name].append(value)
        print(f"run {run + 1}: " + ", ".join(f"{name} {value:,.1f}" for name, value in row.items()), flush=True)
    print("medians:")
    for name, values in results.items():
        if values:
            print(f"  {name}: {statistics.median(values):,.1f}")
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
