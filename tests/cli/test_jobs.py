"""Queue admin commands against the real Redis: what they print, what they change, how they exit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from certq.cli import EXIT_USAGE
from certq.cli.common import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, parse_duration_ms
from certq.embedded import free_port
from certq.queue import Consumer, Queue
from certq.store import ModelRecord, Store

Run = Callable[..., Any]
OnQueue = Callable[..., Any]


def _payload(n: int) -> dict[str, Any]:
    return {"certificationId": f"c{n}", "jobId": f"j{n}", "modelId": f"m{n}", "region": "us-east-1"}


async def _two_waiting(queue: Queue, consumer: Consumer) -> list[str]:
    return [(await queue.enqueue(_payload(n), job_id=f"job-{n}", group="us-east-1")).id for n in (1, 2)]


async def _one_completed_one_failed(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue(_payload(1), job_id="done-1")
    await queue.enqueue(_payload(2), job_id="bad-2", max_attempts=1)
    claim = await consumer.claim(2)
    for lease in claim.leases:
        if lease.job.id == "done-1":
            await consumer.complete(lease, {"ok": True})
        else:
            await consumer.fail(lease, "provider said no", final=True, category="AUTH_ERROR")


def test_stats_counts_jobs_per_state_as_json(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_two_waiting)
    result = run_cli("stats", "--json")
    assert result.code == 0
    report = result.json()
    assert report["counts"]["waiting"] == 2 and report["counts"]["active"] == 0
    assert report["paused"] is False and report["workers"] == []


def test_stats_table_names_the_queue(cli_env: str, run_cli: Run) -> None:
    result = run_cli("stats")
    assert result.code == 0
    assert f"{cli_env}:model-certification (running)" in result.out
    assert "workers alive: 0" in result.out


def test_jobs_lists_waiting_jobs_with_model_and_region(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_two_waiting)
    result = run_cli("jobs", "--state", "waiting")
    assert result.code == 0
    assert "job-1" in result.out and "job-2" in result.out and "us-east-1" in result.out
    assert [job["id"] for job in run_cli("jobs", "--state", "waiting", "--json").json()] == ["job-1", "job-2"]


def test_jobs_says_when_a_state_is_empty(cli_env: str, run_cli: Run) -> None:
    result = run_cli("jobs", "--state", "failed")
    assert (result.code, result.out.strip()) == (0, "no failed jobs")


def test_job_shows_the_error_of_each_failed_attempt(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_one_completed_one_failed)
    result = run_cli("job", "bad-2")
    assert result.code == 1  # it failed
    assert "certification bad-2: failed in the queue" in result.out
    assert "AUTH_ERROR" in result.out and "provider said no" in result.out
    assert run_cli("job", "done-1", "--json").json()["state"] == "completed"


def test_job_that_does_not_exist_exits_not_found(cli_env: str, run_cli: Run) -> None:
    result = run_cli("job", "nope")
    assert result.code == EXIT_NOT_FOUND
    assert "no certification or job with id 'nope'" in result.err and "Traceback" not in result.err


def test_a_uuid_neither_queued_nor_stored_exits_not_found_naming_both_places(
    cli_env: str, run_cli: Run, migrated_database_url: str
) -> None:
    result = run_cli("job", str(uuid.uuid4()), "--database-url", migrated_database_url)
    assert result.code == EXIT_NOT_FOUND
    assert "neither in queue" in result.err and "nor in PostgreSQL" in result.err


def test_job_prints_payload_progress_and_result_as_json_not_python_reprs(
    cli_env: str, run_cli: Run, on_queue: OnQueue
) -> None:
    async def done_with_a_result(queue: Queue, consumer: Consumer) -> None:
        await queue.enqueue(_payload(5), job_id="done-5")
        [lease] = (await consumer.claim(1)).leases
        await consumer.complete(lease, {"status": "CERTIFIED", "passed": True, "score": None})

    on_queue(done_with_a_result)
    fields = {
        line.split(None, 1)[0]: line.split(None, 1)[1]
        for line in run_cli("job", "done-5").out.splitlines()[1:]
        if line.startswith("  ") and len(line.split(None, 1)) == 2
    }
    assert json.loads(fields["payload"]) == _payload(5)
    assert json.loads(fields["result"]) == {"status": "CERTIFIED", "passed": True, "score": None}


def test_retry_failed_moves_failed_jobs_back_to_waiting(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_one_completed_one_failed)
    result = run_cli("retry-failed")
    assert result.code == 0 and "moved 1 failed job(s)" in result.out

    async def states(queue: Queue, consumer: Consumer) -> dict[str, int]:
        return await queue.counts()

    counts = on_queue(states)
    assert counts["failed"] == 0 and counts["waiting"] == 1


def test_retry_failed_of_a_job_that_has_not_failed_exits_non_zero(
    cli_env: str, run_cli: Run, on_queue: OnQueue
) -> None:
    on_queue(_two_waiting)
    result = run_cli("retry-failed", "job-1")
    assert result.code == 1
    assert "only failed jobs can be retried" in result.err


def test_clean_removes_finished_jobs_older_than_the_age(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_one_completed_one_failed)
    assert "removed 0 completed" in run_cli("clean", "--state", "completed", "--older-than", "7d").out
    result = run_cli("clean", "--state", "completed", "--older-than", "0")
    assert result.code == 0 and "removed 1 completed" in result.out

    async def jobs(queue: Queue, consumer: Consumer) -> tuple[object, object]:
        return await queue.get("done-1"), await queue.get("bad-2")

    done, bad = on_queue(jobs)
    assert done is None and bad is not None


def test_clean_refuses_a_bad_age_with_a_usage_error(cli_env: str, run_cli: Run) -> None:
    result = run_cli("clean", "--state", "completed", "--older-than", "a week")
    assert result.code == 2
    assert "not a duration" in result.err


def test_pause_and_resume_flip_the_queue_flag(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    async def paused(queue: Queue, consumer: Consumer) -> bool:
        return await queue.is_paused()

    assert run_cli("pause").code == 0
    assert on_queue(paused) is True
    assert "(PAUSED)" in run_cli("stats").out
    assert run_cli("resume").code == 0
    assert on_queue(paused) is False


def test_unreachable_redis_is_reported_in_plain_words(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli("stats")
    assert result.code == EXIT_UNAVAILABLE
    assert "cannot reach Redis at redis://127.0.0.1:" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("command", ["stats", "pause", "jobs"])
@pytest.mark.parametrize("nodes", ["unreachable", "not a cluster"])
def test_an_unusable_redis_cluster_is_reported_like_any_unreachable_redis(
    run_cli: Run, cli_env: str, monkeypatch: pytest.MonkeyPatch, redis_url: str, command: str, nodes: str
) -> None:
    address = f"127.0.0.1:{free_port()}" if nodes == "unreachable" else redis_url.split("//")[1].split("/")[0]
    monkeypatch.setenv("REDIS_CLUSTER_NODES", address)
    result = run_cli(command)
    assert result.code == EXIT_UNAVAILABLE
    assert f"cannot reach Redis at Redis Cluster {address}" in result.err and "REDIS_CLUSTER_NODES" in result.err
    assert "Traceback" not in result.err


def test_invalid_configuration_exits_3_naming_the_variable(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTIFICATION_CONCURRENCY", "0")
    result = run_cli("stats")
    assert result.code == 3
    assert "CERTIFICATION_CONCURRENCY" in result.err


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 604_800_000),
        ("90s", 90_000),
        ("15m", 900_000),
        ("0", 0),
        ("1.5h", 5_400_000),
        ("250ms", 250),
        ("2w", 1_209_600_000),
    ],
)
def test_durations_read_like_operators_write_them(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_events_shows_a_jobs_life_oldest_first(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_one_completed_one_failed)
    result = run_cli("events", "--json", "--last", "50")
    assert result.code == 0
    events = [json.loads(line) for line in result.out.splitlines()]
    done = [e["event"] for e in events if e["jobId"] == "done-1"]
    assert done[0] == "added" and done[-1] == "completed" and "active" in done
    assert [e for e in events if e["jobId"] == "bad-2"][-1]["event"] == "failed"


def test_events_follow_prints_new_events_until_interrupted(cli_env: str, redis_url: str, on_queue: OnQueue) -> None:
    import os
    import select
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "REDIS_URL": redis_url, "BULL_QUEUE_PREFIX": cli_env}
    follower = subprocess.Popen(
        [sys.executable, "-m", "certq", "events", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        deadline = time.monotonic() + 20
        seen = ""
        count = 0
        while "late-" not in seen and time.monotonic() < deadline:
            count += 1

            async def add(queue: Queue, consumer: Consumer, n: int = count) -> None:
                await queue.enqueue(_payload(n), job_id=f"late-{n}")

            on_queue(add)
            ready, _, _ = select.select([follower.stdout], [], [], 0.5)
            if ready:
                seen += follower.stdout.readline()
        assert "added" in seen and "late-" in seen
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait(10)
    assert follower.returncode == 130


def test_delayed_jobs_are_listed_with_their_due_time(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    async def later(queue: Queue, consumer: Consumer) -> None:
        await queue.enqueue(_payload(9), job_id="later-9", delay_ms=3_600_000)

    on_queue(later)
    result = run_cli("jobs", "--state", "delayed")
    assert result.code == 0
    header, _, row = result.out.splitlines()[:3]
    assert "due" in header.split() and row.startswith("later-9")
    assert "  due        " in run_cli("job", "later-9").out


@pytest.mark.parametrize(("variable", "value"), [("REDIS_URL", "localhost:6379"), ("DATABASE_URL", "certq")])
def test_a_url_without_its_scheme_is_a_configuration_error(
    run_cli: Run, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = run_cli("doctor")
    assert result.code == 3
    assert variable in result.err and "must start with" in result.err and "Traceback" not in result.err


async def _failed_with_terminal_escapes(queue: Queue, consumer: Consumer) -> None:
    await queue.enqueue({**_payload(3), "modelId": "m\x1b]0;owned\x07"}, job_id="esc-3", max_attempts=1)
    [lease] = (await consumer.claim(1)).leases
    await consumer.fail(lease, "endpoint said \x1b[2J\x1b[31mred\x9b", final=True, category="SERVER_ERROR")


def test_job_and_jobs_escape_control_characters_from_endpoints(cli_env: str, run_cli: Run, on_queue: OnQueue) -> None:
    on_queue(_failed_with_terminal_escapes)
    for result, code in ((run_cli("job", "esc-3"), 1), (run_cli("jobs", "--state", "failed"), 0)):
        assert result.code == code  # `job` of a failed job exits 1, a listing 0
        assert "\x1b" not in result.out and "\x07" not in result.out and "\x9b" not in result.out
    assert "\\x1b[2J\\x1b[31mred\\x9b" in run_cli("job", "esc-3").out
    assert "m\\x1b]0;owned\\x07" in run_cli("jobs", "--state", "failed").out
    assert run_cli("job", "esc-3", "--json").json()["lastError"].startswith("endpoint said \x1b[2J")


def _follow(env: dict[str, str], *argv: str) -> Any:
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "certq", "events", "--follow", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_events_follow_with_last_0_prints_only_what_happens_from_now_on(
    cli_env: str, redis_url: str, on_queue: OnQueue
) -> None:
    import os
    import select
    import signal
    import subprocess
    import time

    async def before(queue: Queue, consumer: Consumer) -> None:
        await queue.enqueue(_payload(1), job_id="before-1")

    on_queue(before)
    follower = _follow({**os.environ, "REDIS_URL": redis_url, "BULL_QUEUE_PREFIX": cli_env}, "--last", "0", "--json")
    try:
        assert follower.stdout is not None
        deadline = time.monotonic() + 20
        seen: list[dict[str, str]] = []
        count = 0
        while not any(e["jobId"].startswith("after-") for e in seen) and time.monotonic() < deadline:
            assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
            count += 1

            async def add(queue: Queue, consumer: Consumer, n: int = count) -> None:
                await queue.enqueue(_payload(n), job_id=f"after-{n}")

            on_queue(add)
            while select.select([follower.stdout], [], [], 0.5)[0]:
                seen.append(json.loads(follower.stdout.readline()))
        assert any(e["jobId"].startswith("after-") and e["event"] == "added" for e in seen), seen
        assert all(e["jobId"] != "before-1" for e in seen), seen
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait(10)
    assert follower.returncode == 130


def test_events_refuses_a_negative_last(cli_env: str, run_cli: Run) -> None:
    assert run_cli("events", "--last", "-1").code == EXIT_USAGE


def _enqueued(run_cli: Run, model: ModelRecord, database_url: str) -> dict[str, str]:
    """What `certq enqueue --json` answers: the job id and the certification id it created."""
    result = run_cli("enqueue", str(model.id), "--region", "local", "--json", "--database-url", database_url)
    assert result.code == 0, result.err
    answer: dict[str, str] = result.json()
    assert answer["jobId"] != answer["certificationId"]
    return answer


def test_job_given_a_job_id_shows_each_of_its_certifications(
    cli_env: str, run_cli: Run, model: ModelRecord, migrated_database_url: str
) -> None:
    answer = _enqueued(run_cli, model, migrated_database_url)
    result = run_cli("job", answer["jobId"], "--database-url", migrated_database_url)
    assert result.code == 0, result.err
    assert result.out.startswith(f"job {answer['jobId']}: ")
    assert f"certification {answer['certificationId']}: waiting in the queue" in result.out

    shown = run_cli("job", answer["jobId"], "--json", "--database-url", migrated_database_url).json()
    assert shown["job"]["id"] == answer["jobId"]
    [entry] = shown["certifications"]
    assert entry["certification"]["id"] == answer["certificationId"] and entry["certification"]["status"] == "QUEUED"
    assert entry["queue"]["id"] == answer["certificationId"] and entry["queue"]["state"] == "waiting"


def test_job_given_a_certification_id_the_queue_trimmed_shows_what_postgresql_recorded(
    cli_env: str, run_cli: Run, on_queue: OnQueue, model: ModelRecord, migrated_database_url: str
) -> None:
    answer = _enqueued(run_cli, model, migrated_database_url)
    queued = run_cli("job", answer["certificationId"], "--json")
    assert queued.code == 0 and queued.json()["payload"]["jobId"] == answer["jobId"]

    async def trim(queue: Queue, consumer: Consumer) -> bool:
        return await queue.remove(answer["certificationId"])

    assert on_queue(trim)
    result = run_cli("job", answer["certificationId"], "--database-url", migrated_database_url)
    assert result.code == 0, result.err
    assert f"certification {answer['certificationId']}: QUEUED (from PostgreSQL" in result.out
    assert f"job        {answer['jobId']}" in result.out
    stored = run_cli("job", answer["certificationId"], "--json", "--database-url", migrated_database_url).json()
    assert stored["queue"] is None and stored["certification"]["jobId"] == answer["jobId"]


def test_job_shows_a_queue_jobs_stored_verdict_probe_by_probe_and_exits_1_when_it_failed(
    cli_env: str, run_cli: Run, model: ModelRecord, migrated_database_url: str
) -> None:
    answer = _enqueued(run_cli, model, migrated_database_url)
    certification = answer["certificationId"]
    verdict = {
        "status": "FAILED",
        "passed": False,
        "score": 41,
        "rating": "F",
        "testResults": [{"name": "deterministic_qa", "passed": False, "score": 20, "detail": "wrong answers"}],
        "metrics": {},
        "errorCategory": "QUALITY_BELOW_THRESHOLD",
        "errorMessage": "score 41 < 80",
        "durationMs": 700,
    }

    async def finish() -> None:
        store = await Store.connect(migrated_database_url, min_size=1, max_size=1)
        try:
            assert await store.begin_attempt(certification, 1)
            assert await store.finish_certification(certification, 1, verdict)
        finally:
            await store.close()

    asyncio.run(finish())
    result = run_cli("job", certification, "--database-url", migrated_database_url)
    assert result.code == 1, result.err
    assert f"certification {certification}: waiting in the queue" in result.out
    assert "deterministic_qa" in result.out and "QUALITY_BELOW_THRESHOLD" in result.out
    assert run_cli("job", answer["jobId"], "--database-url", migrated_database_url).code == 1


def test_retry_failed_given_a_job_id_retries_its_failed_certifications(
    cli_env: str, run_cli: Run, on_queue: OnQueue, model: ModelRecord, migrated_database_url: str
) -> None:
    answer = _enqueued(run_cli, model, migrated_database_url)

    async def fail(queue: Queue, consumer: Consumer) -> None:
        [lease] = (await consumer.claim(1)).leases
        await consumer.fail(lease, "provider said no", final=True, category="AUTH_ERROR")

    on_queue(fail)
    result = run_cli("retry-failed", answer["jobId"], "--database-url", migrated_database_url)
    assert result.code == 0, result.err
    assert "moved 1 failed job(s)" in result.out
    assert run_cli("job", answer["certificationId"], "--json").json()["state"] == "waiting"
