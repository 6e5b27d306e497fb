"""Redis or PostgreSQL going away and coming back: the worker turns unready, reconnects, and carries on."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from certq.certification import Verdict
from certq.embedded import EmbeddedServer, free_port, start_redis
from certq.jobs import job_payload
from certq.metrics import Metrics
from certq.queue import Consumer, Job, Queue, QueueConfig, Runner
from certq.store import CertificationRecord, CertificationRef, JobCreated, ModelRecord, Store
from certq.worker.dependencies import Database
from certq.worker.handler import CertificationHandler
from certq.worker.verdicts import PROGRESS_FIELD, VerdictSeal
from tests.certification.stubs import OpenAIHandler, serve
from tests.support.databases import own_database as own_database_of
from tests.worker.helpers import QUEUE_NAME, SpawnWorker, http_get, wait_finished, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# Persisted on every write, so a restart keeps the queue (as a production Redis with AOF would).
AOF = ["--appendonly", "yes", "--appendfsync", "always"]


class PrivateRedis:
    """A Redis of this test alone, restartable on the same port with the same data directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.server: EmbeddedServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = start_redis(workdir=self.workdir, port=self.port, extra_args=AOF)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_redis_restart_mid_run_loses_no_job_and_the_worker_takes_jobs_again(
    spawn_worker: SpawnWorker, private_redis: PrivateRedis, key_prefix: str
) -> None:
    worker = spawn_worker("--concurrency", "2", env={"REDIS_URL": private_redis.url})
    port = await worker.started()
    await wait_status(port, "/ready", 200)
    config = QueueConfig(prefix=key_prefix, name=QUEUE_NAME)
    client = aioredis.from_url(private_redis.url)
    queue = Queue(client, config)
    before = [await queue.enqueue({"sleep": 0}) for _ in range(4)]
    await wait_finished(queue, [job.id for job in before])
    in_flight = await queue.enqueue({"sleep": 1.0})
    await worker.wait_log("job started", count=5)
    await client.aclose()

    private_redis.stop()
    unready = await wait_status(port, "/ready", 503)
    assert "redis" in unready.json()["reason"]
    assert (await http_get(port, "/health")).status_code == 503
    assert (await http_get(port, "/live")).status_code == 200
    private_redis.start()

    await wait_status(port, "/ready", 200, within=30)
    client = aioredis.from_url(private_redis.url)
    try:
        queue = Queue(client, config)
        after = [await queue.enqueue({"sleep": 0}) for _ in range(4)]
        done = await wait_finished(queue, [job.id for job in [*before, in_flight, *after]], within=30)
        assert {job.state.value for job in done} == {"completed"}
        assert worker.process.poll() is None
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    finally:
        await client.aclose()


