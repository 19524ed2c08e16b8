"""Failover of the stores themselves: a three-member etcd cluster losing its leader, and a
three-member MongoDB replica set losing its primary, under jobs that run every second."""

from __future__ import annotations

import dataclasses

import pytest

from tests.clusters import EtcdCluster, MongoReplicaSet
from tests.support import (
    EVERY_SECOND,
    Cluster,
    Stack,
    api_get,
    api_post,
    count_after,
    now_ms,
    read_ticks,
    record_command,
    save_job,
    tick_report,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.fault, pytest.mark.waits]


async def test_etcd_leader_killed_no_duplicate_misses_only_in_the_election(stack: Stack) -> None:
    etcd = EtcdCluster(stack.tmp / "etcd", log_dir=stack.tmp)
    await etcd.start()
    own = dataclasses.replace(stack, etcd_endpoint=",".join(etcd.endpoints))
    cluster = Cluster(own)
    endpoints = etcd.endpoints
    try:
        started = await cluster.start_together(
            cluster.start_manager(etcdEndpoints=endpoints),
            *(cluster.start_worker(f"w{i}", etcdEndpoints=endpoints) for i in (1, 2, 3)),
        )
        workers = started[1:]
        ticks = stack.tmp / "ticks.txt"
        await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
        await wait_until(lambda: count_after(ticks, 0, 3), 30, "the job to run")
        begin = now_ms()
        leader = await etcd.leader_index()
        await etcd.kill_member(leader)
        killed_at = now_ms()
        await etcd.wait_healthy(30)
        elected_at = now_ms()
        await wait_until(lambda: count_after(ticks, elected_at + 3000, 3), 30, "runs after it")
        await etcd.restart_member(leader)
        restarted_at = now_ms()
        await wait_until(lambda: count_after(ticks, restarted_at + 1000, 3), 30,
                         "runs after the member came back")  # fmt: skip
        assert all(w.process.returncode is None for w in workers)  # healed without restarts
        assert len(await api_get(cluster.api, "/worker/list")) == 3
        await api_post(cluster.api, "/job/delete", name="beat")
        duplicates, misses = tick_report(ticks, begin, now_ms() - 3000)
        assert duplicates == {}
        ttl_ms = stack.worker_config()["workerLeaseTtl"] * 1000
        outside = [m for m in misses if not killed_at - 1000 <= m <= elected_at + ttl_ms]
        assert outside == [], f"missed outside the election window: {outside}"
    finally:
        await cluster.stop_all()
        await etcd.stop()


async def test_mongodb_primary_killed_every_result_is_stored(stack: Stack) -> None:
    replicas = MongoReplicaSet(stack.tmp / "mongo", log_dir=stack.tmp)
    await replicas.start()
    own = dataclasses.replace(stack, mongo_uri=replicas.uri)
    cluster = Cluster(own)
    try:
        await cluster.start_together(
            cluster.start_manager(), *(cluster.start_worker(f"w{i}") for i in (1, 2, 3))
        )
        ticks = stack.tmp / "ticks.txt"
        await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
        await wait_until(lambda: api_get(cluster.api, "/job/log", name="beat"), 30, "a result")
        primary = await replicas.primary_index()
        await replicas.kill_member(primary)
        killed_at = now_ms()
        await replicas.wait_primary(60)
        await wait_until(lambda: count_after(ticks, killed_at + 3000, 3), 30, "runs after it")
        await replicas.restart_member(primary)
        await api_post(cluster.api, "/job/delete", name="beat")

        async def all_stored() -> bool:
            stored = sorted(
                r["planTime"]
                for r in await api_get(cluster.api, "/job/log", name="beat", limit=1000)
            )
            return stored == sorted(plan for plan, _ in read_ticks(ticks))

        await wait_until(all_stored, 60, "every finished run's result in MongoDB")
    finally:
        await cluster.stop_all()
        await replicas.stop()
