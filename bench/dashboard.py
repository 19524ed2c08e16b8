"""``python -m bench.dashboard``: GET /dashboard/summary over a day of runs (1,000,000 by default).

Starts its own etcd, mongod and manager (bench.stack, as bench.run does; no workers: the runs
are written straight into MongoDB, as RunLog.insert stores them, spread over the last 24 hours
across several hundred jobs with a realistic mix of statuses and lags), then starts the
manager, times how long its rollup loop takes to catch up with the day, and times each window
of the endpoint (p50/p99 over --samples sequential requests), asserting p99 < 200 ms. Then the
same for a non-admin in a team of --team-jobs of the jobs (their runs counted from the run log
at request time, see gdts.manager.dashboard_api), reported beside it. The stack lives in a
temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.analysis import distribution
from bench.stack import MONGO_DB, Stack
from gdts.clock import now_ms
from gdts.manager.runminutes import RunMinutes
from gdts.runlog import COLLECTION, DIRTY_MINUTES, ENDED_AT, RunLog
from gdts.runstats import closed_before

_BATCH = 10_000
_DAY_MS = 86_400_000
_TARGET_S = 0.2
# Statuses by weight: mostly successes, a few percent of each kind of trouble.
_MIX = {"succeeded": 900, "failed": 50, "timeout": 10, "killed": 10, "limit": 5, "missed": 10,
        "lost": 5, "skipped": 10}  # fmt: skip
_NOT_STARTED = ("missed", "skipped")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs over the last day")
    parser.add_argument("--jobs", type=int, default=400, help="jobs they belong to")
    parser.add_argument("--samples", type=int, default=50, help="requests per window")
    parser.add_argument(
        "--team-jobs",
        type=int,
        default=40,
        help="jobs of the team a non-admin caller is in (0: no such caller)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the stack's directory goes")
    return parser.parse_args(argv)


def _runs(
    first: int, count: int, args: argparse.Namespace, now: int, rng: random.Random
) -> list[dict[str, Any]]:
    statuses = rng.choices(list(_MIX), weights=list(_MIX.values()), k=count)
    documents = []
    for i, status in zip(range(first, first + count), statuses, strict=True):
        # Spread evenly over the day: a job's runs end 35 s apart (400 jobs, 1,000,000 runs),
        # more than any lag here, so its planned times never repeat (the unique index).
        end = now - 1 - i * _DAY_MS // args.runs
        started = status not in _NOT_STARTED
        lag = min(30_000, int(rng.lognormvariate(2.5, 1.2))) if started else 0
        plan = end - 2000 - lag
        documents.append({
            "jobName": f"bench-job-{i % args.jobs:04}",
            "command": "true",
            "err": "" if status == "succeeded" else status,
            "output": "ok\n" if started else "",
            "planTime": plan,
            "scheduleTime": plan,
            "startTime": plan + lag if started else None,
            "endTime": end,
            "exitCode": 0 if status == "succeeded" else 1,
            "status": status,
            "worker": f"b{i % 3 + 1}",
            "attempt": 1,
            "trigger": "schedule",
            ENDED_AT: datetime.fromtimestamp(end / 1000, UTC),  # as RunLog.insert adds it
        })  # fmt: skip
    return documents


async def _write_runs(args: argparse.Namespace, mongo_uri: str) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        # The manager's indexes (ended_at among them, with its default 30-day expiry).
        await RunLog(client, MONGO_DB).ensure_indexes(30)
        runs = client[MONGO_DB][COLLECTION]
        rng = random.Random(20261206)
        now = now_ms()
        started = time.perf_counter()
        for first in range(0, args.runs, _BATCH):
            batch = _runs(first, min(_BATCH, args.runs - first), args, now, rng)
            await runs.insert_many(batch, ordered=False)
            if first // _BATCH % 10 == 9:
                print(f"   {first + _BATCH:,} runs written", flush=True)
        return time.perf_counter() - started
    finally:
        await client.close()


async def _caught_up(mongo_uri: str) -> float:
    """Seconds until the rollups reach the minutes closed by now."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    started = time.perf_counter()
    try:
        minutes = RunMinutes(client, MONGO_DB)
        # Another process's progress, in MongoDB: nothing to wait on but the next look.
        while (await minutes.rolled_up_to() or 0) < closed_before(now_ms()):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        return time.perf_counter() - started
    finally:
        await client.close()


