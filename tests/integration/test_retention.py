"""How long runs stay: the managers' logRetentionDays is a TTL index on each run's end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gdts.mongo import open_mongo
from gdts.runlog import COLLECTION, RunLog
from gdts.runrecord import RunRecord, RunStatus
from tests.support import Stack

pytestmark = pytest.mark.asyncio


def _run(name: str, end_ms: int) -> RunRecord:
    return RunRecord(
        job_name=name, command="true", worker="w", plan_time=end_ms - 9,
        schedule_time=end_ms - 9, start_time=end_ms - 5, end_time=end_ms,
        output="", err="", exit_code=0, status=RunStatus.SUCCEEDED,
    )  # fmt: skip


async def test_runs_carry_their_end_as_a_date_and_the_managers_setting_sets_the_ttl(
    stack: Stack,
) -> None:
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
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
    finally:
        await mongo.close()
