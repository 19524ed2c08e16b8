"""GET /dashboard/summary against runs the test writes through RunLog.insert: every figure of a
rolled-up minute, a late result counted after the rollup loop's next pass, and the minute going
on now computed live; with one manager, whose own loop runs beside the test's passes (both
write the same minutes)."""

from __future__ import annotations

from typing import Any

import pytest

from gdts.clock import now_ms
from gdts.manager.rollups import RollupLoop
from gdts.manager.runminutes import RunMinutes
from gdts.mongo import open_mongo
from gdts.runlog import DIRTY_MINUTES, RunLog
from gdts.runrecord import RunRecord, RunStatus
from gdts.runstats import MINUTE_MS, QUARTER_MS, bucket_upper_ms, lag_bucket
from tests.support import Cluster, api_call, api_get

pytestmark = pytest.mark.asyncio


def _run(job: str, status: RunStatus, end_ms: int, lag_ms: int | None, i: int) -> dict[str, Any]:
    plan = end_ms - 1000 - i  # distinct planned times: the unique (job, tick, attempt) index
    return RunRecord(
        job_name=job, command="true", worker="w1", plan_time=plan, schedule_time=plan,
        start_time=None if lag_ms is None else plan + lag_ms, end_time=end_ms, output="",
        err="", exit_code=0, status=status,
    ).to_document()  # fmt: skip


def _p(lag_ms: int) -> float:
    return round(bucket_upper_ms(lag_bucket(lag_ms)), 3)


async def test_the_dashboards_figures_are_the_runs_written(cluster: Cluster) -> None:
    stack = cluster.stack
    await cluster.start_manager()
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        minutes = RunMinutes(mongo, stack.database)

        async def no_workers() -> int:
            return 0

        loop = RollupLoop(minutes, no_workers)
        # A minute of a quarter hour that ended two minutes ago or more: closed and settled
        # with its quarter (the day's window reads quarters), in the hour, and late when
        # written (as a worker's results held through a MongoDB outage are).
        ended = now_ms() - 2 * MINUTE_MS
        old = ended - ended % QUARTER_MS - 5 * MINUTE_MS
        quarter = old - old % QUARTER_MS
        runs = [
            _run("ok", RunStatus.SUCCEEDED, old + 1000, 5, 1),
            _run("ok", RunStatus.SUCCEEDED, old + 2000, 50, 2),
            _run("ok", RunStatus.SUCCEEDED, old + 3000, 500, 3),
            _run("bad", RunStatus.FAILED, old + 4000, 5, 4),
            _run("bad", RunStatus.FAILED, old + 5000, 5, 5),
            _run("slow", RunStatus.TIMEOUT, old + 6000, 5, 6),
            _run("ok", RunStatus.KILLED, old + 7000, 5, 7),
            _run("gone", RunStatus.MISSED, old + 8000, None, 8),
            _run("gone", RunStatus.LOST, old + 9000, 3, 9),  # a claim time: no lag
        ]
        await runlog.insert(runs)
        await loop.run_pass()
        assert await mongo[stack.database][DIRTY_MINUTES].count_documents({}) == 0
        stored = (await minutes.read(old, old + MINUTE_MS))[old]
        assert stored.counts == {"succeeded": 3, "failed": 2, "timeout": 1, "killed": 1,
                                 "missed": 1, "lost": 1}  # fmt: skip
        assert stored.lag == {lag_bucket(5): 5, lag_bucket(50): 1, lag_bucket(500): 1}
        assert stored.failing == {"bad": 2, "slow": 1, "gone": 1}
        assert (await minutes.read(quarter, old + 1, quarters=True))[quarter] == stored

        hour = await api_get(cluster.api, "/dashboard/summary", window="hour")
        assert hour["rolledUpTo"] > old
        assert hour["runs"] == {"succeeded": 3, "failed": 2, "killed": 1, "timeout": 1,
                                "limit": 0, "missed": 1, "lost": 1, "skipped": 0}  # fmt: skip
        # Failed, timeout and lost over the 8 that started.
        assert hour["failureRate"] == 4 / 8
        assert (hour["lagP50Ms"], hour["lagP99Ms"]) == (_p(5), _p(500))
        assert (hour["missed"], hour["lost"]) == (1, 1)
        assert hour["topFailing"] == [
            {"jobName": "bad", "failures": 2}, {"jobName": "gone", "failures": 1},
            {"jobName": "slow", "failures": 1},
        ]  # fmt: skip
        at = hour["buckets"].index(old)
        assert hour["perMinute"]["succeeded"][at] == 3
        assert hour["perMinute"]["failed"][at] == 2
        assert hour["runningPerWorker"] == []
        assert 0 in hour["workersOnline"]  # the pass counted the workers online: none

        # A late result for that minute: noted, and counted once the loop has passed again.
        await runlog.insert([_run("bad", RunStatus.FAILED, old + 10_000, 5, 10)])
        noted = await mongo[stack.database][DIRTY_MINUTES].count_documents({})
        # (Or computed again already, by the manager's own loop passing in between.)
        redone = (await minutes.read(old, old + MINUTE_MS))[old].failing["bad"] == 3
        assert noted == 1 or redone
        await loop.run_pass()
        assert (await minutes.read(old, old + MINUTE_MS))[old].failing["bad"] == 3
        assert (await minutes.read(quarter, old + 1, quarters=True))[quarter].failing["bad"] == 3
        # The minute going on now: computed at request time (written as a worker writes it,
        # at once, so not late).
        await runlog.insert([_run("now", RunStatus.SUCCEEDED, now_ms(), 7, 11)])
        day = await api_get(cluster.api, "/dashboard/summary", window="day")
        assert day["bucketMinutes"] == 15 and len(day["buckets"]) == 96
        assert day["runs"]["failed"] == 3 and day["runs"]["succeeded"] == 4
        assert day["topFailing"][0] == {"jobName": "bad", "failures": 3}
        assert day["failureRate"] == 5 / 10

        status, body = await api_call(cluster.api, "GET", "/dashboard/summary?window=week")
        assert status == 400 and body["field"] == "window", body
    finally:
        await mongo.close()


