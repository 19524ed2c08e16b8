"""A run's limits (a job's ``limits``, the worker's defaults and ceilings): a run over one ends
with status ``limit`` naming it, a job cannot raise them, a job gets the worker's defaults and
never more than its ceilings; without a uid per run the kernel's per-process part still holds.
Real processes over real limits."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.test_containment import RANGE_1, pool
from tests.support import Cluster, cron_at, job_runs, passable_dir, save_job_fields, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip("runUidRange needs a worker started as root", allow_module_level=True)

# Each job goes over exactly one limit, and would run a minute if nothing stopped it.
OVER = {
    "memoryMB": (
        {"memoryMB": 64},
        "python3 -c \"import time; held = b'a' * (256 << 20); time.sleep(60)\"",
    ),
    "processes": ({"processes": 5}, "for i in $(seq 10); do sleep 60 & done; wait"),
    "cpuSeconds": ({"cpuSeconds": 1}, "while :; do :; done"),
    # Bash holds the files itself (a builtin read on a FIFO nobody writes), as a program that
    # keeps what it opened would: the kernel refuses the one after, which would end a
    # program that exits on the error before the watch could see it.
    "openFiles": (
        {"openFiles": 16},
        'mkfifo "$HOME/hold"; exec 3<>"$HOME/hold"; for fd in $(seq 4 40); do '
        'eval "exec $fd</dev/null" 2>/dev/null || break; done; read -t 60 <&3',
    ),
}


@pytest_asyncio.fixture
async def root() -> AsyncIterator[Path]:
    with passable_dir("gdts-limits-") as path:
        yield path


async def first_run(cluster: Cluster, name: str, within_s: float = 40) -> dict[str, object]:
    return (await wait_until(lambda: job_runs(cluster, name), within_s, f"a run of {name}"))[0]


async def test_a_run_over_a_limit_ends_with_status_limit_naming_it(
    cluster: Cluster, root: Path
) -> None:
    await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1", **pool(RANGE_1, root, "w1"))
    )
    at = cron_at(time.time() + 2)
    for limit, (limits, command) in OVER.items():
        await save_job_fields(
            cluster.api, name=f"over-{limit}", cronExpr=at, limits=limits, command=command
        )
    for limit in OVER:
        run = await first_run(cluster, f"over-{limit}")
        assert run["status"] == "limit", run
        assert str(run["err"]).startswith(f"over its {limit} limit"), run
        # Stopped by the watch, not after the minute the command would have taken.
        assert int(run["endTime"]) - int(run["startTime"]) < 20_000, run


async def test_a_job_gets_the_worker_defaults_never_more_than_its_ceilings(
    cluster: Cluster, root: Path
) -> None:
    await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker(
            "w1", **pool(RANGE_1, root, "w1"), runProcesses=100, maxRunOpenFiles=40
        ),
    )
    at = cron_at(time.time() + 2)
    show = "ulimit -n; ulimit -u; ulimit -n 4000 2>/dev/null && echo raised || echo refused"
    await save_job_fields(cluster.api, name="plain", cronExpr=at, command=show)
    await save_job_fields(
        cluster.api, name="greedy", cronExpr=at, command=show,
        limits={"openFiles": 100_000, "processes": 7},
    )  # fmt: skip
    plain = await first_run(cluster, "plain")
    greedy = await first_run(cluster, "greedy")
    # The kernel is told one more than the limit: the watch ends the run at the limit itself,
    # naming it, before the kernel refuses anything.
    assert str(plain["output"]).split() == ["41", "101", "refused"], plain  # runOpenFiles 1024
    assert str(greedy["output"]).split() == ["41", "8", "refused"], greedy
    assert plain["status"] == greedy["status"] == "succeeded"


async def test_without_a_uid_per_run_the_per_process_limits_still_hold(cluster: Cluster) -> None:
    # Jobs run as the worker (allowRoot).
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    await save_job_fields(
        cluster.api, name="files", cronExpr=cron_at(time.time() + 2),
        limits={"openFiles": 64, "cpuSeconds": 30}, command="ulimit -n; ulimit -t",
    )  # fmt: skip
    run = await first_run(cluster, "files")
    assert str(run["output"]).split() == ["64", "30"], run
