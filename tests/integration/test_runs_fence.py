"""A run killed from outside the worker while its lease is in doubt is logged as killed for the
lease: the guardian (a process of its own) sweeps the run's uids at the same instant as the
worker's own fence, and either may get there first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import aiohttp
import pytest

from gdts.config import WorkerConfig, load_config
from gdts.job import Job
from gdts.runrecord import RunRecord, RunStatus
from gdts.worker.runs import LEASE_MAY_BE_GONE, Runs
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick
from tests.support import holds, wait_until

PLAN_MS = 1_800_000_000_000


class Records:
    def __init__(self) -> None:
        self.added: list[RunRecord] = []

    def add(self, record: RunRecord) -> None:
        self.added.append(record)


def stats() -> WorkerStats:
    return WorkerStats(
        jobs=lambda: 0, running=lambda: 0, buffered=lambda: 0, spilled_segments=lambda: 0,
        result_write_errors=lambda: 0, results_dropped=lambda: 0, watch_restarts=lambda: 0,
        lease_alive=lambda: 1, run_slots=lambda: 1, at_capacity=lambda: 0, buffer_limit=lambda: 0,
    )  # fmt: skip


async def run_killed_from_outside(
    lease_alive_at_kill: bool, fence_after_the_exit: bool = False
) -> RunRecord:
    """A run whose shell is SIGKILLed from outside; ``fence_after_the_exit``: the worker's own
    fence comes once the shell is gone but before the run ended (a process it left holds the
    output open a moment)."""
    config = load_config(WorkerConfig, None, {})
    alive = {"now": True}
    records: Any = Records()
    # The setsid'd sleep (not in the shell's group) keeps the output open after the shell died.
    command = "setsid sleep 30 & echo $$ $!; exec sleep 60"
    fields = {"name": "held", "command": command, "cronExpr": "0 0 1 1 *"}
    job = Job.from_api(fields)
    async with aiohttp.ClientSession() as http:
        runs = Runs(
            config, "w1", lambda: PLAN_MS, job_user=None, base_env=dict(os.environ), http=http,
            sink=records, stats=stats(), stopping=asyncio.Event(),
            still_scheduled=lambda name: True, lease_alive=lambda: alive["now"],
        )  # fmt: skip
        going = asyncio.create_task(runs.run(DueTick(job, PLAN_MS), PLAN_MS))
        try:
            await wait_until(holds(runs.going_on), 10, "the run going on")

            def printed_pid() -> str:
                capture = runs.going_on()[0].capture
                return capture.text().strip() if capture is not None else ""

            await wait_until(holds(printed_pid), 10, "the run's shell printing its pid")
            shell, holder = map(int, printed_pid().split())
            alive["now"] = lease_alive_at_kill
            os.killpg(shell, signal.SIGKILL)  # as the guardian's uid sweep does
            if fence_after_the_exit:
                await wait_until(holds(lambda: not os.path.exists(f"/proc/{shell}")), 10,
                                 "the shell reaped")  # fmt: skip
                assert runs.kill_now(LEASE_MAY_BE_GONE) == 1  # the lease fence, a moment late
            first, _ = await asyncio.wait_for(going, 10)
        finally:
            going.cancel()
            with contextlib.suppress(ProcessLookupError, UnboundLocalError):
                os.kill(holder, signal.SIGKILL)
    return first


@pytest.mark.asyncio
async def test_a_run_the_guardian_killed_at_the_fence_is_logged_killed_for_the_lease() -> None:
    record = await run_killed_from_outside(lease_alive_at_kill=False)
    assert record.status is RunStatus.KILLED
    assert record.err.startswith(f"killed: {LEASE_MAY_BE_GONE}"), record.err


@pytest.mark.asyncio
async def test_the_fences_own_kill_coming_after_the_guardians_keeps_the_reason() -> None:
    record = await run_killed_from_outside(lease_alive_at_kill=False, fence_after_the_exit=True)
    assert record.status is RunStatus.KILLED
    assert record.err.startswith(f"killed: {LEASE_MAY_BE_GONE}"), record.err


@pytest.mark.asyncio
async def test_a_run_killed_from_outside_with_the_lease_alive_is_a_plain_failure() -> None:
    record = await run_killed_from_outside(lease_alive_at_kill=True)
    assert record.status is RunStatus.FAILED
    assert record.err == "terminated by signal SIGKILL"
