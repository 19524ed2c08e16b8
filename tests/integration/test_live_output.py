"""Live output against real servers: the flusher writes long runs' new bytes in one bulk insert
per interval (nothing for short runs) and removes a run's chunks once its record is stored; the
manager answers /job/output from an offset while the run goes on, and streams it as
Server-Sent Events until the run's end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from gdts.livelog import COLLECTION, LiveLog
from gdts.worker.liveflush import GoingOn, LiveOutput
from gdts.worker.outputcap import OutputCap
from tests.support import (
    ADMIN_TOKEN,
    Cluster,
    Stack,
    api_call,
    api_get,
    api_post,
    save_job,
    wait_until,
)

pytestmark = pytest.mark.asyncio


class CountingLiveLog(LiveLog):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.inserts: list[int] = []  # chunks per bulk insert
        self.deletes = 0

    async def insert(self, chunks: Sequence[dict[str, Any]]) -> None:
        self.inserts.append(len(chunks))
        await super().insert(chunks)

    async def delete(self, runs: Sequence[tuple[str, int, int]]) -> None:
        self.deletes += 1
        await super().delete(runs)


class FakeRunner:
    kill_requested = False
    capture: OutputCap | None = None

    def kill(self, now: bool = False) -> None: ...


async def test_long_runs_are_flushed_in_one_bulk_insert_and_removed_once_stored(
    stack: Stack,
) -> None:
    client: AsyncMongoClient = AsyncMongoClient(stack.mongo_uri)
    store = CountingLiveLog(client, stack.database)
    going: list[GoingOn] = []
    live = LiveOutput(store, "w1", lambda: going, interval_s=0.5, after_s=1.0)
    try:
        for i in range(3):  # long runs, started 5 s ago
            runner = FakeRunner()
            runner.capture = OutputCap(1024)
            runner.capture.feed(f"long {i}\n".encode())
            going.append(GoingOn(runner, ("long", 1000 + i, 1), 95.0, runner.capture))
        short = FakeRunner()
        short.capture = OutputCap(1024)
        short.capture.feed(b"short\n")
        going.append(GoingOn(short, ("short", 1000, 1), 100.5, short.capture))
        await live.flush(now=100.0)
        assert store.inserts == [3]  # one bulk insert for the three long runs, none for short
        await live.flush(now=100.5)
        assert store.inserts == [3]  # nothing new: no write at all
        going[0].capture.feed(b"more\n")  # type: ignore[union-attr]
        await live.flush(now=101.0)
        assert store.inserts == [3, 1]
        assert await store.read(("long", 1000, 1), 0) == (b"long 0\nmore\n", 12)
        assert await store.read(("short", 1000, 1), 0) is None

        # Runs end; the short one never flushed costs no delete. Once the sink stores the
        # records of a batch, one delete removes the chunks of those that had any.
        for run in going:
            live.ended(run.runner, *run.run)
        going.clear()
        live.stored([{"jobName": "long", "planTime": 1000, "attempt": 1},
                     {"jobName": "long", "planTime": 1001, "attempt": 1},
                     {"jobName": "short", "planTime": 1000, "attempt": 1}])  # fmt: skip
        await live.close(timeout_s=5)
        assert store.deletes == 1
        assert await store.read(("long", 1000, 1), 0) is None
        assert await store.read(("long", 1002, 1), 0) == (b"long 2\n", 7)  # not stored yet
    finally:
        await client.close()


LINES_JOB = "for i in $(seq 1 8); do echo line $i; sleep 0.25; done"


async def test_output_of_a_running_run_from_an_offset_and_its_stream_to_the_end(
    cluster: Cluster, stack: Stack
) -> None:
    manager, _ = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", liveOutputAfter=0, liveOutputInterval=100),
    )
    await save_job(cluster.api, "lines", LINES_JOB, "0 0 0 1 1 * 2099")
    plan = (await api_post(cluster.api, "/job/run", name="lines"))["planTime"]
    running = await wait_until(
        lambda: api_get(cluster.api, "/job/running", name="lines"), 10, "the run to start"
    )
    assert running[0]["planTime"] == plan and running[0]["worker"] == "w1"

    async def printed(at_least: str, offset: int = 0):
        async def check():
            part = await api_get(cluster.api, "/job/output", name="lines", planTime=plan,
                                 offset=offset)  # fmt: skip
            return part if at_least in part["output"] else None

        return await wait_until(check, 10, f"{at_least!r} in the live output")

    first = await printed("line 2")
    assert first["running"] is True and "status" not in first
    assert first["output"].startswith("line 1\nline 2\n") and "line 8" not in first["output"]
    assert first["offset"] == len(first["output"].encode())
    rest = await printed("line 4", offset=first["offset"])
    assert not rest["output"].startswith("line 1")  # it goes on where the first read ended

    # The stream, from where the first read ended, to the run's end.
    url = f"{cluster.api}/job/output/stream"
    params = {"name": "lines", "planTime": str(plan), "offset": str(first["offset"])}
    streamed, end = first["output"], None
    async with aiohttp.ClientSession() as session:
        async with session.get(
            url, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            event = ""
            async with asyncio.timeout(20):
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "end":
                            end = data
                            break
                        streamed += data["output"]
    assert end is not None and end["status"] == "succeeded"
    assert streamed == "".join(f"line {i}\n" for i in range(1, 9))
    whole = await api_get(cluster.api, "/job/output", name="lines", planTime=plan)
    assert whole["running"] is False and whole["status"] == "succeeded"
    assert whole["output"] == streamed and whole["offset"] == len(streamed)

    # The record is stored: its worker removed the run's chunks.
    client: AsyncMongoClient = AsyncMongoClient(stack.mongo_uri)
    try:
        chunks = client[stack.database][COLLECTION]

        async def removed() -> bool:
            return await chunks.count_documents({"jobName": "lines"}) == 0

        await wait_until(removed, 10, "the run's chunks to be removed")
    finally:
        await client.close()

    # Bad fields are named; a run that never was is a 404 naming planTime.
    status, body = await api_call(
        cluster.api,
        "GET",
        "/job/output/stream",
        params={"name": "lines", "planTime": "1", "offset": "-1"},
    )
    assert status == 400 and body["field"] == "offset"
    status, body = await api_call(
        cluster.api, "GET", "/job/output/stream", params={"name": "lines", "planTime": "1"}
    )
    assert status == 404 and body["field"] == "planTime"

    # A stream open on a run going on does not hold the manager's shutdown (aiohttp would wait
    # 60 s for it): it ends, and the manager exits at once.
    plan = (await api_post(cluster.api, "/job/run", name="lines"))["planTime"]
    await wait_until(  # asked is not yet going on: /job/output answers 404 until it is
        lambda: api_get(cluster.api, "/job/running", name="lines"), 10, "the run to start"
    )
    await printed("line 1")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            url,
            params={"name": "lines", "planTime": str(plan)},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            assert (await response.content.readline()).startswith(b"data: ")
            started = time.monotonic()
            assert await manager.terminate(grace=10) == 0
            assert time.monotonic() - started < 5
            async with asyncio.timeout(5):
                rest = await response.content.read()
            assert b"event: end" not in rest  # cut short, not ended
