"""A real 6-node Redis Cluster on loopback, with node restarts and slot moves, for drills and HA tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from certq.chaos.servers import (
    RedisNode,
    TopologyError,
    await_for,
    command,
    data_args,
    distinct_ports,
    wait_for,
)


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
    def start(
        cls, node_timeout_ms: int = 2000, root: Path | None = None, *, password: str | None = None
    ) -> ClusterServers:
        if shutil.which("redis-cli") is None:
            raise TopologyError("redis-cli is needed to create a cluster (Debian package redis-tools)")
        root = Path(tempfile.mkdtemp(prefix="certq-cluster-")) if root is None else root
        nodes = []
        for port in distinct_ports(6):
            workdir = root / str(port)
            args = data_args(
                port,
                workdir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                password=password,
            )
            args[args.index("--appendonly") + 1] = "yes"
            args += ["--appendfsync", "always"]
            nodes.append(RedisNode(port, workdir, args, password=password))
        cluster = cls(root, nodes, node_timeout_ms, password)
        try:
            for node in nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(n.address for n in nodes),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                env=cluster._cli_env(),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
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
                if b"cluster_state:ok" not in await command(client, "CLUSTER", "INFO"):
                    return False
                slots = await command(client, "CLUSTER", "SLOTS")
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
            await command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            await command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := await command(src, "CLUSTER", "GETKEYSINSLOT", slot, batch):
                auth = ["AUTH", self.password] if self.password else []
                await command(src, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *keys)
                moved += len(keys)
            await command(dst, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
            await command(src, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in self.nodes:
            if node.alive and node not in (source, target) and await node.arole() == "master":
                async with node.aclient() as client:
                    await command(client, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        await await_for(self.ahealthy, 30, f"the cluster did not settle after moving slot {slot}")
        return moved

    def lowest_slot(self, node: RedisNode) -> int:
        with self._any().client() as client:
            return min(int(start) for start, _, master, *_ in _slots(client) if int(master[1]) == node.port)

    async def reshard_with_redis_cli(self, source: RedisNode, target: RedisNode, slots: int = 1) -> None:
        """`redis-cli --cluster reshard` of `slots` slots from `source` to `target`, as an operator runs it.
        redis-cli takes the source's lowest slots first (see `tag_for_slot` to put a queue there)."""
        process = await asyncio.create_subprocess_exec(
            "redis-cli",
            "--cluster",
            "reshard",
            source.address,
            "--cluster-from",
            self.node_id(source),
            "--cluster-to",
            self.node_id(target),
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self._cli_env(),
        )
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


def tag_for_slot(slot: int, stem: str = "q") -> str:
    """A hash tag (`{q1234}`) whose keys land in `slot` (CRC16 computed here, as the cluster does)."""
    for index in range(1_000_000):
        tag = f"{{{stem}{index}}}"
        if key_slot(tag.encode()) == slot:
            return tag
    raise TopologyError(f"no tag {stem}N found for slot {slot}")


def _slots(client: redis.Redis) -> list[list[Any]]:
    return list(client.execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]
