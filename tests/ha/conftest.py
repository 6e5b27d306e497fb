"""Real Redis topologies started by the tests themselves (never the machine's 6379): Sentinel and Cluster."""

from __future__ import annotations

import gc
import shutil
import warnings
from collections.abc import Iterator

import pytest

from certq.chaos.cluster import ClusterServers
from certq.chaos.sentinel import SentinelGroup


@pytest.fixture(autouse=True)
def collect_garbage_now() -> Iterator[None]:
    """Collect the clients a test dropped (redis-py's RedisCluster leaves replaced nodes unclosed) here, at a
    quiet moment. Collected later, their ResourceWarnings reach pytest's unraisable-exception hook, which
    formats a traceback (ast.parse on 3.11) in the middle of whatever else is parsing, e.g. an assertion
    rewrite: CPython 3.11 then fails with "AST constructor recursion depth mismatch"."""
    yield
    collect_quietly()


def collect_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The last collection before the terminal summary, whose lazy imports run the AST compiler."""
    collect_quietly()


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
