"""How long runs and audit entries stay: the managers' logRetentionDays and auditRetentionDays
are TTL indexes; each job's keepRuns and /job/delete's purgeLogs are the managers' clean-up
(gdts.manager.retention), checked here against real MongoDB and etcd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from gdts.clock import now_ms
from gdts.etcd import EtcdClient
from gdts.keys import KeyLayout
from gdts.livelog import COLLECTION as LIVE_CHUNKS
from gdts.livelog import LiveLog, chunk_document
from gdts.manager.app import SERVER_ARGS, create_app
from gdts.manager.audit import AUDIT, AuditTrail
from gdts.manager.retention import PURGES, Retention
from gdts.mongo import open_mongo
from gdts.runlog import COLLECTION, LAST_RUNS, RunLog
from gdts.runrecord import RunRecord, RunStatus
from tests.integration.test_api import as_admin, call, manager_config
from tests.support import Stack, wait_until

pytestmark = pytest.mark.asyncio
DAY_MS = 86_400_000


def _run(name: str, end_ms: int) -> RunRecord:
    return RunRecord(
        job_name=name, command="true", worker="w", plan_time=end_ms - 9,
        schedule_time=end_ms - 9, start_time=end_ms - 5, end_time=end_ms,
        output="", err="", exit_code=0, status=RunStatus.SUCCEEDED,
    )  # fmt: skip


def _runs(name: str, count: int, first_end_ms: int) -> list[dict[str, Any]]:
    return [_run(name, first_end_ms + 1000 * i).to_document() for i in range(count)]


@pytest_asyncio.fixture
async def mongo(stack: Stack) -> AsyncIterator[Any]:
    client = open_mongo(stack.mongo_uri, 3000)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # The manager's own clean-up makes its first pass at start and not again during a test:
    # the tests drive passes themselves, as other managers would.
    test_client = as_admin(create_app(manager_config(stack, retention_interval=3600)))
    await test_client.server.start_server(**SERVER_ARGS)
    async with test_client:
        yield test_client


def _retention(mongo: Any, etcd: EtcdClient, stack: Stack, **tuning: Any) -> Retention:
    return Retention(mongo, stack.database, etcd, KeyLayout(stack.prefix), interval_s=3600,
                     **tuning)  # fmt: skip


async def test_runs_carry_their_end_as_a_date_and_the_managers_setting_sets_the_ttl(
    stack: Stack, mongo: Any
) -> None:
    runs = mongo[stack.database][COLLECTION]
    worker_log = RunLog(mongo, stack.database)
    await worker_log.ensure_indexes()  # a worker's: the retention is not its to set
    assert "ended_at" not in await runs.index_information()
    record = _run("dated", 1_765_000_000_123)
    await worker_log.insert([record.to_document()])
    stored = await runs.find_one({"jobName": "dated"})
    assert stored is not None
    ended = stored["endedAt"].replace(tzinfo=UTC)
    assert ended == datetime(2025, 12, 6, 5, 46, 40, 123000, tzinfo=UTC)
    assert "endedAt" not in record.to_document()  # the record itself stays plain JSON

    await RunLog(mongo, stack.database).ensure_indexes(30)
    index = (await runs.index_information())["ended_at"]
    assert index["key"] == [("endedAt", 1)] and index["expireAfterSeconds"] == 30 * 86400
    await RunLog(mongo, stack.database).ensure_indexes(7)  # changed: the index is kept
    assert (await runs.index_information())["ended_at"]["expireAfterSeconds"] == 7 * 86400
    await RunLog(mongo, stack.database).ensure_indexes(0)  # for ever
    assert (await runs.index_information())["ended_at"]["expireAfterSeconds"] == 2**31 - 1


async def test_the_ttl_removes_old_runs_and_old_audit_entries_and_keeps_new_ones(
    stack: Stack, mongo: Any, etcd: EtcdClient
) -> None:
    database = mongo[stack.database]
    runs, audit = database[COLLECTION], database[AUDIT]
    # An audit trail made before auditRetentionDays had a plain index on "at": it becomes the
    # TTL index, in place.
    await audit.create_index([("at", -1)], name="at")
    trail = AuditTrail(mongo, stack.database)
    await trail.ensure_indexes(365)
    assert (await audit.index_information())["at"]["expireAfterSeconds"] == 365 * 86400
    await trail.ensure_indexes(0)
    assert (await audit.index_information())["at"]["expireAfterSeconds"] == 2**31 - 1
    await trail.ensure_indexes(1)
    run_log = RunLog(mongo, stack.database)
    await run_log.ensure_indexes(1)
    now = now_ms()
    await run_log.insert([_run("ttl", now - 2 * DAY_MS).to_document(),
                          _run("ttl", now).to_document()])  # fmt: skip
    # Runs written before endedAt existed: the clean-up's backfill dates them from their
    # endTime, then the TTL index sees them too (the old one goes, the recent one stays).
    undated_old = _run("ttl", now - 3 * DAY_MS).to_document()
    undated_new = _run("ttl", now - 3_600_000).to_document()
    await runs.insert_many([undated_old, undated_new])
    await audit.insert_many([{"at": datetime.fromtimestamp((now - 2 * DAY_MS) / 1000, UTC),
                              "action": "old"},
                             {"at": datetime.now(UTC), "action": "new"}])  # fmt: skip
    await _retention(mongo, etcd, stack).pass_once()
    dated = await runs.find_one({"_id": undated_new["_id"]})
    assert dated is not None
    assert dated["endedAt"] == datetime.fromtimestamp((now - 3_600_000) / 1000, UTC)

    # The session's mongod runs its TTL monitor every second (see tests/conftest.py).
    async def only_new_left() -> bool:
        plans = {run["planTime"] async for run in runs.find({"jobName": "ttl"})}
        actions = {entry["action"] async for entry in audit.find()}
        return plans == {now - 9, now - 3_600_009} and actions == {"new"}

    await wait_until(only_new_left, 10, "the TTL monitor to remove the old documents only")


async def test_keep_runs_keeps_the_last_n_of_each_job_that_sets_it(
    stack: Stack, mongo: Any, etcd: EtcdClient, client: TestClient[web.Request, web.Application]
) -> None:
    def job(name: str, **fields: Any) -> dict[str, str]:
        return {"job": json.dumps({"name": name, "command": "true", "cronExpr": "0 0 * * *",
                                   **fields})}  # fmt: skip

    for bad in (0, -1, "x", 1_000_001):
        status, body = await call(client, "POST", "/job/save", data=job("trimmed", keepRuns=bad))
        assert (status, body["field"]) == (400, "keepRuns"), body
    status, body = await call(client, "POST", "/job/save", data=job("trimmed", keepRuns=5))
    assert status == 200, body
    status, body = await call(client, "POST", "/job/save", data=job("untouched"))
    assert status == 200, body
    status, body = await call(client, "GET", "/job/list")
    assert {j["name"]: j["keepRuns"] for j in body["data"]} == {"trimmed": 5, "untouched": None}

    run_log = RunLog(mongo, stack.database)
    start = now_ms() - DAY_MS
    await run_log.insert(_runs("trimmed", 40, start) + _runs("untouched", 40, start))
    runs = mongo[stack.database][COLLECTION]

    async def write_meanwhile() -> None:
        # A worker's results keep arriving while the clean-up works (newer than all before).
        for i in range(10):
            await run_log.insert(_runs("trimmed", 2, start + 100_000 + 2000 * i)
                                 + _runs("untouched", 2, start + 100_000 + 2000 * i))  # fmt: skip
            await asyncio.sleep(0.01)

    retention = _retention(mongo, etcd, stack, batch=4, pause_s=0.01)
    await asyncio.gather(retention.pass_once(), write_meanwhile())
    await retention.pass_once()  # what arrived during the first pass is trimmed by the next
    kept = await runs.find({"jobName": "trimmed"}).sort("startTime", -1).to_list()
    all_ends = sorted((d["endTime"] for d in _runs("trimmed", 40, start)), reverse=True)
    newest = sorted({start + 100_000 + 2000 * i + k * 1000 for i in range(10) for k in (0, 1)},
                    reverse=True)[:5]  # fmt: skip
    assert [run["endTime"] for run in kept] == newest
    assert max(all_ends) < min(newest)
    assert await runs.count_documents({"jobName": "untouched"}) == 60
    # Nothing to do: the next pass deletes nothing, and another manager's is the same.
    await _retention(mongo, etcd, stack).pass_once()
    assert await runs.count_documents({"jobName": "trimmed"}) == 5


async def test_purge_logs_removes_only_the_deleted_jobs_runs_and_resumes_elsewhere(
    stack: Stack, mongo: Any, etcd: EtcdClient, client: TestClient[web.Request, web.Application]
) -> None:
    database = mongo[stack.database]
    runs, last_runs, purges = database[COLLECTION], database[LAST_RUNS], database[PURGES]
    for name in ("gone", "gone-too", "stays", "bystander"):
        job = {"name": name, "command": "true", "cronExpr": "0 0 * * *"}
        status, body = await call(client, "POST", "/job/save", data={"job": json.dumps(job)})
        assert status == 200, body
    run_log = RunLog(mongo, stack.database)
    start = now_ms() - DAY_MS
    await run_log.insert([*_runs("gone", 40, start), *_runs("gone-too", 10, start),
                          *_runs("stays", 10, start), *_runs("bystander", 10, start)])  # fmt: skip

    status, body = await call(
        client, "POST", "/job/delete", data={"name": "gone", "purgeLogs": "maybe"}
    )
    assert (status, body["field"]) == (400, "purgeLogs"), body
    status, body = await call(client, "POST", "/job/delete", data={"name": "stays"})
    assert status == 200 and "purge" not in body, body
    status, body = await call(
        client, "POST", "/job/delete", data={"name": "gone", "purgeLogs": "true"}
    )
    assert status == 200 and body["data"]["name"] == "gone", body
    deleted_at = body["purge"]["before"]
    assert body["purge"]["job"] == "gone" and deleted_at >= start + 40_000
    status, body = await call(
        client, "POST", "/job/delete", json={"name": "gone-too", "purgeLogs": True}
    )
    assert status == 200 and body["purge"]["job"] == "gone-too", body
    status, body = await call(client, "GET", "/audit", params={"action": "job.delete"})
    details = {entry["job"]: entry["detail"]["purgeLogs"] for entry in body["data"]}
    assert details == {"gone": True, "gone-too": True, "stays": False}
    # A job of the same name saved again: its runs are planned after the deletion and stay.
    job = {"name": "gone", "command": "true", "cronExpr": "0 0 * * *"}
    status, body = await call(client, "POST", "/job/save", data={"job": json.dumps(job)})
    assert status == 200, body
    await run_log.insert([_run("gone", deleted_at + 1000).to_document()])
    # Live output a dead worker left: of the old job (goes) and of the new one (stays).
    chunks = database[LIVE_CHUNKS]
    await LiveLog(mongo, stack.database).insert([
        chunk_document(("gone-too", start + 991, 1), 0, b"partial", "w", datetime.now(UTC)),
        chunk_document(("gone", deleted_at + 5000, 1), 0, b"going on", "w", datetime.now(UTC)),
    ])  # fmt: skip

    # One manager starts the purge and stops halfway (a restart); another carries it on.
    first = _retention(mongo, etcd, stack, batch=5, pause_s=0.2)
    working = asyncio.create_task(first.run())
    await wait_until(lambda: _fewer_than(runs, "gone", 41), 10, "the purge to begin")
    # Another manager's pass meanwhile finds the lease held and leaves the work to the holder
    # (had it worked, its batches of 1,000 would have finished both purges at once).
    await _retention(mongo, etcd, stack).pass_once()
    assert await purges.count_documents({}) == 2
    first.stop()
    await working
    assert 0 < await runs.count_documents({"jobName": "gone", "planTime": {"$lt": deleted_at}})
    assert await purges.count_documents({}) == 2  # both still to do, recorded in MongoDB
    await _retention(mongo, etcd, stack).pass_once()

    left = await runs.find({"jobName": {"$in": ["gone", "gone-too"]}}).to_list()
    assert [(run["jobName"], run["planTime"]) for run in left] == [("gone", deleted_at + 991)]
    assert await runs.count_documents({"jobName": "stays"}) == 10  # deleted without purgeLogs
    assert await runs.count_documents({"jobName": "bystander"}) == 10
    assert await purges.count_documents({}) == 0
    assert [c["jobName"] async for c in chunks.find()] == ["gone"]
    summaries = {s["_id"]: s["planTime"] async for s in last_runs.find()}
    assert "gone-too" not in summaries and summaries["gone"] == deleted_at + 991
    assert {"stays", "bystander"} <= summaries.keys()


async def _fewer_than(runs: Any, job: str, count: int) -> bool:
    return await runs.count_documents({"jobName": job}) < count
