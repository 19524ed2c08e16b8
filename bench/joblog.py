"""``--log-runs N``: one job with N runs in MongoDB, and how fast ``GET /job/log`` pages them.

The runs are written straight into the manager's database (as workers would write them, with
the indexes a worker creates before its first write): producing a million runs through real
ticks would take days, and what is measured here is the read path only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.analysis import distribution
from gdts.runlog import COLLECTION, RunLog
from gdts.runrecord import RunRecord, RunStatus

_INSERT_BATCH = 10_000
_SAMPLES = 50


@dataclass(frozen=True)
class LogParams:
    runs: int
    name_prefix: str


def _run_document(job: str, i: int, start_ms: int) -> dict[str, Any]:
    plan = start_ms + i * 1000
    status = RunStatus.SUCCEEDED if i % 10 else RunStatus.FAILED
    return RunRecord(
        job_name=job,
        command="echo hello",
        worker="b1",
        plan_time=plan,
        schedule_time=plan,
        start_time=plan + 3,
        end_time=plan + 8,
        output=f"hello {i}\n",
        err="" if status is RunStatus.SUCCEEDED else "exit status 1",
        exit_code=0 if status is RunStatus.SUCCEEDED else 1,
        status=status,
    ).to_document()


async def run_job_log(
    session: aiohttp.ClientSession,
    base_url: str,
    headers: dict[str, str],
    mongo_uri: str,
    database: str,
    params: LogParams,
) -> dict[str, Any]:
    job = f"{params.name_prefix}-log"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        await RunLog(client, database).ensure_indexes()
        runs = client[database][COLLECTION]
        print(f"-- writing {params.runs:,} runs of {job} into MongoDB", flush=True)
        started = time.perf_counter()
        base = int(time.time() * 1000) - params.runs * 1000
        for first in range(0, params.runs, _INSERT_BATCH):
            batch = range(first, min(first + _INSERT_BATCH, params.runs))
            await runs.insert_many([_run_document(job, i, base) for i in batch], ordered=False)
        write_s = time.perf_counter() - started
        plan = await runs.find({"jobName": job}).sort([("startTime", -1)]).limit(20).explain()
        winning = plan.get("queryPlanner", {}).get("winningPlan", {})
    finally:
        await client.close()

    result: dict[str, Any] = {"runs": params.runs, "write_seconds": write_s}
    result["plan_stages"] = _stages(winning)
    pages: dict[str, dict[str, int]] = {
        "first page (limit 20)": {},
        "skip 1,000": {"skip": 1000},
        "skip 100,000": {"skip": 100_000},
    }
    timings: dict[str, Any] = {}
    for label, extra in pages.items():
        if extra.get("skip", 0) >= params.runs:
            continue
        query = {"name": job, "limit": "20", **{k: str(v) for k, v in extra.items()}}
        seconds = []
        for _ in range(_SAMPLES):
            t0 = time.perf_counter()
            async with session.get(base_url + "/job/log", params=query, headers=headers) as resp:
                body = await resp.json(content_type=None)
            seconds.append(time.perf_counter() - t0)
            if resp.status != 200 or len(body.get("data") or []) != 20:
                raise RuntimeError(f"/job/log {label}: HTTP {resp.status} {str(body)[:200]}")
        timings[label] = distribution(seconds)
    result["latency_s"] = timings
    return result


def _stages(plan: dict[str, Any]) -> list[str]:
    """The winning plan's stages, outermost first (IXSCAN means the index answers it)."""
    stages = []
    while plan:
        stages.append(str(plan.get("stage")))
        plan = plan.get("inputStage") or {}
    return stages