class TcpProxy:
    """127.0.0.1:<port> forwarded to `target`; `cut()` drops every connection and stops listening."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.accepting = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.accepting = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if not self.accepting:  # accepted just before a cut: it must not outlive it
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self.writers |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.close()
            self.writers.discard(writer)

    async def cut(self) -> None:
        self.accepting = False
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()


async def test_postgresql_going_away_and_back_fails_no_job_and_the_worker_carries_on(
    spawn_worker: SpawnWorker, queue: Queue, migrated_database_url: str
) -> None:
    parts = urlsplit(migrated_database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    try:
        worker = spawn_worker("--concurrency", "1", env={"DATABASE_URL": proxied})
        port = await worker.started()
        await wait_status(port, "/ready", 200)
        first = await queue.enqueue({"sleep": 0})
        await wait_finished(queue, [first.id])

        await proxy.cut()
        unready = await wait_status(port, "/ready", 503)
        assert "postgresql" in unready.json()["reason"]
        during = await queue.enqueue({"sleep": 0})
        await worker.wait_log("job started", count=2)  # claimed, and held until PostgreSQL is back
        restored_at = time.time()
        await proxy.start()

        await wait_status(port, "/ready", 200, within=30)
        [done] = await wait_finished(queue, [during.id])
        assert done.state.value == "completed" and done.errors == []
        assert done.result["started"] >= restored_at  # held while PostgreSQL was away, not failed
        assert len(worker.events("postgresql unreachable")) == 1 and len(worker.events("postgresql reachable")) == 2
        assert worker.process.poll() is None
        worker.signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    finally:
        await proxy.cut()


async def test_a_job_claimed_while_postgresql_stays_away_goes_back_to_wait_unburnt(
    redis_url: str, key_prefix: str, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certq.settings import load_settings
    from certq.worker import daemon
    from certq.worker.daemon import Worker

    monkeypatch.setattr(daemon, "DATABASE_WAIT_S", 0.2)
    monkeypatch.setattr(daemon, "STARTUP_DATABASE_WAIT_S", 0.0)
    ran: list[str] = []

    async def handle(active: Any) -> None:
        ran.append(active.job.id)

    settings = load_settings(
        redis_url=redis_url,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        queue_prefix=key_prefix,
        queue_name=QUEUE_NAME,
        worker_health_host="127.0.0.1",
        worker_health_port=0,
        concurrency=1,
    )
    worker = Worker(settings, handler=handle, registry=CollectorRegistry())
    running = asyncio.create_task(worker.run())
    job = await queue.enqueue({"n": 1}, max_attempts=1)
    released, last = 0, "0"
    async with asyncio.timeout(20):
        while released < 2:  # held, handed back, claimed again, handed back again
            entries = await queue.events(last, 100, block_ms=500)
            released += sum(1 for _, e in entries if e["event"] == "released" and e["jobId"] == job.id)
            last = entries[-1][0] if entries else last
    worker.request_stop("test")
    assert await running == 0
    after = await queue.get(job.id)
    assert after is not None and after.state.value == "waiting" and after.attempts_counted == 0
    assert ran == []


async def test_a_worker_started_without_redis_stays_up_unready_and_stops_cleanly(spawn_worker: SpawnWorker) -> None:
    worker = spawn_worker("--concurrency", "1", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    port = await worker.started()
    health = await wait_status(port, "/health", 503)
    assert health.json()["status"] == "unhealthy" and "redis" in health.json()["reason"]
    assert "redis" in (await http_get(port, "/ready")).json()["reason"]
    assert (await http_get(port, "/live")).status_code == 200
    metrics = await http_get(port, "/metrics")
    assert metrics.status_code == 200 and "certq_redis_up 0.0" in metrics.text
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


async def test_a_worker_whose_redis_cluster_is_unreachable_stays_up_unready_without_tracebacks(
    spawn_worker: SpawnWorker,
) -> None:
    worker = spawn_worker("--concurrency", "1", env={"REDIS_CLUSTER_NODES": f"127.0.0.1:{free_port()}"})
    port = await worker.started()
    health = await wait_status(port, "/health", 503)
    assert "redis" in health.json()["reason"]
    deadline = time.monotonic() + 20
    while sum("redis error in claim" in line for line in worker.raw) < 2:  # the claim loop retried
        assert time.monotonic() < deadline, "".join(worker.raw)
        await asyncio.sleep(0.1)
    assert len(worker.events("redis unreachable")) == 1
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert not [line for line in worker.raw if "Traceback" in line]


@pytest.fixture
async def own_database(postgres_server_url: str) -> AsyncIterator[tuple[str, str]]:
    """A migrated database of this test only, since the test makes it read-only: (name, url)."""
    async with own_database_of(postgres_server_url, "ro") as made:
        yield made


async def set_read_only(server_url: str, name: str, on: bool) -> None:
    """Every new session of the database is read-only (or not again); the sessions open now are ended."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await admin.close()


async def read_certification(url: str, certification_id: str) -> CertificationRecord:
    store = await Store.connect(url, min_size=1, max_size=1)  # a fresh session: the old ones were ended
    try:
        record = await store.get_certification(certification_id)
    finally:
        await store.close()
    assert record is not None
    return record


async def until_kept(queue: Queue, job_id: str, within: float = 30.0) -> Job:
    """The job once it is back in wait with a verdict kept in its progress."""
    async with asyncio.timeout(within):
        while True:
            job = await queue.get(job_id)
            if (
                job is not None
                and job.state.value == "waiting"
                and isinstance(job.progress, dict)
                and PROGRESS_FIELD in job.progress
            ):
                return job
            await asyncio.sleep(0.05)


