"""Integration tests for the multi-member clusters of tests/clusters.py: real processes, no mocks.

Each test SIGKILLs the leader / primary and checks that the rest elect a new one, keep
accepting writes, and that the killed member rejoins with the data it missed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tests.clusters import EtcdCluster, MongoReplicaSet, mongo_transient, retry_until

T = TypeVar("T")


def _gone(pid: int) -> bool:
    """True once pid is reaped, or is a zombie nobody reaps (e.g. reparented to a lazy init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _eventually(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Poll check() until it returns something other than None, or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.05)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


async def _etcd_put(endpoint: str, key: bytes, value: bytes) -> None:
    async with aetcd.Client(host="127.0.0.1", port=_port(endpoint), timeout=5) as client:
        await client.put(key, value)


async def _etcd_get(endpoint: str, key: bytes, *, serializable: bool = False) -> bytes | None:
    async with aetcd.Client(host="127.0.0.1", port=_port(endpoint), timeout=5) as client:
        result = await client.get(key, serializable=serializable)
    return None if result is None else result.value


@pytest.mark.asyncio
async def test_etcd_cluster_survives_leader_kill(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd", log_dir=tmp_path / "logs")
    assert cluster.members == [] and cluster.endpoints == []  # inert until start()
    pids: list[int] = []
    try:
        began = time.monotonic()
        await cluster.start()
        print(f"\netcd: 3-member cluster healthy in {time.monotonic() - began:.2f}s")
        pids += [m.pid for m in cluster.members if m.pid is not None]
        assert len(pids) == 3
        assert len(set(cluster.endpoints)) == 3
        assert all(e.startswith("127.0.0.1:") for e in cluster.endpoints)

        await _etcd_put(cluster.endpoints[0], b"/gdts/before", b"v1")
        assert await _etcd_get(cluster.endpoints[1], b"/gdts/before") == b"v1"

        leader = await cluster.leader_index()
        await cluster.kill_member(leader)
        assert cluster.members[leader].pid is None
        killed_at = time.monotonic()
        new_leader = await cluster.wait_healthy(timeout=15)
        print(f"etcd: new leader {new_leader} (was {leader}) {time.monotonic() - killed_at:.2f}s")
        assert new_leader != leader
        assert await cluster.leader_index() == new_leader

        survivors = [i for i in range(3) if i != leader]
        await _etcd_put(cluster.endpoints[survivors[0]], b"/gdts/during", b"v2")
        assert await _etcd_get(cluster.endpoints[survivors[1]], b"/gdts/during") == b"v2"

        began = time.monotonic()
        await cluster.restart_member(leader)
        print(f"etcd: killed member rejoined in {time.monotonic() - began:.2f}s")
        restarted_pid = cluster.members[leader].pid
        assert restarted_pid is not None
        pids.append(restarted_pid)
        rejoined = cluster.endpoints[leader]

        # Serializable = from the member's own store, not via the leader: it has caught up.
        async def local_value() -> bytes | None:
            return await _etcd_get(rejoined, b"/gdts/during", serializable=True)

        assert await _eventually(local_value, 10, "rejoined member serves the key") == b"v2"
        assert await _etcd_get(rejoined, b"/gdts/before") == b"v1"
        await cluster.wait_healthy(timeout=10)
    finally:
        await cluster.stop()
    assert all(m.pid is None for m in cluster.members)
    assert all(_gone(pid) for pid in pids), pids
    await cluster.stop()  # idempotent


@pytest.mark.asyncio
async def test_mongo_replica_set_survives_primary_kill(tmp_path: Path) -> None:
    rs = MongoReplicaSet(tmp_path / "mongo", log_dir=tmp_path / "logs")
    assert rs.members == []  # inert until start()
    pids: list[int] = []
    try:
        began = time.monotonic()
        await rs.start()
        print(f"\nmongo: 3-member replica set has a primary in {time.monotonic() - began:.2f}s")
        pids += [m.pid for m in rs.members if m.pid is not None]
        assert len(pids) == 3
        hosts = ",".join(m.endpoint for m in rs.members)
        assert rs.uri == f"mongodb://{hosts}/?replicaSet=rs0"

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            rs.uri, serverSelectionTimeoutMS=2000, retryWrites=True
        )
        try:
            config = (await client.admin.command("replSetGetConfig"))["config"]
            assert len(config["members"]) == 3
            assert config["settings"]["electionTimeoutMillis"] == 1000
            assert config["settings"]["heartbeatIntervalMillis"] == 200

            jobs = client.gdts.jobs
            await jobs.insert_one({"_id": "before"})

            primary = await rs.primary_index()
            await rs.kill_member(primary)
            killed_at = time.monotonic()

            async def insert_after() -> None:
                try:
                    await jobs.insert_one({"_id": "after"})
                except DuplicateKeyError:
                    pass  # an attempt we saw fail had committed after all

            async def timed(aw: Awaitable[T]) -> tuple[T, float]:
                result = await aw
                return result, time.monotonic() - killed_at

            (new_primary, elected_in), (_, inserted_in) = await asyncio.gather(
                timed(rs.wait_primary(timeout=20)),
                timed(retry_until(insert_after, timeout=20, transient=mongo_transient)),
            )
            print(
                f"mongo: new primary {new_primary} (was {primary}) in {elected_in:.2f}s, "
                f"insert through the failover done in {inserted_in:.2f}s"
            )
            assert new_primary != primary
            assert await jobs.count_documents({}) == 2
        finally:
            await client.close()

        began = time.monotonic()
        await rs.restart_member(primary)
        print(f"mongo: old primary rejoined in {time.monotonic() - began:.2f}s")
        restarted_pid = rs.members[primary].pid
        assert restarted_pid is not None
        pids.append(restarted_pid)
        await rs.wait_secondary(primary, timeout=20)
        hello = await rs.hello(primary)
        assert hello["secondary"] and not hello["isWritablePrimary"]
        assert await rs.primary_index() != primary

        # It replicated the insert it missed (direct connection: read on the secondary itself).
        member: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            rs.members[primary].uri, serverSelectionTimeoutMS=2000
        )
        try:

            async def replicated() -> dict[str, Any] | None:
                return await member.gdts.jobs.find_one({"_id": "after"})

            assert await _eventually(replicated, 10, "rejoined member has the insert")
        finally:
            await member.close()
    finally:
        await rs.stop()
    assert all(m.pid is None for m in rs.members)
    assert all(_gone(pid) for pid in pids), pids
    await rs.stop()  # idempotent
