"""runAs and allowRoot through real workers: jobs run as the configured user and are still
killed as a group, and a worker that would run jobs as root, or as a user that does not exist,
refuses to start."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import time
from pathlib import Path

import pytest

from tests.support import Cluster, Stack, api_post, cron_at, job_runs, save_job, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the worker must start as root")


def processes_with(token: str) -> dict[int, tuple[int, int]]:
    """pid -> (effective uid, process group) of the live processes whose command line holds
    ``token``. Found through /proc because a job running as nobody cannot write its pids into
    the test's root-owned directory."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:  # exited while we looked
            continue
        state, _ppid, pgid = stat.rsplit(")", 1)[1].split()[:3]
        if token.encode() not in cmdline or state == "Z":
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        found[int(entry.name)] = (int(uid_line.split()[2]), int(pgid))
    return found


@needs_root
async def test_jobs_run_as_the_runas_user_and_a_kill_stops_the_whole_group(
    cluster: Cluster,
) -> None:
    nobody = pwd.getpwnam("nobody")
    _, worker = await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1", runAs="nobody", allowRoot=False)
    )
    assert f"jobs run as nobody (uid {nobody.pw_uid}" in worker.log_text()
    # A random fraction of a second makes these sleeps this test's own among all processes.
    token = f"600.{secrets.randbelow(10**9):09d}"
    at = cron_at(time.time() + 2)
    await save_job(cluster.api, "whoami", "id -un; id -u; id -G; echo $HOME; pwd", at)
    await save_job(cluster.api, "sleeper", f"sleep {token} & sleep {token}; wait", at)

    logged = await wait_until(lambda: job_runs(cluster, "whoami"), 30, "the whoami run")
    assert logged[0]["status"] == "succeeded", logged[0]
    # nobody's home, /nonexistent, is no directory: the job starts in /.
    assert logged[0]["output"].splitlines() == [
        "nobody", str(nobody.pw_uid), str(nobody.pw_gid), nobody.pw_dir, "/"
    ]  # fmt: skip

    async def group_started() -> dict[int, tuple[int, int]] | None:
        found = processes_with(token)
        return found if len(found) == 3 else None  # the shell and its two sleeps

    group = await wait_until(group_started, 20, "the sleeper's shell and sleeps")
    assert {uid for uid, _ in group.values()} == {nobody.pw_uid}
    (pgid,) = {pgid for _, pgid in group.values()}
    assert pgid in group  # the shell leads the group
    # The worker stays root: that is what lets it signal a group that belongs to nobody.
    assert os.stat(f"/proc/{worker.pid}").st_uid == 0

    await api_post(cluster.api, "/job/kill", name="sleeper")
    await wait_until(lambda: _none_left(token), 5, "every process of the group to die")
    logged = await wait_until(lambda: job_runs(cluster, "sleeper"), 10, "the killed run")
    assert logged[0]["status"] == "killed", logged[0]


async def _none_left(token: str) -> bool:
    return not processes_with(token)


@needs_root
async def test_a_root_worker_with_neither_runas_nor_allowroot_refuses_to_start(
    cluster: Cluster, stack: Stack
) -> None:
    config = stack.worker_config(
        workerId="w-root", spillDir=str(stack.tmp / "spill"), allowRoot=False
    )
    worker = await cluster.spawn("worker", "w-root", config)
    assert await asyncio.wait_for(worker.process.wait(), 30) == 2
    assert worker.log_text().splitlines() == [
        "gdts worker: config runAs: this worker runs as root and would run every job as root: "
        "set runAs to the user jobs should run as "
        "(or allowRoot: true if running jobs as root is intended)"
    ]


async def test_runas_naming_an_unknown_user_fails_at_start(cluster: Cluster, stack: Stack) -> None:
    config = stack.worker_config(
        workerId="w-ghost", spillDir=str(stack.tmp / "spill"), runAs="gdts-no-such-user"
    )
    worker = await cluster.spawn("worker", "w-ghost", config)
    assert await asyncio.wait_for(worker.process.wait(), 30) == 2
    output = worker.log_text()
    assert "gdts worker: config runAs: no such user 'gdts-no-such-user' on this host" in output
    assert "Traceback" not in output and "started" not in output
