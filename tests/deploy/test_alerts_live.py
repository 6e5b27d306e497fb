"""The shipped alert rules, proved live: a real Prometheus scrapes a real API and real workers, and fires only
when something is really wrong.

Each test starts its own Prometheus on a loopback port (scrape and evaluation every second) with a copy of
deploy/prometheus/alerts.yml in which only `for:` is shortened, a minute to a second; every expression,
range and threshold is the shipped one. The scrape config is the shipped prometheus.yml with its intervals
shortened and its targets pointed at the processes this test started. Alerts are watched from the first
rule evaluation after every target was scraped (before it, `absent()` is true of any series). No test
calls the API's /ready or /health: its gauges must be true on their own.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from certq.embedded import EmbeddedServer, free_port, start_postgres, start_redis
from certq.queue import Queue, QueueConfig
from certq.store import Store
from tests.deploy.helpers import ROOT
from tests.support.databases import own_database
from tests.worker.helpers import QUEUE_NAME, SCRIPTED, WorkerProcess, wait_finished

_BESIDE_PYTHON = Path(sys.executable).parent / "prometheus"
PROMETHEUS = shutil.which("prometheus") or (str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="no prometheus server on PATH or beside this python: "
        "`apt-get install prometheus` (Debian), or let "
        "`python3 -m certq.bootstrap test` copy it from that package",
    ),
]

FOR_SCALE = 60
"""A minute of a shipped `for:` lasts a second here."""
SCRAPE = "1s"
QUIET_S = 8.0
"""How long a healthy stack is watched: past every shortened `for:` of the gauge alerts (2 s, 3 s) twice over."""
BACKING_SERVICES = ("CERTIFICATION_", "WORKER_", "LOG_", "BULL_", "API_", "REDIS_", "DATABASE_", "ALERT_")

T = TypeVar("T")


def shortened_rules() -> dict[str, Any]:
    """deploy/prometheus/alerts.yml with each `for:` divided by FOR_SCALE; nothing else changed."""
    rules: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{_seconds(rule['for']) * 1000 // FOR_SCALE}ms"
    return rules


def _seconds(duration: str) -> int:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration and parts is not None, f"unexpected duration {duration!r} in alerts.yml"
    hours, minutes, seconds = (int(value or 0) for value in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def scrape_config(rules: Path, api: list[str], workers: list[str]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, faster, pointed at this test's processes."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE, "evaluation_interval": SCRAPE}
    config["rule_files"] = [str(rules)]
    targets = {"certq-api": api, "certq-worker": workers}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    return config


async def until(
    check: Callable[[], Awaitable[T | None]],
    within: float,
    what: str,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Ask `check` (a process outside this one: nothing to await) until it answers something."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}" + (f"; {await explain()}" if explain else ""))
        await asyncio.sleep(0.25)


@dataclass
class Prometheus:
    """A Prometheus server this test started, read through its HTTP API."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    async def _get(self, path: str, **params: str) -> Any:
        assert self.process.poll() is None, f"prometheus exited; log:\n{self.log.read_text()[-3000:]}"
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.get(path, params=params)
        response.raise_for_status()
        return response.json()["data"]

    async def alerts(self, name: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (pending or firing), as /api/v1/alerts lists them."""
        found: list[dict[str, Any]] = (await self._get("/api/v1/alerts"))["alerts"]
        return [
            alert
            for alert in found
            if (name is None or alert["labels"]["alertname"] == name) and (state is None or alert["state"] == state)
        ]

    async def query(self, expr: str) -> dict[str, float]:
        """An instant vector, keyed by each sample's `instance` label."""
        result = (await self._get("/api/v1/query", query=expr))["result"]
        return {sample["metric"].get("instance", ""): float(sample["value"][1]) for sample in result}

    async def ready(self) -> bool | None:
        assert self.process.poll() is None, f"prometheus exited; log:\n{self.log.read_text()[-3000:]}"
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
                return True if (await client.get("/-/ready")).status_code == 200 else None
        except httpx.HTTPError:
            return None

    async def all_scraped(self, count: int) -> bool | None:
        """Every target answered a scrape, and the rules were evaluated after that (before, `absent()` holds)."""
        targets = (await self._get("/api/v1/targets"))["activeTargets"]
        if len(targets) != count or any(t["health"] != "up" for t in targets):
            return None
        scraped = max(_instant(t["lastScrape"]) + t["lastScrapeDuration"] for t in targets)
        groups = (await self._get("/api/v1/rules"))["groups"]
        return True if groups and min(_instant(g["lastEvaluation"]) for g in groups) > scraped else None

    async def wait(self, check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
        return await until(check, within, what, self.state)

    async def state(self) -> str:
        """What Prometheus sees now: each target's last scrape, and the active alerts."""
        targets = (await self._get("/api/v1/targets"))["activeTargets"]
        scrapes = [
            (t["labels"]["instance"], t["health"], round(t["lastScrapeDuration"], 3), t["lastError"]) for t in targets
        ]
        alerts = [(a["labels"]["alertname"], a["labels"].get("instance"), a["state"]) for a in await self.alerts()]
        return f"targets {scrapes}, alerts {alerts}"

    async def firing_for(self, name: str, instances: set[str]) -> set[str] | None:
        firing = {alert["labels"].get("instance", "") for alert in await self.alerts(name, "firing")}
        return firing if instances <= firing else None


@dataclass
class Stack:
    """An API and workers, all on the same Redis, database, prefix and queue, and a Prometheus scraping them."""

    api: subprocess.Popen[bytes]
    api_port: int
    workers: list[WorkerProcess]
    worker_ports: list[int]
    prometheus: Prometheus

    @property
    def api_instance(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    @property
    def worker_instances(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.worker_ports]


@dataclass
class Launcher:
    """Starts the processes of one test and kills whatever of them is still running at its end."""

    tmp_path: Path
    prefix: str
    children: list[subprocess.Popen[Any]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def _env(self, redis_url: str, database_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(BACKING_SERVICES)}
        env.update(
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            BULL_QUEUE_PREFIX=self.prefix,
            CERTIFICATION_QUEUE_NAME=QUEUE_NAME,
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            API_TOKENS="alerts-live-token:admin",
        )
        return env

    def _log(self, name: str) -> Any:
        handle = (self.tmp_path / f"{name}.log").open("wb")
        self.logs.append(handle)
        return handle

    async def _tail(self, name: str) -> str:
        return f"{name} log:\n{(self.tmp_path / f'{name}.log').read_text()[-3000:]}"

    async def stack(self, redis_url: str, database_url: str, *, workers: int = 1) -> Stack:
        """Start the API and `workers` workers, wait until each serves /live, then Prometheus on all of them."""
        api, api_port, started = self._spawn(self._env(redis_url, database_url), workers)
        ports = [await worker.started() for worker in started]
        for port in [api_port, *ports]:
            await until(
                functools.partial(_live, port),
                30,
                f"127.0.0.1:{port}/live answers 200",
                functools.partial(self._tail, "api"),
            )
        prometheus = self.prometheus([f"127.0.0.1:{api_port}"], [f"127.0.0.1:{port}" for port in ports])
        await until(prometheus.ready, 30, "prometheus is ready")
        await prometheus.wait(
            lambda: prometheus.all_scraped(1 + workers), 30, "prometheus scraped every target, then evaluated the rules"
        )
        return Stack(api, api_port, started, ports, prometheus)

    def _spawn(self, env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], int, list[WorkerProcess]]:
        api_port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "certq.api"],
            env={**env, "API_HOST": "127.0.0.1", "API_PORT": str(api_port)},
            cwd=self.tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=self._log("api"),
        )
        self.children.append(api)
        started = []
        for _ in range(workers):
            process = subprocess.Popen(
                [sys.executable, "-m", "certq.worker", "--concurrency", "1", "--handler", SCRIPTED],
                env={**env, "WORKER_HEALTH_HOST": "127.0.0.1", "WORKER_HEALTH_PORT": "0"},
                cwd=self.tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.children.append(process)
            started.append(WorkerProcess(process))
        return api, api_port, started

    def prometheus(self, api: list[str], workers: list[str]) -> Prometheus:
        assert PROMETHEUS is not None
        home = self.tmp_path / "prometheus"
        home.mkdir()
        (home / "alerts.yml").write_text(yaml.safe_dump(shortened_rules(), sort_keys=False))
        (home / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(home / "alerts.yml", api, workers)))
        port = free_port()
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log("prometheus"),
        )
        self.children.append(process)
        return Prometheus(process, f"http://127.0.0.1:{port}", self.tmp_path / "prometheus.log")

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
        for handle in self.logs:
            handle.close()


