"""Redis Cluster: queues on different shards keep every job through a node restart and a live slot migration."""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.exceptions import ClusterError, ResponseError

from certq.chaos.cluster import ClusterServers, tag_for_slot
from certq.chaos.drill import DrillState, run_drill
from certq.chaos.servers import RedisNode
from certq.connections import AnyRedis, connect_redis
from certq.queue import Consumer, JobSpec, JobState, Queue, QueueConfig
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
    redis_cluster: ClusterServers,
) -> None:
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
    ledger = await run_drill(
        "cluster restart + 2 slot migrations (queue)",
        client,
        queues,
        n=n,
        fault=faults,
        concurrency=4,
        work_s=0.05,
        enqueue_every_s=0.02,
        timeout_s=100,
    )
    print(ledger.row(), ledger.notes)
    assert ledger.notes["migrated_keys"] > 0
    assert (ledger.accepted, ledger.finished, ledger.lost, ledger.stuck, ledger.finished_twice) == (n, n, 0, 0, 0)


def half_migrate(cluster: ClusterServers, slot: int, target: RedisNode, *keys: str) -> None:
    """Start moving `slot` to `target` as redis-cli does and move only `keys`: the slot is split."""
    source = cluster.owner(slot)
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)


def finish_migration(cluster: ClusterServers, slot: int, source: RedisNode, target: RedisNode) -> None:
    with source.client() as src:
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for node in cluster.masters():
        with node.client() as each:
            each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))


async def states_of(queue: Queue, job_id: str) -> list[str]:
    return [
        state
        for state in ("waiting", "active", "delayed", "failed", "completed")
        if job_id in await queue.ids(state, 0, 100)
    ]


async def test_a_job_failed_while_its_slot_is_half_migrated_stays_in_a_state_list(
    redis_cluster: ClusterServers,
) -> None:
    tag = tag_for_slot(9000, stem="half")
    slot = redis_cluster.keyslot(tag)
    source = redis_cluster.owner(slot)
    target = next(node for node in redis_cluster.masters() if node is not source)
    client = connect_redis(cluster_settings(redis_cluster, tag))
    queue_config = replace(config(tag, "half"), lease_ms=60_000)
    queue, consumer = Queue(client, queue_config), Consumer(client, queue_config)
    try:
        for name in ("retried", "failed", "running"):
            await queue.enqueue({"name": name}, job_id=name)
        leases = (await consumer.claim(3)).leases
        by_id = {lease.job.id: lease for lease in leases}
        await consumer.fail(by_id["retried"], "again")  # delayed exists
        await consumer.fail(by_id["failed"], "no", final=True)  # failed exists; active still holds "running"
        half_migrate(redis_cluster, slot, target, queue.keys.job("running"))
        # fail.lua declares the job's keys: Redis refuses it up front (TRYAGAIN) until the client gives up.
        with pytest.raises(ClusterError):
            await consumer.fail(by_id["running"], "boom")
        finish_migration(redis_cluster, slot, source, target)
        assert await states_of(queue, "running") == ["active"], "the refused call must change nothing"
        assert await consumer.fail(by_id["running"], "boom") is JobState.DELAYED
        assert await states_of(queue, "running") == ["delayed"]
    finally:
        await client.aclose()


async def test_a_claim_and_a_completion_while_the_slot_is_half_migrated_change_nothing(
    redis_cluster: ClusterServers,
) -> None:
    tag = tag_for_slot(9100, stem="halfclaim")
    slot = redis_cluster.keyslot(tag)
    source = redis_cluster.owner(slot)
    target = next(node for node in redis_cluster.masters() if node is not source)
    client = connect_redis(cluster_settings(redis_cluster, tag))
    queue_config = replace(config(tag, "half"), lease_ms=60_000)
    queue, consumer = Queue(client, queue_config), Consumer(client, queue_config)
    try:
        # Every declared key of complete.lua exists on the source, so Redis lets the script start there.
        for name in ("completed", "failed", "delayed"):
            await queue.enqueue({"name": name}, job_id=name)
        earlier = {lease.job.id: lease for lease in (await consumer.claim(3)).leases}
        await consumer.complete(earlier["completed"])
        await consumer.fail(earlier["failed"], "no", final=True)
        await consumer.fail(earlier["delayed"], "again")
        await client.hset(queue.keys.meta, "note", "meta exists")  # type: ignore[misc]
        await queue.enqueue({"name": "done"}, job_id="done", dedupe_key="model:region")
        [lease] = (await consumer.claim(1)).leases
        await queue.enqueue_many(
            [
                JobSpec({"name": "next"}, job_id="next", priority="high"),
                JobSpec({"name": "normal"}),
                JobSpec({"name": "low"}, priority="low"),
            ]
        )
        half_migrate(redis_cluster, slot, target, queue.keys.job("next"), queue.keys.job("done"))
        # The claim cannot know "next" in advance: complete.lua peeks it, reads its moved hash and stops
        # before popping it.
        with pytest.raises(ResponseError, match="non local key"):
            await consumer.claim(1)
        with pytest.raises(ClusterError):  # declared job keys: refused up front
            await consumer.complete(lease, {"ok": True})
        finish_migration(redis_cluster, slot, source, target)
        assert (await states_of(queue, "next"), await states_of(queue, "done")) == (["waiting"], ["active"])
        statuses, leases, _ = await consumer.complete_and_claim([(lease, {"ok": True})], 1)
        assert statuses == [True] and [each.job.id for each in leases] == ["next"]
        assert (await states_of(queue, "next"), await states_of(queue, "done")) == (["active"], ["completed"])
        assert await client.get(queue.keys.dedupe("model:region")) is None
    finally:
        await client.aclose()
