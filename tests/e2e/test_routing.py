"""Host groups and routing as an operator uses them: workers with labels as processes, real etcd
and mongod, jobs whose commands record the tick and the worker that ran it."""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from tests.support import (
    EVERY_SECOND,
    Cluster,
    Stack,
    api_get,
    holds,
    job_runs,
    now_ms,
    read_ticks,
    record_command,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.waits]

DB = {"group": "db"}


async def test_a_host_group_job_never_runs_on_a_non_member_even_when_its_members_die(
    cluster: Cluster, stack: Stack
) -> None:
    _, db1, db2, _ = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", labels=DB),
        cluster.start_worker("w2", labels={**DB, "zone": "eu-1"}, weight=3),
        cluster.start_worker("w3", labels={"group": "web"}),
    )
    listed = {w["id"]: w for w in await api_get(cluster.api, "/worker/list")}
    assert listed["w2"]["labels"] == {"group": "db", "zone": "eu-1"}
    assert listed["w2"]["weight"] == 3 and listed["w3"]["weight"] == 1

    # Two jobs of the group: whichever buckets they fall in, w3 is not their members' backup.
    files = {name: stack.tmp / f"{name}.txt" for name in ("placed-a", "placed-b")}
    for name, ticks in files.items():
        await save_job_fields(cluster.api, name=name, command=record_command(ticks),
                              cronExpr=EVERY_SECOND, hostGroup=DB, routing="random")  # fmt: skip

    def ran() -> list[tuple[int, str]]:
        return [tick for ticks in files.values() for tick in read_ticks(ticks)]

    # Both members took some (random: each tick a fair draw, so six ticks nearly always do).
    await wait_until(holds(lambda: len({w for _, w in ran()}) == 2), 20, "both members to run")

    # Its members die: nobody else runs it; its ticks are logged missed, saying why.
    await db1.kill()
    await db2.kill()
    killed_ms = now_ms()

    async def missed_saying_why(name: str) -> list[dict[str, object]]:
        runs = await job_runs(cluster, name, limit=20)
        return [
            r for r in runs
            if r["status"] == "missed" and r["planTime"] > killed_ms
            and "no live worker in host group {group=db}" in str(r["err"])
        ]  # fmt: skip

    for name in ("placed-a", "placed-b"):
        await wait_until(
            functools.partial(missed_saying_why, name), 30, f"ticks of {name} logged missed"
        )
    assert {w for _, w in ran()} == {"w1", "w2"}
    listed_jobs = {j["name"]: j for j in await api_get(cluster.api, "/job/list")}
    assert listed_jobs["placed-a"]["hostGroup"] == DB
    assert listed_jobs["placed-a"]["liveWorkers"] == 0  # what the console's badge shows

    # A member comes back: the jobs run again, there.
    await cluster.start_worker("w1", labels=DB)
    back_ms = now_ms()

    async def runs_again() -> bool:
        return sum(plan > back_ms for plan, _ in ran()) >= 2

    await wait_until(runs_again, 30, "the group's jobs to run on their returned member")
    assert {w for plan, w in ran() if plan > killed_ms} == {"w1"}
    for ticks in files.values():
        assert max(Counter(plan for plan, _ in read_ticks(ticks)).values()) == 1
