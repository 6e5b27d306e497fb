"""The chaos scenarios at CI size: real worker processes, private Redis/PostgreSQL, a fault, then the ledger."""

from __future__ import annotations

import pytest

from certq.chaos.scenarios import SCENARIOS, run_scenario
from certq.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

N = 12


@pytest.mark.parametrize("name", ["worker-sigkill", "worker-sigstop", "postgres-restart", "provider-hang"])
async def test_every_accepted_certification_finishes_once_through_the_fault(name: str) -> None:
    ledger = await run_scenario(name, n=N, timeout_s=90)
    print(ledger.row(), ledger.notes)
    assert (ledger.accepted, ledger.finished, ledger.lost, ledger.stuck, ledger.finished_twice) == (N, N, 0, 0, 0)
    assert ledger.notes["job_counter_processed"] == N  # each run counted once on its parent job


async def test_redis_restart_loses_the_queue_and_the_reconciler_brings_every_run_back() -> None:
    n = 2 * N  # enough that some are still waiting when Redis goes
    ledger = await run_scenario("redis-restart", n=n, timeout_s=90)
    print(ledger.row(), ledger.notes)
    assert (ledger.accepted, ledger.finished, ledger.lost, ledger.stuck, ledger.finished_twice) == (n, n, 0, 0, 0)
    assert ledger.notes["requeued_by_reconciler"] > 0
    for process in ("ready", "api_ready"):  # workers' and API's /ready said so while Redis was down
        assert ledger.notes[f"{process}_503_seen"] is True
        assert ledger.notes[f"{process}_back_s"] is not None


async def test_workers_run_unchanged_on_redis_cluster() -> None:
    ledger = await run_scenario("worker-sigkill", n=N, timeout_s=90, topology="cluster")
    print(ledger.row(), ledger.notes)
    assert (ledger.accepted, ledger.finished, ledger.lost, ledger.stuck, ledger.finished_twice) == (N, N, 0, 0, 0)


async def test_sentinel_failover_loses_unreplicated_jobs_and_postgresql_brings_them_back() -> None:
    ledger = await run_scenario("sentinel-failover", n=N, timeout_s=90)
    print(ledger.row(), ledger.notes)
    unreplicated = ledger.notes["accepted_unreplicated"]
    assert isinstance(unreplicated, int)
    assert ledger.accepted == N + unreplicated
    assert ledger.ok
    assert ledger.notes["requeued_by_reconciler"] == unreplicated
    for process in ("ready", "api_ready"):
        assert ledger.notes[f"{process}_503_seen"] is True
        assert ledger.notes[f"{process}_back_s"] is not None


def test_every_scenario_of_the_issue_is_shipped() -> None:
    assert set(SCENARIOS) == {
        "worker-sigkill",
        "worker-sigstop",
        "redis-restart",
        "sentinel-failover",
        "postgres-restart",
        "provider-hang",
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["chaos", "worker-sigkill", "--n", "0"],
        ["chaos", "worker-sigkill", "--timeout", "0"],
        ["chaos", "worker-sigkill", "--workers", "99"],
    ],
)
def test_chaos_command_refuses_unbounded_runs(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "--" in capsys.readouterr().err


def test_chaos_command_refuses_a_topology_the_fault_needs_no_part_of(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["chaos", "redis-restart", "--topology", "cluster"])
    assert exited.value.code == 2
    assert "cannot run on cluster" in capsys.readouterr().err


def test_chaos_command_names_its_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["chaos", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in SCENARIOS)
