"""What the API acknowledged holds: after /job/disable or /job/delete answers, no run of the
job starts; a job saved again under a deleted job's name never meets the old job's runs; a
run asked for that a running forbid job would skip is refused. Each race 50 times at once
(50 jobs every second on two workers), through the real manager, workers, etcd and mongod.

A run's start is the line its command appends (name, epoch seconds) before sleeping; an
acknowledgement's moment is when the answer reached the test, so a start after it is a run
that the API had already said would not happen.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.test_runas import processes_with
from tests.support import (
    EVERY_SECOND,
    Cluster,
    Stack,
    api_call,
    api_get,
    api_post,
    holds,
    job_runs,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

TRIES = 50
# Ticks every second: a run after an acknowledgement would show within a few.
QUIET_S = 3.0


@pytest_asyncio.fixture
async def two_workers(cluster: Cluster) -> AsyncIterator[Cluster]:
    await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1"), cluster.start_worker("w2")
    )
    yield cluster


def starts(path: Path) -> list[tuple[str, float]]:
    """(job, epoch s) of every run started, from the lines the jobs append."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        name, _, at = line.rpartition(" ")
        found.append((name, float(at)))
    return found


def start_then(path: Path, then: str) -> str:
    return f'echo "$GDTS_JOB_NAME $EPOCHREALTIME" >> {path}; {then}'


async def sleeping_jobs(cluster: Cluster, path: Path, prefix: str, token: str) -> list[str]:
    """TRIES jobs every second whose runs write their start to ``path`` then sleep; returns
    their names once each has a run going."""
    names = [f"{prefix}-{i}" for i in range(TRIES)]
    await save_all(cluster, names, start_then(path, f"sleep {token}"))
    await all_started(path, names)
    return names


async def save_all(cluster: Cluster, names: list[str], command: str) -> None:
    await asyncio.gather(
        *(save_job_fields(cluster.api, name=n, command=command, cronExpr=EVERY_SECOND)
          for n in names)
    )  # fmt: skip


async def all_started(path: Path, names: list[str]) -> None:
    await wait_until(
        holds(lambda: set(names) <= {name for name, _ in starts(path)}), 60,
        f"a run of each of the {len(names)} jobs",
    )  # fmt: skip


async def acknowledge_each(
    names: list[str], act: Callable[[str], Awaitable[object]]
) -> dict[str, float]:
    """Act on every job at once; returns when each answer came (epoch s)."""

    async def one(name: str) -> tuple[str, float]:
        await act(name)
        return name, time.time()

    return dict(await asyncio.gather(*(one(name) for name in names)))


async def no_start_after(cluster: Cluster, path: Path, acked: dict[str, float]) -> None:
    """Watch the runs' lines for QUIET_S: none of these jobs starts after its acknowledgement;
    then the run log: no run of them started after it either (not even one killed as it
    spawned, before its command ran)."""
    deadline = time.monotonic() + QUIET_S
    while True:
        late = [(n, at - acked[n]) for n, at in starts(path) if n in acked and at > acked[n]]
        assert not late, f"{len(late)} run(s) started after the acknowledgement: {late[:5]}"
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    logged_late = []
    for name, at in acked.items():
        for run in await job_runs(cluster, name):
            if run.get("startTime") is not None and run["startTime"] > at * 1000:
                logged_late.append((name, run["status"], run["startTime"] - at * 1000))
    assert not logged_late, f"{len(logged_late)} run(s) logged after it: {logged_late[:5]}"


async def test_disable_then_kill_leaves_no_run_after_the_disable(
    two_workers: Cluster, stack: Stack
) -> None:
    cluster = two_workers
    token = "619" + str(os.getpid())
    starts_file = stack.tmp / "starts"
    names = await sleeping_jobs(cluster, starts_file, "paused", token)

    # A run asked for now would be skipped behind the run going on: refused, saying so.
    refusals = await asyncio.gather(
        *(api_call(cluster.api, "POST", "/job/run", data={"name": n}) for n in names)
    )
    assert [status for status, _ in refusals] == [409] * TRIES, refusals[:3]

    async def disable_then_kill(name: str) -> None:
        await api_post(cluster.api, "/job/disable", name=name)
        acked[name] = time.time()
        await api_post(cluster.api, "/job/kill", name=name)

    acked: dict[str, float] = {}
    await acknowledge_each(names, disable_then_kill)
    await wait_until(holds(lambda: not processes_with(token)), 30, "every run killed")
    await no_start_after(cluster, starts_file, acked)
    jobs = {j["name"]: j for j in await api_get(cluster.api, "/job/list")}
    assert all(not jobs[n]["enabled"] and not jobs[n]["running"] for n in names)


async def test_delete_kills_the_runs_and_none_starts_after(
    two_workers: Cluster, stack: Stack
) -> None:
    cluster = two_workers
    token = "621" + str(os.getpid())
    starts_file = stack.tmp / "starts"
    names = await sleeping_jobs(cluster, starts_file, "doomed", token)
    acked = await acknowledge_each(
        names, lambda name: api_post(cluster.api, "/job/delete", name=name)
    )
    await wait_until(holds(lambda: not processes_with(token)), 30, "every run killed")
    await no_start_after(cluster, starts_file, acked)

    async def each_logged_killed() -> bool:
        for name in names:
            runs = await job_runs(cluster, name)
            if not runs or any(r["status"] != "killed" for r in runs):
                return False
        return True

    await wait_until(each_logged_killed, 30, "every killed run logged")


async def test_a_job_saved_again_never_meets_the_deleted_jobs_runs(
    two_workers: Cluster, stack: Stack
) -> None:
    """Delete with keepRunning, save the name again: the new job runs (the old run does not
    hold its lock), and its kill leaves the old run alone."""
    cluster = two_workers
    token = "623" + str(os.getpid())
    old_starts, new_starts = stack.tmp / "old", stack.tmp / "new"
    names = await sleeping_jobs(cluster, old_starts, "reborn", token)
    kept = set(processes_with(token))
    assert len(kept) >= TRIES, "a sleep per old run"
    await acknowledge_each(
        names, lambda n: api_post(cluster.api, "/job/delete", name=n, keepRunning="true")
    )
    new_token = "627" + str(os.getpid())
    await save_all(cluster, names, start_then(new_starts, f"sleep {new_token}"))
    await all_started(new_starts, names)  # not blocked by the old runs' markers

    jobs = {j["name"]: j for j in await api_get(cluster.api, "/job/list")}
    assert all(jobs[n]["running"] for n in names)
    await acknowledge_each(names, lambda n: api_post(cluster.api, "/job/kill", name=n))
    await wait_until(holds(lambda: not processes_with(new_token)), 30, "the new runs killed")
    assert set(processes_with(token)) == kept, "a kill of the new job reached the old runs"

    # With no job of that name, an admin's kill reaches what the deleted job left going.
    await acknowledge_each(names, lambda n: api_post(cluster.api, "/job/delete", name=n))
    await acknowledge_each(names, lambda n: api_call(cluster.api, "POST", "/job/kill",
                                                     data={"name": n}))  # fmt: skip
    try:
        await wait_until(holds(lambda: not processes_with(token)), 30, "the old runs killed")
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)