async def test_a_read_only_database_mid_run_fails_nothing_stops_claims_and_the_kept_verdict_is_written_later(
    spawn_worker: SpawnWorker, queue: Queue, own_database: tuple[str, str], postgres_server_url: str
) -> None:
    name, url = own_database
    store = await Store.connect(url, min_size=1, max_size=2)
    refs: list[CertificationRef] = []
    models: list[ModelRecord] = []
    with serve(OpenAIHandler, delay_s=30) as (root, stub):  # each request waits for stub.release
        for n in range(2):
            model = await store.create_model(
                name=f"ro-{n}-{uuid.uuid4().hex[:6]}",
                provider="openai",
                api_model_id=f"tiny-ro-{n}",
                base_url=f"{root}/v1",
                regions=["local"],
                api_key_env="CERTQ_RO_KEY",
            )
            assert isinstance(model, ModelRecord)
            created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
            assert isinstance(created, JobCreated)
            models.append(model)
            refs.extend(created.certifications)
        await store.close()
        first, second = (str(ref.id) for ref in refs)

        def probes_of(model: ModelRecord) -> int:
            return sum(1 for request in stub.requests if request.body.get("model") == model.api_model_id)

        worker = spawn_worker(
            "--concurrency",
            "1",
            handler=None,
            env={"DATABASE_URL": url, "CERTQ_RO_KEY": "sk-ro", "MODEL_CREDENTIALS": "CERTQ_RO_KEY@127.0.0.1"},
        )
        port = await worker.started()
        await wait_status(port, "/ready", 200)
        await queue.enqueue(job_payload(refs[0]), job_id=first, max_attempts=2, group="local")
        assert await asyncio.to_thread(stub.received.wait, 20)  # probing the model now

        await set_read_only(postgres_server_url, name, True)
        stub.release.set()  # the probes finish; PostgreSQL refuses the verdict
        # The sessions were ended too, so the first write may meet a dead connection ("unreachable") and the
        # kept verdict's next attempt the read-only server.
        unready = await wait_status(port, "/ready", 503, within=30, reason="postgresql refuses writes")
        assert unready.json()["reason"].startswith("postgresql refuses writes")
        held = await until_kept(queue, first)
        assert held.attempts_counted == 0 and held.errors == [] and held.last_error is None  # not failed
        kept = held.progress[PROGRESS_FIELD]["verdict"]
        assert kept["status"] == "CERTIFIED" and kept["testResults"]
        probed = probes_of(models[0])
        assert probed > 0 and (await read_certification(url, first)).status != "FAILED"

        claims = len(worker.events("job started"))
        await queue.enqueue(job_payload(refs[1]), job_id=second, max_attempts=2, group="local")
        last, deadline = "0", time.monotonic() + 3  # a ready worker claims a waiting job at once
        while time.monotonic() < deadline:
            entries = await queue.events(last, 1000, block_ms=300)
            last = entries[-1][0] if entries else last
        assert len(worker.events("job started")) == claims
        assert [job.state.value for job in await queue.get_many([first, second])] == ["waiting", "waiting"]
        assert (await http_get(port, "/ready")).status_code == 503

        await set_read_only(postgres_server_url, name, False)
        await wait_status(port, "/ready", 200, within=30)
        done = await wait_finished(queue, [first, second], within=60)
        assert [job.state.value for job in done] == ["completed", "completed"], [job.last_error for job in done]
        record = await read_certification(url, first)
        assert record.status == "CERTIFIED" and record.test_results == kept["testResults"]
        assert probes_of(models[0]) == probed  # written from the kept verdict, not probed again
        assert PROGRESS_FIELD not in done[0].progress
        assert (await read_certification(url, second)).status == "CERTIFIED" and probes_of(models[1]) > 0
        assert worker.events("writing the verdict kept by an earlier attempt; the model is not probed again")
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


def probed_verdict(score: int) -> Verdict:
    return Verdict(
        status="CERTIFIED",
        passed=True,
        score=score,
        rating="A",
        test_results=[{"name": "hello", "passed": True, "score": score}],
        metrics={},
        error_category=None,
        error_message=None,
        retryable=False,
        duration_ms=5,
        started_at="2026-01-01T00:00:00.000Z",
        finished_at="2026-01-01T00:00:00.005Z",
        suite_version="test",
        provider="openai",
        api_model_id="tiny",
        region="local",
    )


@pytest.mark.parametrize("kept_by", ["this-worker", "edited-in-redis", "another-key", "another-certification"])
async def test_only_a_verdict_this_database_url_sealed_for_the_run_is_written_without_probing(
    kept_by: str,
    store: Store,
    redis_client: aioredis.Redis,
    key_prefix: str,
    migrated_database_url: str,
    make_model: Callable[..., Awaitable[Any]],
) -> None:
    config = QueueConfig(prefix=key_prefix, name=QUEUE_NAME)
    queue = Queue(redis_client, config)
    model = await make_model()
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    assert isinstance(created, JobCreated)
    [ref] = created.certifications
    await queue.enqueue(job_payload(ref), job_id=str(ref.id), max_attempts=2)
    kept = probed_verdict(100).to_json()
    sealed = VerdictSeal("another database" if kept_by == "another-key" else migrated_database_url).seal(
        str(uuid.uuid4()) if kept_by == "another-certification" else str(ref.id), kept
    )
    assert sealed is not None
    if kept_by == "edited-in-redis":
        sealed["verdict"]["score"] = 99
    if kept_by == "another-certification":
        sealed["certificationId"] = str(ref.id)
    # An earlier attempt kept it and handed the job back (as a worker does when PostgreSQL refuses the write).
    consumer = Consumer(redis_client, config)
    [lease] = (await consumer.claim()).leases
    await consumer.progress(lease, {"done": 9, "total": 9, PROGRESS_FIELD: sealed})
    assert await consumer.release(lease)

    probes: list[int] = []

    async def certify(*args: Any, **kwargs: Any) -> Verdict:
        probes.append(1)
        return probed_verdict(80)

    database = Database(migrated_database_url, Metrics(CollectorRegistry()))
    database.store = store
    database.up.set()
    handler = CertificationHandler(database, certify=certify)
    await Runner(redis_client, config, handler, concurrency=1, burst=True).run()

    [job] = await wait_finished(queue, [str(ref.id)])
    record = await store.get_certification(ref.id)
    assert job.state.value == "completed" and record is not None and record.status == "CERTIFIED"
    if kept_by == "this-worker":
        assert probes == [] and record.score == 100 and record.test_results == kept["testResults"]
        assert job.progress == {"done": 9, "total": 9}  # the kept verdict is dropped once written
    else:
        assert probes == [1] and record.score == 80
