"""``python -m bench.purge``: does a purge of a million runs (``/job/delete`` with
``purgeLogs=true``) slow the API or the workers' writes?

Its own stack (etcd, mongod, one manager; see bench.stack). One job gets ``--runs`` runs and
another a few thousand, inserted straight into MongoDB. Then, for ``--baseline`` seconds without
a purge and again while the purge of the first job runs: readers page ``/job/log`` of the other
job, and a writer inserts runs as a worker does (RunLog.insert, batches of 100, one every
``--write-every`` ms); both record their latencies. Prints a JSON report and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.analysis import distribution
from bench.api import wait_http_ok
from bench.stack import MONGO_DB, Stack
from gdts.manager.retention import BATCH, PAUSE_S, PURGES
from gdts.runlog import COLLECTION, RunLog
from gdts.runrecord import RunRecord, RunStatus

_INSERT_BATCH = 20_000
_WRITE_BATCH = 100  # a worker's jobLogBatchSize


def _run(job: str, i: int, start_ms: int) -> dict[str, Any]:
    plan = start_ms + i * 1000
    return RunRecord(
        job_name=job, command="echo hello", worker="b1", plan_time=plan, schedule_time=plan,
        start_time=plan + 3, end_time=plan + 8, output=f"hello {i}\n", err="", exit_code=0,
        status=RunStatus.SUCCEEDED,
    ).to_document()  # fmt: skip


async def _fill(run_log: RunLog, job: str, count: int, start_ms: int) -> None:
    for first in range(0, count, _INSERT_BATCH):
        last = min(count, first + _INSERT_BATCH)
        await run_log.insert([_run(job, i, start_ms) for i in range(first, last)])


class _Load:
    """Readers of /job/log and one writer, until ``stop`` is set."""

    def __init__(self, args: argparse.Namespace, base: str, token: str, run_log: RunLog) -> None:
        self.args, self.base, self.token, self.run_log = args, base, token, run_log
        self.reads: list[float] = []
        self.writes: list[float] = []
        self.errors = 0
        self.stop = asyncio.Event()
        self._written = 0

    async def read(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.base}/job/log"
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop.is_set():
            began = time.perf_counter()
            async with session.get(url, params={"name": "other", "limit": "20"},
                                   headers=headers) as response:  # fmt: skip
                await response.read()
                if response.status != 200:
                    self.errors += 1
            self.reads.append((time.perf_counter() - began) * 1000)

    async def write(self, start_ms: int) -> None:
        while not self.stop.is_set():
            batch = [_run("writer", self._written + i, start_ms) for i in range(_WRITE_BATCH)]
            self._written += _WRITE_BATCH
            began = time.perf_counter()
            await self.run_log.insert(batch)
            self.writes.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(self.args.write_every / 1000)

    async def until(self, done: Any) -> dict[str, Any]:
        start_ms = int(time.time() * 1000) + 10**9 + len(self.writes) * 10**6
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self.read(session)) for _ in range(self.args.readers)]
            tasks.append(asyncio.create_task(self.write(start_ms)))
            began = time.perf_counter()
            try:
                await done()
            finally:
                self.stop.set()
                await asyncio.gather(*tasks)
        return {
            "seconds": round(time.perf_counter() - began, 1),
            "job_log_ms": _rounded(distribution(self.reads)),
            "insert_100_ms": _rounded(distribution(self.writes)),
            "errors": self.errors,
        }


def _rounded(stats: dict[str, float | int]) -> dict[str, float | int]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}


async def _bench(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    await stack.start_stores()
    await stack.start_manager(retentionInterval=args.interval)
    base, token = stack.manager_url, stack.admin_token
    headers = {"Authorization": f"Bearer {token}"}
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        run_log = RunLog(mongo, MONGO_DB)
        await run_log.ensure_indexes()
        async with aiohttp.ClientSession() as session:
            await wait_http_ok(session, f"{base}/health/ready", 60)
            for name in ("purged", "other", "writer"):
                job = {"name": name, "command": "true", "cronExpr": "0 0 1 1 *"}
                async with session.post(f"{base}/job/save", data={"job": json.dumps(job)},
                                        headers=headers) as response:  # fmt: skip
                    response.raise_for_status()
        start_ms = int(time.time() * 1000) - args.runs * 1000
        began = time.perf_counter()
        await _fill(run_log, "purged", args.runs, start_ms)
        await _fill(run_log, "other", args.other_runs, start_ms)
        filled_s = time.perf_counter() - began
        print(f"-- {args.runs:,} runs inserted in {filled_s:.0f} s", flush=True)

        baseline = await _Load(args, base, token, run_log).until(
            lambda: asyncio.sleep(args.baseline)
        )
        print(f"-- without a purge: {baseline}", flush=True)

        purges = mongo[MONGO_DB][PURGES]
        runs = mongo[MONGO_DB][COLLECTION]
        timing: dict[str, float] = {}

        async def purge() -> None:
            async with aiohttp.ClientSession() as session:
                asked = time.perf_counter()
                form = {"name": "purged", "purgeLogs": "true"}
                async with session.post(f"{base}/job/delete", headers=headers, data=form) as resp:
                    resp.raise_for_status()
            timing["answer_ms"] = (time.perf_counter() - asked) * 1000
            while await purges.count_documents({}):
                if (
                    "began" not in timing
                    and await runs.find_one({"jobName": "purged", "planTime": start_ms}, {"_id": 1})
                    is None
                ):
                    timing["began"] = time.perf_counter() - asked
                await asyncio.sleep(0.5)
            timing["done"] = time.perf_counter() - asked

        during = await _Load(args, base, token, run_log).until(purge)
        left = await runs.count_documents({"jobName": "purged"})
        print(f"-- during the purge: {during}", flush=True)
        return {
            "params": {**vars(args), "batch": BATCH, "pause_s": PAUSE_S},
            "insert_seconds": round(filled_s, 1),
            "baseline": baseline,
            "during_purge": during,
            "purge": {
                "answer_ms": round(timing["answer_ms"], 1),
                "first_pass_after_s": round(timing.get("began", timing["done"]), 1),
                "done_after_s": round(timing["done"], 1),
                "runs_left": left,
                "other_runs_left": await runs.count_documents({"jobName": "other"}),
            },
        }
    finally:
        await mongo.close()


def _table(report: dict[str, Any]) -> str:
    rows = ["| | `/job/log` p50 | p99 | max | requests | insert of 100 p50 | p99 | max |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, key in (("without a purge", "baseline"), ("during the purge", "during_purge")):
        read, write = report[key]["job_log_ms"], report[key]["insert_100_ms"]
        cells = [label, *(f"{read[k]} ms" for k in ("p50", "p99", "max")), str(read["n"]),
                 *(f"{write[k]} ms" for k in ("p50", "p99", "max"))]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs of the purged job")
    parser.add_argument("--other-runs", type=int, default=5000, help="runs of the job read")
    parser.add_argument("--readers", type=int, default=2, help="concurrent /job/log readers")
    parser.add_argument("--write-every", type=int, default=100, help="ms between inserts")
    parser.add_argument("--baseline", type=float, default=30, help="s measured without purge")
    parser.add_argument("--interval", type=int, default=2,
                        help="manager retentionInterval (s)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gdts-bench-purge-"))
    stack = Stack(workdir)

    async def run() -> dict[str, Any]:
        try:
            return await _bench(args, stack)
        finally:
            await stack.stop()

    try:
        report = asyncio.run(run())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    print(_table(report))
    if report["baseline"]["errors"] or report["during_purge"]["errors"]:
        raise SystemExit("some /job/log requests failed: the latencies above are not the API's")


if __name__ == "__main__":
    main()
