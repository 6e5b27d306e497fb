"""Worker daemon benchmark (run by hand): jobs/s of real `python -m certq.worker` processes, idle CPU, RSS.

    .venv/bin/python bench/worker.py [--redis-url redis://127.0.0.1:6379/0] \
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--jobs 5000] [--idle-seconds 20]

Each case uses its own key prefix (deleted afterwards). The queue is paused, the jobs are enqueued in
bulk, the worker processes start with the no-op handler (`--handler certq.worker.testing:noop`) and
report ready; then the queue is resumed and the clock runs until every job is completed. So the rate
is the daemon's steady state (claim with a lease, run, complete, events, per-job logs at the chosen
level, metrics), not its start-up. Idle CPU: one worker with an empty queue, utime+stime from
/proc/<pid>/stat over `--idle-seconds`. RSS: VmRSS from /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from certq.embedded import free_port
from certq.queue import JobSpec, Queue, QueueConfig

QUEUE = "bench-worker"


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


async def start_worker(args: argparse.Namespace, prefix: str, concurrency: int) -> Worker:
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url,
        "DATABASE_URL": args.database_url,
        "BULL_QUEUE_PREFIX": prefix,
        "CERTIFICATION_QUEUE_NAME": QUEUE,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": args.log_level,
        "WORKER_HEALTH_HOST": "127.0.0.1",
    }
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "certq.worker",
        "--concurrency",
        str(concurrency),
        "--health-port",
        str(port),
        "--handler",
        "certq.worker.testing:noop",
    ]
    process = await asyncio.to_thread(
        subprocess.Popen, argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not get ready (exit code {process.poll()})")
            await asyncio.sleep(0.05)
    return Worker(process, port)


async def cleanup(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.unlink(key)


async def throughput(
    args: argparse.Namespace, client: aioredis.Redis, processes: int, concurrency: int, jobs: int
) -> tuple[float, float]:
    prefix = f"{{bw{uuid.uuid4().hex[:8]}}}"
    queue = Queue(client, QueueConfig(prefix=prefix, name=QUEUE))
    await queue.pause()
    await queue.enqueue_many((JobSpec({"n": n}) for n in range(jobs)), batch_size=1_000)
    workers = [await start_worker(args, prefix, concurrency) for _ in range(processes)]
    try:
        started = time.perf_counter()
        await queue.resume()
        while True:  # done when nothing is left to run (retention trims the completed list)
            counts = await queue.counts()
            if counts["waiting"] + counts["active"] + counts["delayed"] == 0:
                break
            await asyncio.sleep(0.02)
        assert counts["failed"] == 0, counts
        elapsed = time.perf_counter() - started
        rss = max(worker.rss_mb() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
        await cleanup(client, prefix)
    return jobs / elapsed, rss


async def idle(args: argparse.Namespace, client: aioredis.Redis) -> tuple[float, float]:
    prefix = f"{{bw{uuid.uuid4().hex[:8]}}}"
    worker = await start_worker(args, prefix, 3)
    try:
        await asyncio.sleep(2)  # let start-up settle
        cpu, wall = worker.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(args.idle_seconds)
        share = (worker.cpu_seconds() - cpu) / (time.perf_counter() - wall)
        return share * 100, worker.rss_mb()
    finally:
        worker.stop()
        await cleanup(client, prefix)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--log-level", default="WARNING", help="the workers' LOG_LEVEL (INFO logs 2 lines per job)")
    parser.add_argument("--cases", default="1x1,1x10,1x100,2x10,2x100", help="PROCESSESxCONCURRENCY,...")
    args = parser.parse_args()
    client = aioredis.from_url(args.redis_url)
    try:
        print(f"log level {args.log_level}; {args.jobs} no-op jobs per case")
        for case in filter(None, args.cases.split(",")):
            processes, concurrency = (int(part) for part in case.split("x"))
            jobs = args.jobs if concurrency > 1 else max(500, args.jobs // 5)
            rate, rss = await throughput(args, client, processes, concurrency, jobs)
            print(
                f"{processes} process(es) x concurrency {concurrency:>3}: {rate:8.0f} jobs/s "
                f"({jobs} jobs), worker RSS {rss:.0f} MB",
                flush=True,
            )
        if args.idle_seconds > 0:
            cpu, rss = await idle(args, client)
            print(
                f"idle (empty queue, concurrency 3): {cpu:.2f} % of one core over {args.idle_seconds:g} s, "
                f"RSS {rss:.0f} MB"
            )
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
