"""Each job's last-run summary ends at its newest run, however the runs reach MongoDB: out of
order, from several workers at once, over a summary written by an older GDTS."""

from __future__ import annotations

import asyncio
import random

import pytest

from gdts.mongo import open_mongo
from gdts.runlog import LAST_RUNS, RunLog
from gdts.runrecord import RunRecord, RunStatus
from tests.support import Stack

pytestmark = pytest.mark.asyncio


def _run(name: str, i: int, worker: str = "w") -> RunRecord:
    return RunRecord(
        job_name=name, command="true", worker=worker, plan_time=1000 * i,
        schedule_time=1000 * i, start_time=1000 * i + 5, end_time=1000 * i + 9,
        output=f"run {i}", err="", exit_code=0, status=RunStatus.SUCCEEDED,
    )  # fmt: skip


async def test_workers_racing_leave_the_newest_run_in_each_summary(stack: Stack) -> None:
    """Eight workers, each with a connection of its own, write a run of the same new job at the
    same moment: all but one find no summary and race to insert it."""
    clients = [open_mongo(stack.mongo_uri, 3000) for _ in range(8)]
    try:
        logs = [RunLog(client, stack.database) for client in clients]
        await logs[0].ensure_indexes()
        shuffled = random.Random(7)
        jobs = [f"job-{j}" for j in range(200)]
        batches = []
        for tick, _ in enumerate(logs, start=1):
            runs = [_run(job, tick, f"w{tick}").to_document() for job in jobs]
            shuffled.shuffle(runs)
            batches.append(runs)
        await asyncio.gather(*(log.insert(b) for log, b in zip(logs, batches, strict=True)))
        summaries = await logs[0].last_runs_of(jobs)
        assert {name: s["planTime"] for name, s in summaries.items()} == dict.fromkeys(
            jobs, len(logs) * 1000
        )
        # Older runs arriving late change nothing.
        await logs[0].insert([_run(job, 0).to_document() for job in jobs])
        summaries = await logs[0].last_runs_of(jobs)
        assert {s["planTime"] for s in summaries.values()} == {len(logs) * 1000}
    finally:
        for client in clients:
            await client.close()


async def test_a_summary_from_before_the_order_field_is_moved_on(stack: Stack) -> None:
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        await runlog.ensure_indexes()
        await mongo[stack.database][LAST_RUNS].insert_one({"_id": "old", "planTime": 1})
        await runlog.insert([_run("old", 9).to_document()])
        assert (await runlog.last_runs_of(["old"]))["old"]["planTime"] == 9000
    finally:
        await mongo.close()
