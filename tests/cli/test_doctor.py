"""`doctor` names each problem in plain words and exits non-zero only when something is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from certq.embedded import free_port
from certq.queue import Consumer, Queue

Run = Callable[..., Any]
OnQueue = Callable[..., Any]


async def _one_waiting(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue({"modelId": "m"}, job_id="w1")


async def _worker_heartbeat(queue: Queue, consumer: Consumer) -> None:
    await consumer.heartbeat([], {"host": "box", "pid": 1, "concurrency": 3, "active": 1})


def _findings(result: Any) -> dict[tuple[str, str], str]:
    return {(f["level"], f["area"]): f["message"] for f in result.json()}


def test_doctor_passes_with_a_migrated_database_and_an_idle_queue(
    cli_env: str, run_cli: Run, migrated_database_url: str, on_queue: OnQueue
) -> None:
    on_queue(_worker_heartbeat)
    result = run_cli("doctor", "--database-url", migrated_database_url)
    assert result.code == 0, result.out
    assert "ok    schema" in result.out and "1 alive (heartbeats), 1/3 slots busy" in result.out
    assert "everything certq needs is in place" in result.out


def test_doctor_says_to_migrate_a_database_without_schema(cli_env: str, run_cli: Run, empty_database_url: str) -> None:
    result = run_cli("doctor", "--json", "--database-url", empty_database_url)
    assert result.code == 1
    assert "run `certq migrate`" in _findings(result)[("FAIL", "schema")]


def test_doctor_fails_when_jobs_wait_and_no_worker_is_alive(
    cli_env: str, run_cli: Run, migrated_database_url: str, on_queue: OnQueue
) -> None:
    on_queue(_one_waiting)
    result = run_cli("doctor", "--json", "--database-url", migrated_database_url)
    assert result.code == 1
    message = _findings(result)[("FAIL", "workers")]
    assert "no worker heartbeat" in message and "1 waiting job(s)" in message


def test_doctor_warns_about_a_paused_queue(
    cli_env: str, run_cli: Run, migrated_database_url: str, on_queue: OnQueue
) -> None:
    on_queue(_worker_heartbeat)
    assert run_cli("pause").code == 0
    result = run_cli("doctor", "--json", "--database-url", migrated_database_url)
    assert result.code == 0
    assert "`certq resume`" in _findings(result)[("warn", "queue")]


def test_doctor_reports_unreachable_servers_without_a_traceback(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli("doctor", "--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert result.code == 1
    assert "FAIL  redis      cannot reach Redis" in result.out
    assert "FAIL  postgres   cannot reach PostgreSQL" in result.out
    assert "Traceback" not in result.out + result.err


def test_doctor_reports_an_unreachable_redis_cluster_without_a_traceback(
    run_cli: Run, cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_CLUSTER_NODES", f"127.0.0.1:{free_port()}")
    result = run_cli("doctor", "--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert result.code == 1
    assert "FAIL  redis      cannot reach Redis at Redis Cluster" in result.out
    assert "Traceback" not in result.out + result.err


def test_healthcheck_fails_when_nothing_answers(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_HEALTH_PORT", str(free_port()))
    monkeypatch.setenv("API_PORT", str(free_port()))
    result = run_cli("healthcheck", "--timeout", "0.5")
    assert result.code == 5
    assert "nothing answered 200 on /live" in result.err and "ConnectError" in result.err


def test_doctor_reports_a_live_worker_that_is_not_ready(
    cli_env: str, run_cli: Run, migrated_database_url: str, on_queue: OnQueue, fake_health: Any
) -> None:
    fake_health.statuses["/ready"] = (503, b'{"ready": false, "reason": "PostgreSQL is unreachable"}')

    async def heartbeat(queue: Queue, consumer: Consumer) -> None:
        await consumer.heartbeat(
            [], {"host": "127.0.0.1", "healthPort": fake_health.port, "concurrency": 3, "active": 0}
        )

    on_queue(heartbeat)
    result = run_cli("doctor", "--json", "--database-url", migrated_database_url)
    message = _findings(result)[("warn", "workers")]
    assert "not ready: PostgreSQL is unreachable" in message


def test_healthcheck_passes_when_the_worker_port_answers_live(
    run_cli: Run, monkeypatch: pytest.MonkeyPatch, fake_health: Any
) -> None:
    fake_health.statuses["/live"] = (200, b'{"alive": true}')
    monkeypatch.setenv("WORKER_HEALTH_PORT", str(fake_health.port))
    monkeypatch.setenv("API_PORT", str(free_port()))
    assert run_cli("healthcheck").code == 0


def test_schema_wait_returns_at_once_when_the_schema_is_current(run_cli: Run, migrated_database_url: str) -> None:
    result = run_cli("schema-wait", "--database-url", migrated_database_url, "--timeout", "5")
    assert result.code == 0 and "is in place" in result.out


def test_schema_wait_gives_up_on_a_database_without_schema(run_cli: Run, empty_database_url: str) -> None:
    result = run_cli("schema-wait", "--database-url", empty_database_url, "--timeout", "0.5")
    assert result.code == 1
    assert "schema not ready after 0.5s" in result.err and "run `certq migrate`" in result.err


def test_doctor_fails_a_redis_that_may_evict_jobs_or_lose_them_on_restart(
    run_cli: Run, migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certq.embedded import start_redis

    server = start_redis(extra_args=["--maxmemory-policy", "allkeys-lru"])
    try:
        monkeypatch.setenv("REDIS_URL", server.url)
        monkeypatch.setenv("CERTQ_ENV", "production")
        monkeypatch.setenv("API_TOKENS", "t" * 32)
        monkeypatch.setenv("BULL_BOARD_PASSWORD", "not-the-default")
        result = run_cli("doctor", "--json", "--database-url", migrated_database_url)
    finally:
        server.stop()
    assert result.code == 1
    redis_failures = [f["message"] for f in result.json() if f["level"] == "FAIL" and f["area"] == "redis"]
    assert any("maxmemory-policy is allkeys-lru" in m for m in redis_failures)
    assert any("AOF persistence is off" in m for m in redis_failures)


async def test_doctor_checks_the_api_when_asked(
    cli_env: str, run_cli: Run, api_server: Any, migrated_database_url: str
) -> None:
    import asyncio

    result = await asyncio.to_thread(
        run_cli, "doctor", "--json", "--database-url", migrated_database_url, "--api-url", api_server.url
    )
    assert _findings(result)[("ok", "api")] == f"{api_server.url} is ready"
    down = await asyncio.to_thread(
        run_cli,
        "doctor",
        "--json",
        "--database-url",
        migrated_database_url,
        "--api-url",
        f"http://127.0.0.1:{free_port()}",
    )
    assert down.code == 1 and "no answer from" in _findings(down)[("FAIL", "api")]
