"""Topology settings: which client each configuration builds, and the start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from certq.connections import SentinelRedis, check_redis_settings, connect_redis, describe
from certq.settings import STARTUP_FAILURE, Settings, SettingsError, hash_tag


def settings(**values: object) -> Settings:
    return Settings.model_validate({"REDIS_URL": "redis://127.0.0.1:6399/0", **values})


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [("{myia}", "myia"), ("a{b}c", "b"), ("myia", None), ("{}myia", None), ("{myia", None), ("x}{y}", "y")],
)
def test_hash_tag_follows_redis_cluster_rules(prefix: str, tag: str | None) -> None:
    assert hash_tag(prefix) == tag


def test_cluster_refuses_prefix_without_hash_tag_and_says_how_to_write_one() -> None:
    with pytest.raises(SettingsError) as caught:
        check_redis_settings(settings(REDIS_CLUSTER_NODES="127.0.0.1:7000", BULL_QUEUE_PREFIX="myia"))
    assert caught.value.variable == "BULL_QUEUE_PREFIX"
    assert "BULL_QUEUE_PREFIX={myia}" in caught.value.message


def test_connect_redis_applies_the_same_refusal() -> None:
    with pytest.raises(SettingsError, match="hash tag"):
        connect_redis(settings(REDIS_CLUSTER_NODES="127.0.0.1:7000", BULL_QUEUE_PREFIX="prod"))


def test_sentinel_and_cluster_together_are_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        check_redis_settings(
            settings(
                REDIS_CLUSTER_NODES="127.0.0.1:7000", REDIS_SENTINELS="127.0.0.1:26379", BULL_QUEUE_PREFIX="{myia}"
            )
        )
    assert caught.value.variable == "REDIS_CLUSTER_NODES"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_SENTINELS", "127.0.0.1"),
        ("REDIS_SENTINELS", "h:0"),
        ("REDIS_CLUSTER_NODES", "h:port"),
        ("REDIS_SENTINELS", " , "),
    ],
)
def test_node_lists_must_be_host_port(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        check_redis_settings(settings(**{variable: value, "BULL_QUEUE_PREFIX": "{myia}"}))
    assert caught.value.variable == variable


def test_cluster_has_no_database_number() -> None:
    with pytest.raises(SettingsError) as caught:
        check_redis_settings(settings(REDIS_CLUSTER_NODES="127.0.0.1:7000", BULL_QUEUE_PREFIX="{myia}", REDIS_DB=2))
    assert caught.value.variable == "REDIS_DB"


async def test_each_topology_builds_its_client_lazily() -> None:
    single = connect_redis(settings())
    sentinel = connect_redis(settings(REDIS_SENTINELS="127.0.0.1:26399,127.0.0.1:26400"))
    cluster = connect_redis(settings(REDIS_CLUSTER_NODES="127.0.0.1:7000", BULL_QUEUE_PREFIX="{myia}"))
    try:
        assert type(single) is Redis
        assert isinstance(sentinel, SentinelRedis)
        assert isinstance(cluster, RedisCluster)
    finally:
        for client in (single, sentinel, cluster):
            await client.aclose()


def test_describe_hides_passwords() -> None:
    text = describe(settings(REDIS_URL="redis://:s3cret@10.0.0.1:6379/0"))
    assert "s3cret" not in text and "10.0.0.1" in text
    assert "s3cret" not in describe(settings(REDIS_SENTINELS="h:1", REDIS_PASSWORD="s3cret"))


@pytest.mark.parametrize("module", ["certq.worker", "certq.api", "certq"])
def test_every_process_refuses_a_cluster_prefix_without_hash_tag_at_start_up(module: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BULL_"))}
    env |= {"REDIS_CLUSTER_NODES": "127.0.0.1:7000", "BULL_QUEUE_PREFIX": "myia"}
    args = [sys.executable, "-m", module] + (["stats"] if module == "certq" else [])
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == STARTUP_FAILURE
    assert "BULL_QUEUE_PREFIX={myia}" in done.stderr
    assert "Traceback" not in done.stderr


async def test_redis_url_can_name_a_unix_socket(tmp_path: Path) -> None:
    from certq.embedded import start_redis

    sock = tmp_path / "redis.sock"
    server = start_redis(tmp_path / "redis", extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"])
    try:
        client = connect_redis(settings(REDIS_URL=f"unix://{sock}"))
        try:
            assert await client.ping()  # type: ignore[misc]  # redis-py types ping() as sync or async
            await client.set("certq-unix-socket-test", b"1", ex=5)
            assert await client.get("certq-unix-socket-test") == b"1"
        finally:
            await client.aclose()
    finally:
        server.stop()
