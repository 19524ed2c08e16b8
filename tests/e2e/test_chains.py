"""Chains as an operator uses them: a job's parents run before it and its children after it,
each step a run of its own job on real workers; a step that fails stops the chain run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    Cluster,
    Stack,
    cron_at,
    holds,
    job_runs,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

YEARLY = "0 0 0 1 1 *"  # steps' own schedule: not during the test


def step_command(log: Path, name: str, *, seconds: float = 0.3, exit_code: int = 0) -> str:
    """Append "<name> start|end <epoch ms> <worker>" around a short sleep, then exit."""
    stamp = f'echo "{name} $1 $(date +%s%3N) $GDTS_WORKER_ID" >> {log}'
    return f"set -- start; {stamp}; sleep {seconds}; set -- end; {stamp}; exit {exit_code}"


def read_log(log: Path) -> dict[tuple[str, str], list[int]]:
    """(step, start|end) -> the instants it happened, in order."""
    seen: dict[tuple[str, str], list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            name, what, at, _ = line.split()
            seen.setdefault((name, what), []).append(int(at))
    return seen


async def runs_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return await job_runs(cluster, name, limit=50)


async def test_parents_run_before_the_job_children_after_and_a_failure_stops_the_chain(
    cluster: Cluster, stack: Stack
) -> None:
    await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1"), cluster.start_worker("w2")
    )
    log = stack.tmp / "steps.txt"

    async def save(name: str, **fields: Any) -> None:
        fields.setdefault("command", step_command(log, name))
        fields.setdefault("cronExpr", YEARLY)
        await save_job_fields(cluster.api, name=name, **fields)

    for name in ("p1", "p2", "c1", "c2", "ok1", "ok2", "c3"):
        await save(name)
    await save("bad", command=step_command(log, "bad", exit_code=3))
    await save("fail", command=step_command(log, "fail", exit_code=1))
    at = cron_at(time.time() + 4)
    # Serial parents, parallel children (each child sleeps a second, so they overlap).
    await save("main", parents=["p1", "p2"], children=["c1", "c2"], childrenMode="parallel",
               cronExpr=at)  # fmt: skip
    await save("c1", command=step_command(log, "c1", seconds=1.5))
    await save("c2", command=step_command(log, "c2", seconds=1.5))
    # A failing parent: the job and its child are skipped.
    await save("early", parents=["bad"], children=["c3"], cronExpr=at)
    # A failing child stops the later children, not those before it.
    await save("late", children=["ok1", "fail", "ok2"], cronExpr=at)
    # Parallel parents: both at once, the job after both.
    for name in ("q1", "q2"):
        await save(name, command=step_command(log, name, seconds=1.5))
    await save("joined", parents=["q1", "q2"], parentsMode="parallel", cronExpr=at)

    async def over() -> bool:
        main = [r for r in await runs_of(cluster, "c2") if r.get("chainId")]
        late = [r for r in await runs_of(cluster, "ok2") if r.get("chainId")]
        early = [r for r in await runs_of(cluster, "c3") if r.get("chainId")]
        joined = [r for r in await runs_of(cluster, "joined") if r.get("chainId")]
        return bool(main and late and early and joined)

    await wait_until(over, 40, "the three chain runs to end")
    seen = read_log(log)
    order = ["p1", "p2", "main", "c1"]
    starts = {name: seen[name, "start"] for name in ("p1", "p2", "c1", "c2")}
    assert all(len(instants) == 1 for instants in starts.values()), seen  # once per chain run
    ends = {name: seen[name, "end"][0] for name in ("p1", "p2", "c1", "c2")}
    assert ends["p1"] <= starts["p2"][0], "the parents ran at once, not one after another"
    main_runs = [r for r in await runs_of(cluster, "main") if r.get("chainId")]
    assert [r["status"] for r in main_runs] == ["succeeded"]
    main_run = main_runs[0]
    assert ends["p2"] <= main_run["startTime"] and main_run["endTime"] <= starts["c1"][0]
    assert starts["c1"][0] < ends["c2"] and starts["c2"][0] < ends["c1"], "children not at once"
    chain_id = main_run["chainId"]
    for position, name in enumerate([*order, "c2"]):
        (step,) = [r for r in await runs_of(cluster, name) if r.get("chainId") == chain_id]
        assert step["status"] == "succeeded" and step["trigger"] == "chain"
        assert step["chainStep"] == position and step["chainSteps"] == 5

    (bad,) = [r for r in await runs_of(cluster, "bad") if r.get("chainId")]
    assert bad["status"] == "failed"
    for name in ("early", "c3"):
        (skipped,) = [r for r in await runs_of(cluster, name) if r.get("chainId")]
        assert skipped["status"] == "skipped" and "bad failed" in skipped["err"], skipped
        assert skipped["startTime"] is None
    assert ("early", "start") not in seen and ("c3", "start") not in seen

    statuses = {}
    for name in ("late", "ok1", "fail", "ok2"):
        (step,) = [r for r in await runs_of(cluster, name) if r.get("chainId")]
        statuses[name] = step["status"]
    assert statuses == {"late": "succeeded", "ok1": "succeeded", "fail": "failed",
                        "ok2": "skipped"}  # fmt: skip
    assert ("ok2", "start") not in seen

    q1, q2 = (seen[name, "start"][0] for name in ("q1", "q2"))
    q_ends = [seen[name, "end"][0] for name in ("q1", "q2")]
    assert q1 < q_ends[1] and q2 < q_ends[0], "the parallel parents did not run at once"
    (joined,) = [r for r in await runs_of(cluster, "joined") if r.get("chainId")]
    assert joined["status"] == "succeeded" and joined["startTime"] >= max(q_ends)


async def test_a_chain_whose_steps_worker_is_killed_stops_there_as_lost_never_twice(
    cluster: Cluster, stack: Stack
) -> None:
    _, *started = await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1"), cluster.start_worker("w2")
    )
    workers = dict(zip(("w1", "w2"), started, strict=True))
    log = stack.tmp / "steps.txt"
    await save_job_fields(cluster.api, name="slow", command=step_command(log, "slow", seconds=60),
                          cronExpr=YEARLY)  # fmt: skip
    await save_job_fields(cluster.api, name="after", command=step_command(log, "after"),
                          cronExpr=YEARLY)  # fmt: skip
    await save_job_fields(cluster.api, name="head", command=step_command(log, "head"),
                          parents=["slow"], children=["after"],
                          cronExpr=cron_at(time.time() + 3))  # fmt: skip

    started = await wait_until(holds(lambda: _started(log, "slow")), 30, "the slow step to start")
    started = _started(log, "slow")
    assert started is not None
    await workers[started].kill()

    async def lost() -> list[dict[str, Any]]:
        return [r for r in await runs_of(cluster, "slow") if r["status"] == "lost"]

    (lost_run,) = await wait_until(lost, 30, "the killed step logged lost")
    assert lost_run["chainId"] and lost_run["chainStep"] == 0

    async def skipped() -> list[dict[str, Any]]:
        found = []
        for name in ("head", "after"):
            found += [r for r in await runs_of(cluster, name) if r["status"] == "skipped"]
        return found if len(found) == 2 else []

    for run in await wait_until(skipped, 30, "the later steps logged skipped"):
        assert "slow lost" in run["err"] and run["chainId"] == lost_run["chainId"], run
    seen = read_log(log)
    assert len(seen["slow", "start"]) == 1, "the step ran twice"
    assert ("head", "start") not in seen and ("after", "start") not in seen


def _started(log: Path, name: str) -> str | None:
    """The worker that started the step, once it has."""
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        step, what, _, worker = line.split()
        if step == name and what == "start":
            return worker
    return None
