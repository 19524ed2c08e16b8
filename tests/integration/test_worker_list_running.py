"""``/worker/list`` names the jobs each worker runs now, read from the running markers in etcd
(``lock/running/<job>`` and, for policy ``allow``, ``lock/running/<job>/<ms>``), whose value
names the worker that holds them."""

from __future__ import annotations

import json

import pytest

from gdts.etcd import EtcdClient
from gdts.keys import KeyLayout
from gdts.manager.jobstore import JobStore
from tests.support import Stack

pytestmark = pytest.mark.asyncio


def marker(worker: str, plan_ms: int) -> bytes:
    return json.dumps({"worker": worker, "planTime": plan_ms, "claimedAt": plan_ms}).encode()


async def test_each_worker_lists_the_jobs_it_runs_now(etcd: EtcdClient, stack: Stack) -> None:
    keys = KeyLayout(stack.prefix)
    store = JobStore(etcd, keys, kill_marker_ttl=5)
    lease = await etcd.lease(10)
    try:
        for worker_id in ("w-1", "w-2"):
            info = {"id": worker_id, "host": "h", "pid": 7, "startedAt": 1}
            await etcd.put(keys.worker(worker_id), json.dumps(info).encode(), lease=lease)
        await etcd.put(keys.running("backup", 1), marker("w-1", 1000), lease=lease)
        # Two overlapping runs of one "allow" job on w-1 list it once; w-2 runs one more.
        await etcd.put(keys.running("report", 1, 2000), marker("w-1", 2000), lease=lease)
        await etcd.put(keys.running("report", 1, 3000), marker("w-1", 3000), lease=lease)
        await etcd.put(keys.running("sync", 1), marker("w-2", 1000), lease=lease)
        # A marker held by a worker that is gone, and one that is not ours, are left out.
        await etcd.put(keys.running("orphan", 1), marker("w-9", 1000), lease=lease)
        await etcd.put(keys.running("junk", 1), b"not json", lease=lease)

        workers = {w["id"]: w for w in await store.workers()}
        # Registrations of an older worker: routing's defaults (no labels, weight 1, busy 0).
        defaults = {"labels": {}, "weight": 1, "busy": 0}
        assert workers == {
            "w-1": {"id": "w-1", "host": "h", "pid": 7, "startedAt": 1, **defaults,
                    "running": ["backup", "report"]},
            "w-2": {"id": "w-2", "host": "h", "pid": 7, "startedAt": 1, **defaults,
                    "running": ["sync"]},
        }  # fmt: skip

        await etcd.delete(keys.running("sync", 1))
        assert {w["id"]: w["running"] for w in await store.workers()}["w-2"] == []
    finally:
        await lease.revoke()
    assert await store.workers() == []
