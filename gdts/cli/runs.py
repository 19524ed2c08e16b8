"""Following runs from the client: ``job run --wait`` (one run, its attempts, to its record)
and ``job log --follow`` (the newest runs, then every new one, live while it goes on)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from gdts.cli.client import ApiError, Client
from gdts.cli.config import CliError
from gdts.cli.show import run_outcome, run_title

# A run asked for is claimed within a second or two by a live worker; its request lives with a
# 60 s lease (see the README's /job/run), so after that it is not coming.
START_WAIT_S = 60.0
# How often the client looks for a run to start or for new runs: each look is one request.
POLL_S = 0.5
FOLLOW_POLL_S = 1.0
RECORD_PAGE = 50
STREAM_BREAKS = 3  # a stream broken off more often than this: the manager is going away


async def stream_output(client: Client, name: str, plan_time: int, attempt: int,
                        out: TextIO) -> str | None:  # fmt: skip
    """Print one run's output as it comes (``/job/output/stream``), from when the run exists
    until its record is stored; its status (None: it vanished without one). A stream the
    manager breaks off (a restart, another manager behind the balancer) goes on from where
    it was, a few times."""
    deadline = time.monotonic() + START_WAIT_S
    offset, breaks = 0, 0
    while True:
        try:
            async for event, data in client.events(
                "/job/output/stream", name=name, planTime=plan_time, attempt=attempt,
                offset=offset,
            ):  # fmt: skip
                if event == "end":
                    return data.get("status")
                out.write(data.get("output", ""))
                out.flush()
                offset = data.get("offset", offset)
            breaks += 1
        except ApiError as exc:
            # 404 naming planTime: no worker has taken the run yet.
            if exc.status != 404 or exc.field != "planTime" or time.monotonic() > deadline:
                raise
        except CliError:
            breaks += 1
            if breaks > STREAM_BREAKS:
                raise
        if breaks > STREAM_BREAKS:
            return None
        await asyncio.sleep(POLL_S if not breaks else FOLLOW_POLL_S)


async def find_record(client: Client, name: str, plan_time: int,
                      attempt: int) -> dict[str, Any] | None:  # fmt: skip
    """A stored run, from the newest page of the job's log (where a run just ended is)."""
    runs = await client.get("/job/log", name=name, limit=RECORD_PAGE)
    for run in runs:
        if run.get("planTime") == plan_time and run.get("attempt", 1) == attempt:
            return run
    return None


async def next_attempt(client: Client, name: str, plan_time: int, attempt: int) -> bool:
    """Whether the run has an attempt after ``attempt``: its running marker stays through its
    retries (the claim holds), so it answers once that marker names a later attempt, or is
    gone (then a later attempt exists only if it is already stored)."""
    while True:
        going_on = [
            r for r in await client.get("/job/running", name=name) if r["planTime"] == plan_time
        ]
        if any(r["attempt"] > attempt for r in going_on):
            return True
        if not going_on:
            return await find_record(client, name, plan_time, attempt + 1) is not None
        await asyncio.sleep(POLL_S)


async def wait_for_run(client: Client, name: str, plan_time: int,
                       out: TextIO = sys.stdout) -> dict[str, Any] | None:  # fmt: skip
    """Follow a run through its attempts; the last attempt's record (None: it has none)."""
    attempt = 1
    while True:
        status = await stream_output(client, name, plan_time, attempt, out)
        record = await find_record(client, name, plan_time, attempt) if status else None
        if record is None or not await next_attempt(client, name, plan_time, attempt):
            return record
        print(f"gdts: attempt {attempt} {run_outcome(record)}; attempt {attempt + 1} follows",
              file=sys.stderr)  # fmt: skip
        attempt += 1


def print_run(run: dict[str, Any], out: TextIO) -> None:
    out.write(f"{run_title(run)}  {run_outcome(run)}\n")
    output = run.get("output") or ""
    out.write(output if output.endswith("\n") or not output else output + "\n")
    if run.get("outputBytes"):
        out.write(f"[output cut; {run['outputBytes']} bytes in all: gdts job log shows fewer "
                  "runs whole, or use /job/output]\n")  # fmt: skip


async def follow_log(client: Client, name: str, newest: int, out: TextIO) -> None:
    """Print the newest runs, oldest first; then, until interrupted, each new run: live while
    it goes on, its outcome once stored."""
    runs = await client.get("/job/log", name=name, limit=newest)
    for run in reversed(runs):
        print_run(run, out)
    out.flush()
    # Only a run stored from now on is new: look a page deep, whatever -n was.
    stored = await client.get("/job/log", name=name, limit=RECORD_PAGE)
    seen = {(r["planTime"], r.get("attempt", 1)) for r in [*runs, *stored]}
    while True:
        for going in await client.get("/job/running", name=name):
            key = (going["planTime"], going["attempt"])
            if key in seen:
                continue
            out.write(f"{run_title({**going, 'trigger': None})}  running\n")
            out.flush()
            status = await stream_output(client, name, *key, out)
            record = await find_record(client, name, *key)
            out.write(f"--- {run_outcome(record) if record else status or 'vanished'}\n")
            out.flush()
            seen.add(key)
        stored = await client.get("/job/log", name=name, limit=RECORD_PAGE)
        for run in reversed(stored):
            key = (run["planTime"], run.get("attempt", 1))
            if key not in seen:
                print_run(run, out)
                seen.add(key)
        out.flush()
        await asyncio.sleep(FOLLOW_POLL_S)


def require_job(jobs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The job named exactly ``name`` among a /job/list answer filtered by name."""
    for job in jobs:
        if job.get("name") == name:
            return job
    raise CliError(f"name: no job {name!r}")
