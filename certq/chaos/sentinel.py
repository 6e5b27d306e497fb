"""A real Redis Sentinel group on loopback: master, replica and three Sentinels, for drills and HA tests."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from certq.chaos.servers import (
    SENTINEL_MASTER,
    RedisNode,
    TopologyError,
    await_for,
    command,
    data_args,
    distinct_ports,
    wait_for,
)


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
    def start(
        cls,
        down_after_ms: int = 1000,
        root: Path | None = None,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> SentinelGroup:
        """`password`: the data nodes' (REDIS_PASSWORD); `sentinel_password`: the Sentinels' own
        (REDIS_SENTINEL_PASSWORD)."""
        root = Path(tempfile.mkdtemp(prefix="certq-sentinel-")) if root is None else root
        ports = distinct_ports(5)
        master = RedisNode(
            ports[0], root / "master", data_args(ports[0], root / "master", password=password), password=password
        )
        replica = RedisNode(
            ports[1],
            root / "replica",
            data_args(ports[1], root / "replica", "--replicaof", "127.0.0.1", str(ports[0]), password=password),
            password=password,
        )
        sentinels = [
            RedisNode(port, root / f"sentinel-{port}", [], sentinel=True, password=sentinel_password)
            for port in ports[2:]
        ]
        group = cls(
            root,
            master,
            replica,
            sentinels,
            down_after_ms=down_after_ms,
            password=password,
            sentinel_password=sentinel_password,
        )
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
        return "\n".join(
            [
                f"port {node.port}",
                "bind 127.0.0.1",
                f"dir {node.workdir}",
                "logfile sentinel.log",
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
                f"sentinel failover-timeout {self.name} 5000",
                f"sentinel parallel-syncs {self.name} 1",
                *([f"sentinel auth-pass {self.name} {self.password}"] if self.password else []),
                *(
                    [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
                    if self.sentinel_password
                    else []
                ),
                "",
            ]
        )

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
                    reply = await command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
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

    async def kill_master(
        self, within_s: float = 30.0, *, unreplicated: Callable[[], Awaitable[None]] | None = None
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
                await command(client, "CLIENT", "KILL", "TYPE", "replica")
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
