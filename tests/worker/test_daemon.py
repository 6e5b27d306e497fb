"""The real daemon in real processes: concurrency, timeouts, signals, scaling and crashes."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from certq.queue import Queue
from tests.worker.helpers import SpawnWorker, max_overlap, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def _completions(queue: Queue) -> Counter[str]:
    return Counter(fields["jobId"] for _, fields in await queue.events("0", 100_000) if fields["event"] == "completed")


async def test_runs_exactly_concurrency_jobs_at_once(spawn_worker: SpawnWorker, queue: Queue) -> None:
    worker = spawn_worker("--concurrency", "3")
    await worker.started()
    jobs = [await queue.enqueue({"sleep": 0.4}) for _ in range(9)]
    done = await wait_finished(queue, [job.id for job in jobs])
    assert {job.state.value for job in done} == {"completed"}
    intervals = [(job.result["started"], job.result["finished"]) for job in done]
    assert max_overlap(intervals) == 3


async def test_a_job_over_its_timeout_is_cancelled_and_retried_as_timeout(
    spawn_worker: SpawnWorker, queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    worker = spawn_worker("--concurrency", "1", "--timeout", "300")
    await worker.started()
    job = await queue.enqueue({"sleep": 30, "marker": str(marker)}, max_attempts=2)
    [finished] = await wait_finished(queue, [job.id])
    assert finished.state.value == "failed"
    assert finished.error_category == "TIMEOUT"
    assert [error.get("category") for error in finished.errors] == ["TIMEOUT", "TIMEOUT"]
    assert marker.read_text().startswith("cancelled attempt 2")  # the coroutine itself was stopped
    assert len(worker.events("job attempt failed; retry scheduled")) == 1


async def test_sigterm_lets_running_jobs_finish_then_exits_zero_with_one_summary(
    spawn_worker: SpawnWorker, queue: Queue
) -> None:
    worker = spawn_worker("--concurrency", "2", "--shutdown-grace", "20")
    await worker.started()
    jobs = [await queue.enqueue({"sleep": 2.0}) for _ in range(2)]
    await worker.wait_log("job started", count=2)
    worker.signal(signal.SIGTERM)
    # Enqueued once the worker says it drains (not before: a slow read of its log could let a slot free up
    # and claim the job before the signal, which is no drain at all).
    await worker.wait_log("shutdown requested; draining")
    waiting = await queue.enqueue({"sleep": 0})
    assert await worker.exit_code() == 0
    finished = await queue.get_many([job.id for job in jobs])
    assert [job.state.value for job in finished] == ["completed", "completed"]
    assert (await queue.get(waiting.id)).state.value == "waiting"  # type: ignore[union-attr]
    [summary] = worker.events("worker stopped")
    assert summary["completed"] == 2 and summary["released"] == 0 and summary["signals"] == ["SIGTERM"]


async def test_jobs_still_running_after_the_grace_go_back_to_wait_unburnt(
    spawn_worker: SpawnWorker, queue: Queue, tmp_path: Path
) -> None:
    worker = spawn_worker("--concurrency", "1", "--shutdown-grace", "0.3")
    await worker.started()
    job = await queue.enqueue({"sleep": 30, "marker": str(tmp_path / "m")}, max_attempts=1)
    await worker.wait_log("job started")
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    released = await queue.get(job.id)
    assert released is not None and released.state.value == "waiting"
    assert released.attempts_counted == 0  # max_attempts=1, and it can still run
    assert worker.events("worker stopped")[0]["released"] == 1


async def test_a_second_signal_cancels_running_jobs_at_once(
    spawn_worker: SpawnWorker, queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "m"
    worker = spawn_worker("--concurrency", "1", "--shutdown-grace", "60")
    await worker.started()
    job = await queue.enqueue({"sleep": 60, "marker": str(marker)})
    await worker.wait_log("job started")
    worker.signal(signal.SIGINT)
    await worker.wait_log("shutdown requested; draining")
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code(within=15) == 0
    assert marker.read_text().startswith("cancelled")
    released = await queue.get(job.id)
    assert released is not None and released.state.value == "waiting" and released.attempts_counted == 0
    summary = worker.events("worker stopped")[0]
    assert summary["forced"] is True and summary["signals"] == ["SIGINT", "SIGTERM"]


async def test_a_third_signal_exits_even_when_a_handler_ignores_cancellation(
    spawn_worker: SpawnWorker, queue: Queue
) -> None:
    worker = spawn_worker("--concurrency", "1", "--shutdown-grace", "60")
    await worker.started()
    await queue.enqueue({"sleep": 60, "ignore_cancel": True})
    await worker.wait_log("job started")
    worker.signal(signal.SIGTERM)
    await worker.wait_log("shutdown requested; draining")
    worker.signal(signal.SIGTERM)
    await worker.wait_log("second signal; cancelling running jobs now")
    assert worker.process.poll() is None  # still waiting for the stubborn handler
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 1
    assert worker.events("third signal; exiting without waiting")


async def test_two_workers_share_one_queue_and_do_every_job_once(spawn_worker: SpawnWorker, queue: Queue) -> None:
    first, second = spawn_worker("--concurrency", "4"), spawn_worker("--concurrency", "4")
    ports = {await first.started(), await second.started()}
    assert len(ports) == 2
    jobs = [await queue.enqueue({"sleep": 0.05}) for _ in range(60)]
    done = await wait_finished(queue, [job.id for job in jobs])
    assert {job.state.value for job in done} == {"completed"}
    assert {job.result["pid"] for job in done} == {first.pid, second.pid}
    assert all(job.attempts == 1 for job in done)
    completions = await _completions(queue)
    assert all(completions[job.id] == 1 for job in jobs)


async def test_killing_one_of_two_workers_mid_job_still_finishes_every_job_once(
    spawn_worker: SpawnWorker, queue: Queue
) -> None:
    victim, survivor = spawn_worker("--concurrency", "2"), spawn_worker("--concurrency", "2")
    await victim.started()
    await survivor.started()
    jobs = [await queue.enqueue({"sleep": 1.0}) for _ in range(8)]
    await victim.wait_log("job started", count=1)
    victim.signal(signal.SIGKILL)
    assert await victim.exit_code() == -signal.SIGKILL
    done = await wait_finished(queue, [job.id for job in jobs], within=40)
    assert {job.state.value for job in done} == {"completed"}
    completions = await _completions(queue)
    assert all(completions[job.id] == 1 for job in jobs)
    assert any(job.result["pid"] == survivor.pid and job.stalls >= 1 for job in done)


async def test_bad_flags_and_variables_stop_start_up_with_exit_3_naming_them(spawn_worker: SpawnWorker) -> None:
    cases = [
        ((["--concurrency", "0"], {}), ("--concurrency", "CERTIFICATION_CONCURRENCY")),
        ((["--concurrency", "many"], {}), ("--concurrency",)),
        (([], {"CERTIFICATION_TIMEOUT": "soon"}), ("CERTIFICATION_TIMEOUT",)),
        (([], {"LOG_LEVEL": "LOUD"}), ("LOG_LEVEL",)),
        ((["--handler", "no.such.module:handle"], {}), ("--handler",)),
    ]
    for (args, env), names in cases:
        worker = spawn_worker(*args, env=env, handler=None)
        assert await worker.exit_code() == 3, (args, env)
        output = "".join(worker.raw)
        assert all(name in output for name in names), output
        assert "Traceback" not in output


async def test_a_health_port_in_use_stops_start_up_naming_the_variable(spawn_worker: SpawnWorker) -> None:
    first = spawn_worker("--concurrency", "1")
    port = await first.started()
    second = spawn_worker("--concurrency", "1", "--health-port", str(port))
    assert await second.exit_code() == 3
    assert "WORKER_HEALTH_PORT" in "".join(second.raw)


async def test_unreachable_postgresql_makes_it_unready_not_dead(spawn_worker: SpawnWorker) -> None:
    from certq.embedded import free_port
    from tests.worker.helpers import http_get

    worker = spawn_worker(
        "--concurrency", "1", env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    )
    port = await worker.started()
    await worker.wait_log("postgresql unreachable")
    ready = await http_get(port, "/ready")
    assert ready.status_code == 503 and "postgresql" in ready.json()["reason"]
    assert (await http_get(port, "/health")).status_code == 200
    assert (await http_get(port, "/live")).status_code == 200
    assert worker.process.poll() is None
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


async def test_log_dir_gets_every_event_in_combined_and_failures_in_error_log(
    spawn_worker: SpawnWorker, queue: Queue, tmp_path: Path
) -> None:
    worker = spawn_worker("--concurrency", "1", env={"LOG_DIR": str(tmp_path / "logs")})
    await worker.started()
    ok = await queue.enqueue({"sleep": 0})
    bad = await queue.enqueue({"fail": "no such model", "final": True, "category": "CONFIG_ERROR"})
    await wait_finished(queue, [ok.id, bad.id])
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    combined = [json.loads(line) for line in (tmp_path / "logs" / "combined.log").read_text().splitlines()]
    errors = [json.loads(line) for line in (tmp_path / "logs" / "error.log").read_text().splitlines()]
    messages = [line["message"] for line in combined]
    assert {"worker started", "job started", "job completed", "job failed for good", "worker stopped"} <= set(messages)
    assert [(e["message"], e["job_id"], e["error_category"]) for e in errors] == [
        ("job failed for good", bad.id, "CONFIG_ERROR")
    ]
