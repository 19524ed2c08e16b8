"""/job/log answers in bounded memory: a page's outputs share 1 MiB, each cut one says its
whole length, and /job/output gives one run's whole output. The manager's peak RSS stays under
300 MB while 20 clients page through 1,000 runs of 1 MiB each, 100 at a time, and while one
reads all 1,000 in one page (whole, that page was about 1 GB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from gdts.runlog import RunLog
from tests.support import Cluster, api_get, now_ms

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

RUNS = 1000
OUTPUT_CHARS = 1024 * 1024
CLIENTS = 20
PEAK_LIMIT_MB = 300


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the process's peak resident set so far
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def store_runs(cluster: Cluster) -> None:
    config = cluster.stack.store_config()
    client: AsyncMongoClient = AsyncMongoClient(config["mongodbUri"])
    try:
        # As a worker finds it: with the run log's indexes (the first result a worker writes
        # makes them), so a page is read along (jobName, startTime), never sorted in memory.
        await RunLog(client, config["mongodbDatabase"]).ensure_indexes()
        runs = client[config["mongodbDatabase"]]["job_log"]
        # Ended lately, as a worker writes them (endedAt included): older than the managers'
        # logRetentionDays, the TTL monitor (every second in tests) would remove them mid-test.
        base = now_ms() - 2 * RUNS * 1000
        for first in range(0, RUNS, 40):
            await runs.insert_many([
                {"jobName": "loud", "command": "yes", "err": "", "exitCode": 0,
                 "status": "succeeded", "worker": "w", "attempt": 1, "trigger": "schedule",
                 "planTime": base + i * 1000, "scheduleTime": base + i * 1000,
                 "startTime": base + i * 1000, "endTime": base + i * 1000 + 5,
                 "endedAt": datetime.fromtimestamp((base + i * 1000 + 5) / 1000, UTC),
                 "output": f"{i:06d}" + "y" * (OUTPUT_CHARS - 6)}
                for i in range(first, min(RUNS, first + 40))
            ])  # fmt: skip
    finally:
        await client.close()


async def test_paging_through_a_thousand_runs_of_a_mebibyte_stays_small(cluster: Cluster) -> None:
    manager = await cluster.start_manager()
    await store_runs(cluster)
    before_mb = peak_rss_mb(manager.pid)

    async def page_through() -> int:
        seen = 0
        for skip in range(0, RUNS, 100):
            page = await api_get(cluster.api, "/job/log", name="loud", skip=skip, limit=100)
            seen += len(page)
        return seen

    assert await asyncio.gather(*(page_through() for _ in range(CLIENTS))) == [RUNS] * CLIENTS
    peak_mb = peak_rss_mb(manager.pid)
    print(f"manager peak RSS {peak_mb:.0f} MB (before the reads {before_mb:.0f} MB)")
    assert peak_mb < PEAK_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB (before the reads {before_mb:.0f})"

    # Each page's outputs share 1 MiB: 1,000 runs show 1 KiB each, 20 runs 52 KiB each, and a
    # cut output says how long the whole one is. (One page of all 1,000 at a time: MongoDB
    # reads 1 GB for it, whatever it answers.)
    newest = await api_get(cluster.api, "/job/log", name="loud", limit=1000)
    assert peak_rss_mb(manager.pid) < PEAK_LIMIT_MB
    assert {len(run["output"]) for run in newest} == {1024 * 1024 // 1000}
    assert {run["outputBytes"] for run in newest} == {OUTPUT_CHARS}
    first_page = await api_get(cluster.api, "/job/log", name="loud")
    assert len(first_page) == 20 and len(first_page[0]["output"]) == 1024 * 1024 // 20
    # The whole output of one run, by its own endpoint.
    run = first_page[0]
    whole = await api_get(
        cluster.api, "/job/output", name="loud", planTime=run["planTime"], attempt=1
    )
    assert len(whole["output"]) == OUTPUT_CHARS and whole["output"].startswith(run["output"])
