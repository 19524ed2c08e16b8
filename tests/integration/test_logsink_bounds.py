"""The worker's result buffer is bounded in bytes, and so is its spill directory: with MongoDB
away (a port nothing listens on), big results go to disk once memory holds its limit, and the
oldest spilled ones are given up, counted, once the directory holds its own."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from gdts.localstack import free_port
from gdts.runlog import RunLog
from gdts.runrecord import RunRecord, RunStatus
from gdts.worker.logsink import LogSink
from gdts.worker.spill import SpillDir
from tests.support import holds, wait_until

pytestmark = pytest.mark.asyncio

KIB = 1024


def big_run(i: int) -> RunRecord:
    return RunRecord(
        job_name="loud", command="yes", worker="w", plan_time=1_796_000_000_000 + i * 1000,
        schedule_time=1_796_000_000_000 + i * 1000, start_time=1_796_000_000_000 + i * 1000,
        end_time=1_796_000_000_000 + i * 1000 + 5, output="y" * (200 * KIB), err="",
        exit_code=0, status=RunStatus.SUCCEEDED,
    )  # fmt: skip


async def test_memory_and_disk_hold_at_most_their_bytes(tmp_path: Path) -> None:
    client: AsyncMongoClient = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=100
    )
    spill = SpillDir(tmp_path / "spill")
    sink = LogSink(
        RunLog(client, "gdts"), batch_size=100, commit_timeout_s=0.05, limit=1000, spill=spill,
        limit_bytes=1024 * KIB, spill_limit_bytes=3 * 1024 * KIB,
    )  # fmt: skip
    writer = asyncio.ensure_future(sink.run())
    try:
        most_in_memory = 0
        for i in range(40):  # 8 MB of output in all
            sink.add(big_run(i))
            most_in_memory = max(most_in_memory, sink.pending_bytes)
            await asyncio.sleep(0)  # the writer gets its turn, as between runs
            await wait_until(
                holds(lambda: sink.pending_bytes <= 1024 * KIB), 10, "memory within its limit"
            )
        await wait_until(holds(lambda: sink.dropped > 0), 10, "the oldest spilled given up")
        # One record over the limit at most before the writer moves the oldest to disk.
        assert most_in_memory <= 1024 * KIB + 201 * KIB
        assert spill.size() <= 3 * 1024 * KIB
        on_disk = sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "spill").iterdir())
        # Every result is in memory, on disk or counted as given up: none vanished unseen.
        assert len(sink) + on_disk + sink.dropped == 40
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await client.close()
