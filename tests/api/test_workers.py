"""`python -m certq.api --workers N`: N processes answer on the one port, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from certq.embedded import free_port
from certq.settings import STARTUP_FAILURE

pytestmark = pytest.mark.timeout(120)


def _children(pid: int) -> list[int]:
    """The uvicorn worker processes of `pid` (multiprocessing spawn children, not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _health(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as client:  # a fresh connection: any process may accept it
        return (await client.get(f"http://127.0.0.1:{port}/health")).status_code


async def test_workers_2_runs_two_processes_that_each_answer_and_all_stop_on_sigterm(
    migrated_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BULL_", "DATABASE_", "API_", "LOG_"))}
    env = clean | {
        "DATABASE_URL": migrated_database_url,
        "REDIS_URL": redis_url,
        "BULL_QUEUE_PREFIX": f"certq-test-{uuid.uuid4().hex[:12]}",
        "API_TOKENS": uuid.uuid4().hex,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "certq.api", "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(children) < 2 or not await _answers(port):
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, f"not serving with 2 processes: {children}"
            await asyncio.sleep(0.1)
            children = _children(process.pid)
        assert len(children) == 2
        for answering in children:
            others = [pid for pid in children if pid != answering]
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                assert await _health(port) == 200  # only `answering` can accept right now
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
        assert not [pid for pid in children if _alive(pid)]
        assert b"Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def _answers(port: int) -> bool:
    try:
        return await _health(port) == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("value", ["0", "many", "65"])
def test_a_bad_workers_value_exits_3_naming_the_flag(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "certq.api", "--workers", value],
        env={**os.environ, "API_PORT": "0", "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert "--workers" in done.stderr and "Traceback" not in done.stderr
