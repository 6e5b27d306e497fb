"""The README's first command end to end: private servers, API, worker, a real llama.cpp model, a verdict."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo_env(tmp_path: Path) -> dict[str, str]:
    """No REDIS_URL/DATABASE_URL/provider credentials: the demo must start and serve everything itself."""
    drop = {
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "DATABASE_URL",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "CERTQ_DEMO_MODEL",
        "REDIS_SENTINELS",
        "REDIS_CLUSTER_NODES",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def _metrics_feed_the_alerts_and_the_autoscaler(output: str) -> None:
    """The series the alert rules and KEDA read exist, with the labels they select on."""
    import httpx

    worker = re.search(r"metrics: (http://127.0.0.1:\d+/metrics)", output)
    api = re.search(r"API +(http://127.0.0.1:\d+) ", output)
    assert worker and api, output
    text = httpx.get(worker.group(1), headers={"Accept": "text/plain"}, timeout=5).text
    for series in (
        'certq_queue_jobs{queue="model-certification",state="waiting"}',
        'certq_queue_jobs{queue="model-certification",state="active"}',
        'certq_worker_concurrency{queue="model-certification"} 1.0',
        'certq_jobs_total{outcome="completed",queue="model-certification"} 1.0',
        "certq_redis_up 1.0",
        "certq_database_up 1.0",
    ):
        assert series in text, f"{series} missing from the worker's /metrics"
    api_text = httpx.get(api.group(1) + "/metrics", timeout=5).text
    assert "certq_api_requests_total" in api_text and "certq_api_certifications_enqueued_total 1.0" in api_text


def _admin_commands(output: str) -> tuple[str, list[str]]:
    """The `export ...` line and the commands under it, as the demo printed them for pasting."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("  export ")), None)
    assert start is not None, output
    commands: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip())
    return lines[start].strip(), commands