async def _rolled_up_again(mongo_uri: str) -> float:
    """Every minute of the day marked as late results mark theirs, and the seconds until the
    rollup loop has computed them all again."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        dirty = client[MONGO_DB][DIRTY_MINUTES]
        closed = closed_before(now_ms())
        first = closed - _DAY_MS
        await dirty.insert_many([
            {"_id": datetime.fromtimestamp(m / 1000, UTC), "marks": 1}
            for m in range(first - first % 60_000, closed, 60_000)
        ])  # fmt: skip
        started = time.perf_counter()
        while await dirty.count_documents({}):  # noqa: ASYNC110 (another process's work)
            await asyncio.sleep(0.5)
        return time.perf_counter() - started
    finally:
        await client.close()


async def _team_member_token(
    session: aiohttp.ClientSession, stack: Stack, args: argparse.Namespace
) -> str:
    """The jobs saved (team "bench-team" for the first --team-jobs), and a token of a user
    who is in that team alone."""
    base, admin = stack.manager_url, {"Authorization": f"Bearer {stack.admin_token}"}

    async def post(path: str, **form: str) -> Any:
        async with session.post(base + path, data=form, headers=admin) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status} {body}")
            return body["data"]

    await post("/team/save", name="bench-team")
    for i in range(args.jobs):
        job = {"name": f"bench-job-{i:04}", "command": "true", "cronExpr": "0 0 1 1 *"}
        if i < args.team_jobs:
            job["team"] = "bench-team"
        await post("/job/save", job=json.dumps(job))
    password = secrets.token_urlsafe(16)
    await post("/user/save", username="bench-member", role="user", password=password)
    await post("/team/member/save", team="bench-team", username="bench-member", role="user")
    await post("/team/member/delete", team="default", username="bench-member")
    jar = aiohttp.CookieJar(unsafe=True)  # the manager is 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as member:
        login = {"username": "bench-member", "password": password}
        async with member.post(base + "/auth/login", data=login) as resp:
            csrf = (await resp.json())["data"]["csrfToken"]
        async with member.post(base + "/token/create", data={"name": "bench"},
                               headers={"X-CSRF-Token": csrf}) as resp:  # fmt: skip
            return str((await resp.json())["data"]["token"])


async def _time_window(
    session: aiohttp.ClientSession,
    stack: Stack,
    window: str,
    samples: int,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token or stack.admin_token}"}
    url = f"{stack.manager_url}/dashboard/summary"
    seconds = []
    runs = 0
    for _ in range(samples):
        t0 = time.perf_counter()
        async with session.get(url, params={"window": window}, headers=headers) as resp:
            body = await resp.json()
        seconds.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise RuntimeError(f"/dashboard/summary?window={window}: HTTP {resp.status} {body}")
        runs = sum(body["data"]["runs"].values())
    return {"runs_in_window": runs, **distribution(seconds)}


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="gdts-bench-dash-", dir=args.tmp_dir))
    stack = Stack(workdir)
    status = 0
    try:
        print(f"-- starting etcd and mongod under {workdir}", flush=True)
        await stack.start_stores()
        print(f"-- writing {args.runs:,} runs of {args.jobs} jobs over the last day", flush=True)
        write_s = await _write_runs(args, stack.mongo_uri)
        print(f"-- written in {write_s:.1f} s; starting the manager", flush=True)
        await stack.start_manager()
        catch_up_s = await _caught_up(stack.mongo_uri)
        print(f"-- the rollups caught up with the day in {catch_up_s:.1f} s", flush=True)
        results = {}
        async with aiohttp.ClientSession() as session:
            for window in ("hour", "day"):
                await _time_window(session, stack, window, 3)  # connections, caches
                results[window] = await _time_window(session, stack, window, args.samples)
            if args.team_jobs:
                print(f"-- a member of a team of {args.team_jobs} jobs", flush=True)
                token = await _team_member_token(session, stack, args)
                # The jobs exist now: the day's minutes rolled up again, split by team.
                redone_s = await _rolled_up_again(stack.mongo_uri)
                print(f"-- the day rolled up again by team in {redone_s:.1f} s", flush=True)
                for window in ("hour", "day"):
                    await _time_window(session, stack, window, 3, token)
                    results[f"{window}, team of {args.team_jobs} jobs"] = await _time_window(
                        session, stack, window, args.samples, token
                    )
        print(f"\n{args.runs:,} runs over the last 24 h, {args.jobs} jobs; rollups caught up "
              f"with the day in {catch_up_s:.1f} s; {args.samples} sequential requests "
              "each\n")  # fmt: skip
        print("| Window | Runs in it | p50 (ms) | p99 (ms) | max (ms) |")
        print("|---|---:|---:|---:|---:|")
        for window, r in results.items():
            print(f"| {window} | {r['runs_in_window']:,} | {r['p50'] * 1000:.1f} | "
                  f"{r['p99'] * 1000:.1f} | {r['max'] * 1000:.1f} |")  # fmt: skip
        # The admin's windows are the target; a team member's are reported beside them.
        slow = [w for w, r in results.items() if r["p99"] >= _TARGET_S and "team" not in w]
        if slow:
            print(f"\n!! p99 at or over {_TARGET_S * 1000:.0f} ms: {', '.join(slow)}")
            status = 1
    finally:
        print("-- stopping the stack", flush=True)
        with contextlib.suppress(Exception):
            await stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
