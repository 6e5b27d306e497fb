"""Password-protected topologies: REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD reach the right servers."""

from __future__ import annotations

import pytest

from certq.chaos.cluster import ClusterServers
from certq.chaos.sentinel import SentinelGroup
from certq.connections import connect_redis
from certq.queue import Consumer, Queue, QueueConfig
from certq.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def round_trip(settings: Settings, name: str) -> None:
    client = connect_redis(settings)
    try:
        config = QueueConfig(prefix=settings.queue_prefix, name=name)
        job = await Queue(client, config).enqueue({"n": 1})
        claim = await Consumer(client, config).claim(1)
        assert [lease.job.id for lease in claim.leases] == [job.id]
    finally:
        await client.aclose()


async def test_sentinel_with_passwords_on_data_nodes_and_sentinels_survives_a_failover() -> None:
    group = SentinelGroup.start(password="data-secret", sentinel_password="sentinel-secret")
    try:
        settings = Settings.model_validate(
            {
                "REDIS_SENTINELS": group.sentinel_addresses,
                "REDIS_SENTINEL_MASTER": group.name,
                "REDIS_PASSWORD": "data-secret",
                "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
                "BULL_QUEUE_PREFIX": "{pw}",
            }
        )
        await round_trip(settings, "before")
        await group.kill_master()
        await round_trip(settings, "after")
    finally:
        group.stop()


async def test_cluster_with_a_password() -> None:
    cluster = ClusterServers.start(password="cluster-secret")
    try:
        settings = Settings.model_validate(
            {
                "REDIS_CLUSTER_NODES": cluster.startup_nodes,
                "REDIS_PASSWORD": "cluster-secret",
                "BULL_QUEUE_PREFIX": "{pw}",
            }
        )
        await round_trip(settings, "one")
        wrong = settings.model_copy(update={"redis_password": "nope"})
        with pytest.raises(Exception, match="(?i)auth|password|WRONGPASS"):
            await round_trip(wrong, "two")
    finally:
        cluster.stop()