async def test_a_rolled_up_minute_keeps_each_teams_part(cluster: Cluster) -> None:
    # No manager here: its own loop would roll the same minute up with etcd's (empty) teams.
    stack = cluster.stack
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        minutes = RunMinutes(mongo, stack.database)

        async def no_workers() -> int:
            return 0

        async def teams() -> dict[str, str]:
            return {"ok": "alpha", "bad": "beta"}  # "gone" was deleted: in no team

        loop = RollupLoop(minutes, no_workers, teams)
        ended = now_ms() - 2 * MINUTE_MS
        old = ended - ended % QUARTER_MS - 5 * MINUTE_MS
        quarter = old - old % QUARTER_MS
        await runlog.insert([
            _run("ok", RunStatus.SUCCEEDED, old + 1000, 5, 1),
            _run("ok", RunStatus.SUCCEEDED, old + 2000, 50, 2),
            _run("bad", RunStatus.FAILED, old + 3000, 5, 3),
            _run("gone", RunStatus.MISSED, old + 4000, None, 4),
        ])  # fmt: skip
        await loop.run_pass()
        stored = (await minutes.read(old, old + MINUTE_MS))[old]
        assert set(stored.teams) == {"alpha", "beta"}
        assert stored.teams["alpha"].counts == {"succeeded": 2}
        assert stored.teams["alpha"].lag == {lag_bucket(5): 1, lag_bucket(50): 1}
        assert (stored.teams["beta"].counts, stored.teams["beta"].failing) == (
            {"failed": 1},
            {"bad": 1},
        )
        assert stored.counts == {"succeeded": 2, "failed": 1, "missed": 1}
        rolled = (await minutes.read(quarter, old + 1, quarters=True))[quarter]
        assert rolled.of_teams({"alpha", "beta"}).counts == {"succeeded": 2, "failed": 1}
    finally:
        await mongo.close()
