"""A private certq on loopback for one chaos run: Redis (single or Sentinel), PostgreSQL, a model stub,
real worker processes (`python -m certq.worker` with the real certification handler), and the ledger.

Certifications are accepted the way the API accepts them (a committed run in PostgreSQL, then a queue
job); the ledger is read back from PostgreSQL, the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import httpx

from certq.chaos.cluster import ClusterServers
from certq.chaos.ledger import Ledger
from certq.chaos.sentinel import SentinelGroup
from certq.chaos.servers import await_for
from certq.connections import AnyRedis, connect_redis
from certq.embedded import EmbeddedServer, free_port, port_answers, start_postgres, start_redis
from certq.jobs import enqueue_runs, queue_config
from certq.queue import Queue
from certq.reconcile import reconcile
from certq.settings import Settings
from certq.store import Store
from certq.store.records import CertificationRecord, JobCreated

log = logging.getLogger("certq.chaos")

FINAL = frozenset({"CERTIFIED", "QUALITY_WARNING", "FAILED", "CANCELLED"})
VERDICTS = frozenset({"CERTIFIED", "QUALITY_WARNING", "FAILED"})
REGIONS_PER_MODEL = 8
RECONCILE_EVERY_S = 2.0
RECONCILE_AGE_S = 3.0
"""The chaos runs reconcile every 2 s for runs untouched 3 s (the worker's own pass is every ~60 s)."""

MODEL_DELAY_S = 0.03
"""Each model answer takes this long, so a certification (about 20 requests) lasts ~1 s, like a fast hosted
model; the fault then always finds certifications running and waiting, even with a small N."""

Topology = Literal["single", "sentinel", "cluster"]


@dataclass
class WorkerProcess:
    """One `python -m certq.worker` child with its own health port."""

    index: int
    health_port: int
    env: dict[str, str]
    workdir: Path
    concurrency: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "certq.worker",
            "--concurrency",
            str(self.concurrency),
            "--health-port",
            str(self.health_port),
            "--health-host",
            "127.0.0.1",
            "--shutdown-grace",
            "5",
        ]
        with open(self.workdir / f"worker-{self.index}.log", "ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, sig)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class ReadyWatch:
    """Polls every worker's /ready; remembers when any answered 503 (or nothing) and when all were back."""

    ports: list[int]
    samples: list[tuple[float, bool]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while not stop.is_set():
                oks = await asyncio.gather(*(self._ready(client, port) for port in self.ports))
                self.samples.append((time.time(), all(oks)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    @staticmethod
    async def _ready(client: httpx.AsyncClient, port: int) -> bool:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    def outage_after(self, at: float) -> tuple[bool, float | None]:
        """(was any worker not ready after `at`, seconds from `at` until all were ready again)."""
        after = [(when, ok) for when, ok in self.samples if when >= at]
        down = [when for when, ok in after if not ok]
        if not down:
            return False, None
        back = [when for when, ok in after if ok and when > down[-1]]
        return True, (back[0] - at) if back else None

    async def wait_recovered(self, at: float, within_s: float) -> None:
        """Until every worker answered ready after an outage that followed `at` (bounded)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            seen, back = self.outage_after(at)
            if not seen or back is not None:
                return
            await asyncio.sleep(0.2)


class World:
    """Start with `await World.start(...)`, always `await world.stop()`."""

    def __init__(self, root: Path, topology: Topology) -> None:
        self.root = root
        self.topology = topology
        self.redis_server: EmbeddedServer | None = None
        self.sentinels: SentinelGroup | None = None
        self.cluster: ClusterServers | None = None
        self.postgres: EmbeddedServer | None = None
        self.stub: subprocess.Popen[bytes] | None = None
        self.stub_port = 0
        self.api: subprocess.Popen[bytes] | None = None
        self.api_port = 0
        self.hang_file = root / "hang"
        self.workers: list[WorkerProcess] = []
        self.settings: Settings | None = None
        self.store: Store | None = None
        self.redis: AnyRedis | None = None
        self.queue: Queue | None = None
        self.requeued = 0
        self.job_ids: list[UUID] = []
        self.accepted: list[UUID] = []

    @classmethod
    async def start(
        cls,
        *,
        topology: Topology = "single",
        workers: int = 2,
        concurrency: int = 3,
        job_timeout_ms: int = 30_000,
        model_delay_s: float = MODEL_DELAY_S,
    ) -> World:
        world = cls(Path(tempfile.mkdtemp(prefix="certq-chaos-")), topology)
        try:
            await world._start(workers, concurrency, job_timeout_ms, model_delay_s)
        except BaseException:
            await world.stop()
            raise
        return world

    async def _start(self, workers: int, concurrency: int, job_timeout_ms: int, model_delay_s: float) -> None:
        env: dict[str, str] = {
            "BULL_QUEUE_PREFIX": "{chaos}",
            "CERTIFICATION_TIMEOUT": str(job_timeout_ms),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "CERTQ_ENV": "development",
        }
        if self.topology == "sentinel":
            self.sentinels = await asyncio.to_thread(SentinelGroup.start, 1000, self.root / "sentinel")
            env |= {"REDIS_SENTINELS": self.sentinels.sentinel_addresses, "REDIS_SENTINEL_MASTER": self.sentinels.name}
        elif self.topology == "cluster":
            self.cluster = await asyncio.to_thread(ClusterServers.start, 2000, self.root / "cluster")
            env["REDIS_CLUSTER_NODES"] = self.cluster.startup_nodes
        else:
            self.redis_server = await asyncio.to_thread(start_redis, self.root / "redis")
            env["REDIS_URL"] = self.redis_server.url
        self.postgres = await asyncio.to_thread(start_postgres, self.root / "postgres")
        env["DATABASE_URL"] = self.postgres.url
        self.settings = Settings.model_validate(env)
        self.store = await Store.connect(self.postgres.url, min_size=1, max_size=4)
        await self.store.migrate()
        self.redis = connect_redis(self.settings)
        self.queue = Queue(self.redis, queue_config(self.settings))
        self.stub_port = free_port()
        self.stub = _spawn(
            [
                sys.executable,
                "-m",
                "certq.chaos.model_stub",
                "--port",
                str(self.stub_port),
                "--hang-file",
                str(self.hang_file),
                "--delay",
                str(model_delay_s),
            ],
            self.root,
        )

        async def stub_up() -> bool:
            return port_answers("127.0.0.1", self.stub_port)

        await await_for(stub_up, 20, "the model stub did not open its port")
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "DATABASE_", "BULL_", "CERTIFICATION_", "WORKER_"))
        }
        child_env |= env
        for index in range(workers):
            worker = WorkerProcess(index, free_port(), child_env, self.root, concurrency)
            worker.start()
            self.workers.append(worker)
        self.api_port = free_port()
        self.api = _spawn_logged(
            [sys.executable, "-m", "certq.api"],
            self.root,
            self.root / "api.log",
            child_env | {"API_HOST": "127.0.0.1", "API_PORT": str(self.api_port), "API_TOKENS": "chaos"},
        )
        await self.wait_ready(60)

    async def wait_ready(self, within_s: float) -> None:
        watch = ReadyWatch([worker.health_port for worker in self.workers if worker.alive] + [self.api_port])
        async with httpx.AsyncClient(timeout=1.0) as client:

            async def all_ready() -> bool:
                return all(await asyncio.gather(*(watch._ready(client, port) for port in watch.ports)))

            await await_for(all_ready, within_s, "the workers did not become ready", period=0.2)

    def add_worker(self) -> WorkerProcess:
        template = self.workers[0]
        worker = WorkerProcess(len(self.workers), free_port(), template.env, self.root, template.concurrency)
        worker.start()
        self.workers.append(worker)
        return worker

    # -- certifications ---------------------------------------------------------------------------------

    async def submit(self, n: int) -> list[UUID]:
        """Accept `n` certifications as the API does: commit the runs, then enqueue them."""
        assert self.store is not None and self.queue is not None and self.settings is not None
        regions = [f"r{i}" for i in range(REGIONS_PER_MODEL)]
        pairs: list[tuple[UUID, str]] = []
        for index in range(math.ceil(n / REGIONS_PER_MODEL)):
            model = await self.store.create_model(
                name=f"stub-{len(self.accepted)}-{index}",
                provider="openai",
                api_model_id="stub-model",
                regions=regions,
                base_url=f"http://127.0.0.1:{self.stub_port}/v1",
            )
            pairs += [(model.id, region) for region in regions]  # type: ignore[union-attr]
        created = await self.store.create_job(type="MULTIPLE_MODELS", pairs=pairs[:n])
        assert isinstance(created, JobCreated) and created.job is not None
        self.job_ids.append(created.job.id)
        await enqueue_runs(self.queue, self.settings, created.certifications)
        ids = [ref.id for ref in created.certifications]
        self.accepted += ids
        return ids

    async def records(self) -> list[CertificationRecord]:
        assert self.store is not None
        out: list[CertificationRecord] = []
        for job_id in self.job_ids:
            out += await self.store.job_certifications(job_id)
        return out

    async def finished(self) -> int:
        return sum(1 for record in await self._records_quietly() if record.status in FINAL)

    async def _records_quietly(self) -> list[CertificationRecord]:
        try:
            return await self.records()
        except Exception as exc:  # PostgreSQL may be the thing we just broke
            log.info("ledger read failed: %r", exc)
            return []

    async def wait_finished(self, count: int, within_s: float) -> bool:
        """Until `count` runs are final (reconciling as the workers would, only more often); False at the deadline."""
        deadline = time.monotonic() + within_s
        next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        while time.monotonic() < deadline:
            if await self.finished() >= count:
                return True
            if time.monotonic() >= next_reconcile:
                await self.reconcile_once()
                next_reconcile = time.monotonic() + RECONCILE_EVERY_S
            await asyncio.sleep(0.25)
        return False

    async def reconcile_once(self) -> None:
        assert self.store is not None and self.queue is not None and self.settings is not None
        try:
            report = await reconcile(self.store, self.queue, self.settings, older_than_s=RECONCILE_AGE_S)
            self.requeued += report.requeued
        except Exception as exc:  # Redis or PostgreSQL may be down right now: next pass
            log.info("reconcile pass failed: %r", exc)

    async def ledger(
        self, scenario: str, accepted: list[UUID], fault_at: float | None, fault_over_at: float | None, elapsed_s: float
    ) -> Ledger:
        records = {record.id: record for record in await self.records()}
        assert self.queue is not None
        ledger = Ledger(scenario, accepted=len(accepted), elapsed_s=elapsed_s)
        statuses: Counter[str] = Counter()
        for cid in accepted:
            record = records.get(cid)
            if record is None:
                ledger.lost += 1
                continue
            statuses[record.status] += 1
            outcomes = [entry for entry in record.attempt_log if entry.get("outcome") in VERDICTS]
            if len(outcomes) > 1:
                ledger.finished_twice += 1
            if len(record.attempt_log) > 1:
                ledger.ran_twice += 1
            if record.status in FINAL:
                ledger.finished += 1
            elif await self._in_queue(str(cid)):
                ledger.stuck += 1
            else:
                ledger.lost += 1
        if fault_at is not None:
            over = fault_over_at or fault_at
            after = sorted(
                r.completed_at.timestamp()
                for r in records.values()
                if r.completed_at is not None and r.completed_at.timestamp() >= over
            )
            ledger.recover_s = (after[0] - fault_at) if after else None
        counted = 0
        assert self.store is not None
        for job_id in self.job_ids:
            job = await self.store.get_job(job_id)
            counted += job.processed_models if job is not None else 0
        ledger.notes = {
            "statuses": dict(statuses),
            "requeued_by_reconciler": self.requeued,
            "job_counter_processed": counted,
        }
        if counted > ledger.finished:
            ledger.finished_twice = max(ledger.finished_twice, counted - ledger.finished)
        return ledger

    async def _in_queue(self, job_id: str) -> bool:
        assert self.queue is not None
        with contextlib.suppress(Exception):
            return await self.queue.get(job_id) is not None
        return False

    # -- faults -------------------------------------------------------------------------------------------

    async def restart_redis_empty(self, down_s: float = 2.0) -> None:
        """SIGKILL the single Redis, leave it down `down_s`, start an empty one on the same port (no persistence)."""
        assert self.redis_server is not None and self.redis_server.process is not None
        port = int(self.redis_server.url.rsplit(":", 1)[1].split("/")[0])
        self.redis_server.process.kill()
        await asyncio.to_thread(self.redis_server.process.wait, 10)
        shutil.rmtree(self.root / "redis", ignore_errors=True)
        await asyncio.sleep(down_s)
        self.redis_server = await asyncio.to_thread(start_redis, self.root / "redis", port)

    async def restart_postgres(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, like a crash) and start again; crash recovery runs."""
        assert self.postgres is not None
        handle: Any = self.postgres.handle
        if handle is not None:
            pid = handle.get_pid()
            if pid:
                os.kill(pid, signal.SIGQUIT)

                async def gone() -> bool:
                    return handle.get_pid() is None or not _pid_alive(pid)

                await await_for(gone, 30, "postgres did not stop")
            await asyncio.to_thread(handle.ensure_postgres_running)
            return
        process = self.postgres.process
        assert process is not None
        args = process.args
        process.send_signal(signal.SIGQUIT)
        await asyncio.to_thread(process.wait, 30)
        self.postgres.process = _spawn(list(args), self.root)  # type: ignore[arg-type]

    def hang_provider(self) -> None:
        self.hang_file.write_text("hang")

    def release_provider(self) -> None:
        self.hang_file.unlink(missing_ok=True)

    # -- teardown -----------------------------------------------------------------------------------------

    async def stop(self) -> None:
        self.release_provider()
        for worker in self.workers:
            worker.signal(signal.SIGCONT)
        await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in self.workers))
        for child in (self.api,):
            if child is not None and child.poll() is None:
                child.terminate()
                await asyncio.to_thread(child.wait, 15)
        if self.stub is not None and self.stub.poll() is None:
            self.stub.terminate()
            self.stub.wait(timeout=10)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()
        for server in (self.redis_server, self.postgres):
            if server is not None:
                await asyncio.to_thread(server.stop)
        if self.sentinels is not None:
            await asyncio.to_thread(self.sentinels.stop)
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        shutil.rmtree(self.root, ignore_errors=True)


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a Ctrl-C of the drill does not reach it; stop() ends it)."""
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _spawn_logged(args: list[str], cwd: Path, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