def _the_printed_admin_commands_work_in_a_fresh_shell(output: str, tmp_path: Path) -> None:
    """Each command the demo prints, pasted with its `export` line into a new terminal (no virtualenv on PATH,
    no certq variables, another directory), works against the running demo: its servers, its worker, its ids;
    `enqueue --wait` has the demo's worker certify the model again."""
    from tests.test_bootstrap import fresh_shell_env

    export, commands = _admin_commands(output)
    assert {command.split()[0] for command in commands} == {str(Path(sys.executable).with_name("certq"))}
    job = re.search(r"queued job ([0-9a-f-]{36}): certification ([0-9a-f-]{36})", output)
    assert job, output
    job_id, certification_id = job.groups()
    subcommands = [" ".join(command.split()[1:3]) for command in commands]
    assert subcommands[:3] == ["stats", f"job {certification_id}", f"job {job_id}"], commands
    shown: dict[str, str] = {}
    for command, sub in zip(commands, subcommands, strict=True):
        done = subprocess.run(
            ["bash", "-c", f"{export}\n{command}"],
            env=fresh_shell_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        shown[sub] = done.stdout
    assert "workers alive: 1" in shown["stats"]
    assert f"certification {certification_id}: completed in the queue" in shown[f"job {certification_id}"]
    assert shown[f"job {job_id}"].startswith(f"job {job_id}: COMPLETED")
    assert f"certification {certification_id}: completed" in shown[f"job {job_id}"]
    assert "1 alive (heartbeats)" in shown["doctor"] and "ok    schema" in shown["doctor"]
    again = next(out for sub, out in shown.items() if sub.startswith("enqueue "))
    assert again.startswith("Verdict: CERTIFIED") and re.search(r"^connectivity +yes +PASS", again, re.MULTILINE)


def _run_demo(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 170) -> tuple[int, str]:
    """Run the demo to its end; if it overruns, Ctrl-C it and kill whatever it reported starting."""
    process = subprocess.Popen(
        [sys.executable, "-m", "certq", "demo", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate(timeout=10)
        for pid in _pids(out):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"the demo overran {timeout:g}s:\n{out}") from None
    return process.returncode, out


def _pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_certifies_the_local_model_and_leaves_nothing_running(tmp_path: Path) -> None:
    code, out = _run_demo(["--ci", "--timeout", "120"], _demo_env(tmp_path), tmp_path)
    assert code == 0, out
    assert "certifying the local llama.cpp server" in out
    assert re.search(r"Verdict: (CERTIFIED|QUALITY_WARNING|FAILED) +score [\d.]+/100 +rating [A-F]", out), out
    assert re.search(r"^connectivity +yes +PASS", out, re.MULTILINE), out
    assert "Where to look next:" in out and "bearer token:" in out and "/admin/queues" in out
    assert "stopped everything it started" in out
    pids = _pids(out)
    assert len(pids) >= 4, out  # redis, model server, API, worker
    assert [pid for pid in pids if _alive(pid)] == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_stops_an_interactive_demo_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "certq", "demo", "--timeout", "120"],
        cwd=tmp_path,
        env=_demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 150
        for line in process.stdout:
            lines.append(line)
            if "press Ctrl-C to stop" in line or time.monotonic() > deadline:
                break
        assert any("press Ctrl-C to stop" in line for line in lines), "".join(lines)
        _metrics_feed_the_alerts_and_the_autoscaler("".join(lines))
        _the_printed_admin_commands_work_in_a_fresh_shell("".join(lines), tmp_path)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # leave nothing behind even when the demo misbehaves
            for pid in [process.pid, *_pids("".join(lines))]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            rest, _ = process.communicate(timeout=10)
    out = "".join(lines) + rest
    assert process.returncode == 130, out
    assert "stopped everything it started" in out
    assert [pid for pid in _pids(out) if _alive(pid)] == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_certifies_the_endpoint_named_by_openai_base_url(tmp_path: Path) -> None:
    from certq.certification.localmodel import start_tiny_model_server, stop_llama_server

    base_url, server, _ = start_tiny_model_server(tmp_path, "scripted")
    try:
        env = _demo_env(tmp_path) | {"OPENAI_BASE_URL": base_url, "CERTQ_DEMO_MODEL": "tiny-scripted"}
        code, out = _run_demo(["--ci", "--timeout", "120"], env, tmp_path)
    finally:
        stop_llama_server(server)
    assert code == 0, out
    assert f"certifying the OpenAI-compatible endpoint OPENAI_BASE_URL={base_url} (model tiny-scripted)" in out
    assert "generating a tiny model" not in out
    assert re.search(r"Verdict: CERTIFIED .* rating [AB]", out), out


def test_demo_picks_bedrock_when_aws_credentials_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certq.cli.demo import _target
    from certq.cli.stack import Stack
    from certq.settings import load_settings

    for name, value in _demo_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    stack = Stack(workdir=tmp_path)
    target = _target(load_settings(), stack)
    stack.close()
    assert (target.provider, target.region, target.api_model_id) == ("bedrock", "eu-west-1", "amazon.nova-micro-v1:0")
    assert "AWS credentials found" in target.description


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_without_a_verdict_in_time_exits_non_zero_and_still_cleans_up(tmp_path: Path) -> None:
    from certq.embedded import free_port

    env = _demo_env(tmp_path) | {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    code, out = _run_demo(["--ci", "--timeout", "1"], env, tmp_path)
    assert code == 1, out
    assert "no verdict in time" in out and "Verdict:" not in out
    assert "stopped everything it started" in out
    assert [pid for pid in _pids(out) if _alive(pid)] == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_reader_that_goes_away_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    """`certq demo | head -5`: stdout breaks mid-run; the demo exits without a traceback and leaves no child."""
    process = subprocess.Popen(
        [sys.executable, "-m", "certq", "demo", "--ci", "--timeout", "120"],
        cwd=tmp_path,
        env=_demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "worker ready" in line:
                break
        assert any("worker ready" in line for line in lines), "".join(lines)
        process.stdout.close()  # like `head` exiting: the demo's next write breaks
        err = process.stderr.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            for pid in [process.pid, *_pids("".join(lines))]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert "Traceback" not in err, err
    pids = _pids("".join(lines))
    assert len(pids) >= 4, lines  # redis, model server, API, worker
    assert [pid for pid in pids if _alive(pid)] == []


def test_the_api_on_a_taken_port_exits_3_naming_api_port(tmp_path: Path) -> None:
    import socket

    from certq.embedded import free_port
    from certq.settings import STARTUP_FAILURE

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = _demo_env(tmp_path) | {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "CERTQ_ENV": "development",
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        }
        done = subprocess.run(
            [sys.executable, "-m", "certq.api"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert f"API_HOST:API_PORT = 127.0.0.1:{port}" in done.stderr and "set API_PORT to a free port" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_demo_port_is_replaced_and_said_so() -> None:
    import socket

    from certq.cli.stack import pick_port

    said: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        chosen = pick_port(port, "the API", said.append)
    assert chosen != port
    assert said == [
        f"port {port} is taken (another demo still running? `ss -ltnp 'sport = :{port}'` shows who has "
        f"it): the API uses port {chosen} instead"
    ]


@pytest.mark.slow
def test_a_postgres_left_running_in_the_demo_folder_is_stopped(tmp_path: Path) -> None:
    """Ctrl-C while the private PostgreSQL was starting leaves one the demo holds no handle to: the last stop
    finds it by its postmaster.pid."""
    from certq.cli.demo import stop_leftover_postgres
    from certq.embedded import start_postgres

    server = start_postgres(tmp_path / "postgres")
    try:
        [pidfile] = (tmp_path / "postgres").glob("**/postmaster.pid")
        pid = int(pidfile.read_text().split()[0])
        said: list[str] = []
        stop_leftover_postgres(tmp_path, said.append)
        assert not _alive(pid)
        assert said == [f"stopping a PostgreSQL left running from {pidfile.parent} (pid {pid})"]
    finally:
        server.stop()