def _instant(stamp: str) -> float:
    """Prometheus' RFC 3339 time (nanoseconds, Z) as Unix seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")


async def _live(port: int) -> bool | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"http://127.0.0.1:{port}/live")
    except httpx.HTTPError:
        return None
    return True if response.status_code == 200 else None


@pytest.fixture
def launcher(tmp_path: Path, key_prefix: str) -> Iterator[Launcher]:
    launch = Launcher(tmp_path, key_prefix)
    try:
        yield launch
    finally:
        launch.close()


@pytest.fixture
async def private_postgres() -> AsyncIterator[EmbeddedServer]:
    """A migrated PostgreSQL of this test alone: stopping it must not touch the suite's shared server."""
    server = await asyncio.to_thread(start_postgres)
    try:
        store = await Store.connect(server.url, min_size=1, max_size=1)
        try:
            await store.migrate()
        finally:
            await store.close()
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def fresh_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A migrated database of this test only: the shared one holds other tests' verdicts, some of them
    expired, and a worker rightly alerts on those (CertqCertificationDegraded, kind expired)."""

    async with own_database(postgres_server_url, "alerts") as (_, url):
        yield url


async def test_a_healthy_idle_stack_fires_nothing(
    launcher: Launcher, redis_url: str, fresh_database_url: str, redis_client: aioredis.Redis
) -> None:
    stack = await launcher.stack(redis_url, fresh_database_url, workers=2)
    prometheus = stack.prometheus
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        assert await prometheus.alerts() == [], "a healthy idle stack has an active alert"
        await asyncio.sleep(0.5)

    everyone = {stack.api_instance, *stack.worker_instances}
    assert await prometheus.query("certq_database_up") == dict.fromkeys(everyone, 1.0)
    assert await prometheus.query("certq_redis_up") == dict.fromkeys(everyone, 1.0)
    fresh = await prometheus.query("time() - certq_redis_last_success_timestamp_seconds")
    assert fresh.keys() == everyone and max(fresh.values()) < 10
    # The counters the rules read exist at 0 in every worker before anything happened.
    for series in (
        "certq_stalled_jobs_recovered_total",
        "certq_lease_renewals_lost_total",
        'certq_jobs_total{outcome="failed"}',
        'certq_job_retries_total{category="TIMEOUT"}',
    ):
        assert await prometheus.query(series) == dict.fromkeys(stack.worker_instances, 0.0), series
    assert await prometheus.query("certq_api_enqueue_failures_total") == {stack.api_instance: 0.0}


async def test_a_stopped_postgresql_fires_database_down_for_the_api_and_the_worker(
    launcher: Launcher, redis_url: str, private_postgres: EmbeddedServer, redis_client: aioredis.Redis
) -> None:
    stack = await launcher.stack(redis_url, private_postgres.url)
    everyone = {stack.api_instance, *stack.worker_instances}
    prometheus = stack.prometheus
    await prometheus.wait(
        lambda: _equals(prometheus.query("certq_database_up"), dict.fromkeys(everyone, 1.0)),
        15,
        "every process reports PostgreSQL up",
    )
    assert await prometheus.alerts("CertqDatabaseDown") == []

    await asyncio.to_thread(private_postgres.stop)
    await prometheus.wait(
        lambda: prometheus.firing_for("CertqDatabaseDown", everyone),
        30,
        "CertqDatabaseDown fires for the API and the worker",
    )
    assert await prometheus.alerts("CertqWorkerLostRedis") == []


async def test_a_redis_outage_fires_lost_redis_for_every_process_and_clears_when_redis_is_back(
    launcher: Launcher, fresh_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_redis(workdir=tmp_path / "redis", port=port)
    try:
        stack = await launcher.stack(redis.url, fresh_database_url)
        everyone = {stack.api_instance, *stack.worker_instances}
        prometheus = stack.prometheus
        assert await prometheus.alerts("CertqWorkerLostRedis") == []

        redis.stop()
        down_at = time.monotonic()
        await prometheus.wait(
            lambda: prometheus.firing_for("CertqWorkerLostRedis", everyone),
            30,
            "CertqWorkerLostRedis fires for the API and the worker",
        )
        assert time.monotonic() - down_at < 20
        redis = start_redis(workdir=tmp_path / "redis", port=port)
        await prometheus.wait(
            lambda: _none_active(prometheus, "CertqWorkerLostRedis"), 30, "CertqWorkerLostRedis clears"
        )
        assert await prometheus.query("certq_redis_up") == dict.fromkeys(everyone, 1.0)
    finally:
        redis.stop()


async def test_a_worker_killed_mid_job_fires_stalled_jobs_once_another_worker_recovers_it(
    launcher: Launcher, redis_url: str, fresh_database_url: str, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    stack = await launcher.stack(redis_url, fresh_database_url, workers=2)
    prometheus = stack.prometheus
    queue = Queue(redis_client, QueueConfig(prefix=key_prefix, name=QUEUE_NAME))
    job = await queue.enqueue({"sleep": 3})

    async def running() -> WorkerProcess | None:
        return next((worker for worker in stack.workers if worker.events("job started")), None)

    victim = await until(running, 20, "a worker starts the job")
    [survivor] = [worker for worker in stack.workers if worker is not victim]
    victim.signal(signal.SIGKILL)

    [done] = await wait_finished(queue, [job.id], within=30)
    assert done.state.value == "completed" and done.result["pid"] == survivor.pid
    assert survivor.events("stalled jobs moved back to wait")
    [alert] = await prometheus.wait(
        lambda: _listed(prometheus.alerts("CertqStalledJobs", "firing")), 15, "CertqStalledJobs fires"
    )
    assert alert["labels"]["queue"] == QUEUE_NAME


async def _equals(got: Awaitable[dict[str, float]], want: dict[str, float]) -> bool | None:
    return True if await got == want else None


async def _listed(alerts: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    return await alerts or None


async def _none_active(prometheus: Prometheus, name: str) -> bool | None:
    return True if await prometheus.alerts(name) == [] else None
