"""Redis Cluster: queues on different shards keep every job through a node restart and a live slot migration."""

from __future__ import annotations

import pytest

from certq.chaos.drill import DrillState, run_drill
from certq.chaos.servers import ClusterServers, tag_for_slot
from certq.connections import AnyRedis, connect_redis
from certq.queue import Consumer, Queue, QueueConfig
from certq.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def cluster_settings(cluster: ClusterServers, prefix: str) -> Settings:
    return Settings.model_validate({"REDIS_CLUSTER_NODES": cluster.startup_nodes, "BULL_QUEUE_PREFIX": prefix})


def config(prefix: str, name: str) -> QueueConfig:
    return QueueConfig(prefix=prefix, name=name, lease_ms=2_000, heartbeat_ms=400, stalled_check_ms=500)


async def test_queue_keys_of_one_prefix_share_the_prefix_slot(redis_cluster: ClusterServers) -> None:
    prefix = redis_cluster.tags_on_different_masters(1, stem="slot")[0]
    client = connect_redis(cluster_settings(redis_cluster, prefix))
    try:
        queue = Queue(client, config(prefix, "model-certification"))
        job = await queue.enqueue({"x": 1}, dedupe_key="m:r", group="us-east-1")
        slots = {redis_cluster.keyslot(key) for key in [*queue.keys.all_fixed(), queue.keys.job(job.id)]}
        assert slots == {redis_cluster.keyslot(prefix)}
        assert (await queue.get(job.id)) is not None
    finally:
        await client.aclose()


async def test_queues_on_different_masters_survive_a_master_restart_and_live_slot_migrations(
        redis_cluster: ClusterServers) -> None:
    east, west = redis_cluster.tags_on_different_masters(2, stem="region")
    east_slot, west_slot = redis_cluster.keyslot(east), redis_cluster.keyslot(west)
    assert redis_cluster.owner(east_slot) is not redis_cluster.owner(west_slot)
    # A third queue in slot 0: the lowest slot of its master, the one `redis-cli --cluster reshard` moves first.
    north = tag_for_slot(0)
    north_home = redis_cluster.owner(0)
    settings = cluster_settings(redis_cluster, east)

    async def faults(state: DrillState) -> None:
        restarted = redis_cluster.owner(east_slot)
        state.notes["restart_s"] = round(await redis_cluster.restart(restarted), 2)
        await state.wait_finished(state.finished_count() + 10, within_s=30)
        source = redis_cluster.owner(west_slot)
        target = next(node for node in redis_cluster.masters() if node not in (source, north_home))
        state.notes["migrated_keys"] = await redis_cluster.migrate_slot(west_slot, target)
        assert redis_cluster.owner(west_slot) is target
        await state.wait_finished(state.finished_count() + 10, within_s=30)
        assert redis_cluster.lowest_slot(north_home) == 0
        await redis_cluster.reshard_with_redis_cli(north_home, source)
        assert redis_cluster.owner(0) is source

    def client() -> AnyRedis:
        return connect_redis(settings)

    n = 240
    queues = [config(east, "certification"), config(west, "certification"), config(north, "certification")]
    ledger = await run_drill("cluster restart + 2 slot migrations (queue)", client, queues, n=n, fault=faults,
                             concurrency=4, work_s=0.05, enqueue_every_s=0.02, timeout_s=100)
    print(ledger.row(), ledger.notes)
    assert ledger.notes["migrated_keys"] > 0
    assert (ledger.accepted, ledger.finished, ledger.lost, ledger.stuck, ledger.finished_twice) == (n, n, 0, 0, 0)


@pytest.mark.xfail(strict=True, reason="queue scripts reach undeclared job keys: a half-migrated slot stops fail.lua "
                                       "after its first writes (see docs/reliability.md, Known limits)")
async def test_a_job_failed_while_its_slot_is_half_migrated_stays_in_a_state_list(
        redis_cluster: ClusterServers) -> None:
    tag = tag_for_slot(9000, stem="half")
    slot = redis_cluster.keyslot(tag)
    source = redis_cluster.owner(slot)
    target = next(node for node in redis_cluster.masters() if node is not source)
    client = connect_redis(cluster_settings(redis_cluster, tag))
    queue_config = config(tag, "half")
    queue, consumer = Queue(client, queue_config), Consumer(client, queue_config)
    try:
        for name in ("retried", "failed", "running"):
            await queue.enqueue({"name": name}, job_id=name)
        leases = (await consumer.claim(3)).leases
        by_id = {lease.job.id: lease for lease in leases}
        await consumer.fail(by_id["retried"], "again")  # delayed exists
        await consumer.fail(by_id["failed"], "no", final=True)  # failed exists; active still holds "running"
        with source.client() as src, target.client() as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", redis_cluster.node_id(source))
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", redis_cluster.node_id(target))
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", queue.keys.job("running"))
            with pytest.raises(Exception, match="non local key"):
                await consumer.fail(by_id["running"], "boom")
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for node in redis_cluster.masters():
                with node.client() as each:
                    each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", redis_cluster.node_id(target))
        where = [state for state in ("waiting", "active", "delayed", "failed", "completed")
                 if "running" in await queue.ids(state, 0, 100)]
        assert where != [], "the job is in no state list: no consumer will ever see it again"
    finally:
        await client.aclose()
