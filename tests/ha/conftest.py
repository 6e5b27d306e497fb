"""Real Redis topologies started by the tests themselves (never the machine's 6379): Sentinel and Cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from certq.chaos.servers import ClusterServers, SentinelGroup


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A master, a replica and three Sentinels on loopback; each test may kill nodes, so one group per test."""
    group = SentinelGroup.start(down_after_ms=1000)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[ClusterServers]:
    """Six nodes, three masters with a replica each, shared by a module's tests (they use distinct hash tags)."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli (Debian redis-tools) is needed to create a cluster")
    cluster = ClusterServers.start()
    try:
        yield cluster
    finally:
        cluster.stop()
