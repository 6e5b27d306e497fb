"""Fixtures for the worker tests: real worker processes on the test's Redis prefix and database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from certq.queue import Queue, QueueConfig
from tests.worker.helpers import QUEUE_NAME, SCRIPTED, SpawnWorker, WorkerProcess


@pytest.fixture
def worker_env(redis_url: str, key_prefix: str, migrated_database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTIFICATION_", "WORKER_", "LOG_", "BULL_"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=migrated_database_url,
        BULL_QUEUE_PREFIX=key_prefix,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        WORKER_HEALTH_HOST="127.0.0.1",
        WORKER_HEALTH_PORT="0",
        CERTIFICATION_QUEUE_NAME=QUEUE_NAME,
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def spawn_worker(worker_env: dict[str, str]) -> Iterator[SpawnWorker]:
    """`spawn_worker("--concurrency", "3", env={...})` starts a worker running the scripted test handler."""
    children: list[WorkerProcess] = []

    def spawn(*args: str, env: dict[str, str] | None = None, handler: str | None = SCRIPTED) -> WorkerProcess:
        argv = [sys.executable, "-m", "certq.worker", *args]
        if handler:
            argv += ["--handler", handler]
        process = subprocess.Popen(
            argv, env={**worker_env, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        child = WorkerProcess(process)
        children.append(child)
        return child

    yield spawn
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(timeout=10)


@pytest.fixture
async def queue(redis_client: aioredis.Redis, key_prefix: str) -> AsyncIterator[Queue]:
    yield Queue(redis_client, QueueConfig(prefix=key_prefix, name=QUEUE_NAME))
