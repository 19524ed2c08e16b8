"""A sweep of a run's uid kills every process acting as it, and never the worker: for the
instant of a spawn the worker holds a run's uid as its real uid (see gdts.worker.spawn), and a
guardian sweeping then must not take it for one of the run's processes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from gdts.worker.uidsweep import kill_all, processes_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root can hold another uid")

RUN_UID = 61900


def _sleeper(real: int, effective: int) -> subprocess.Popen[bytes]:
    def become() -> None:
        os.setresuid(real, effective, effective)

    return subprocess.Popen(["sleep", "60"], preexec_fn=become)  # noqa: PLW1509 (test only)


def _uid_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/status") as status:
        return next(line for line in status if line.startswith("Uid:")).split()[1:]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_a_worker_mid_spawn_is_spared_and_the_runs_processes_are_killed(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    worker_like = _sleeper(RUN_UID, 0)  # real uid the run's, effective root: a spawn's instant
    run = _sleeper(RUN_UID, RUN_UID)
    processes += [worker_like, run]
    deadline = time.monotonic() + 10
    while _uid_line(run.pid)[0] != str(RUN_UID) or _uid_line(worker_like.pid)[0] != str(RUN_UID):
        assert time.monotonic() < deadline, "the sleepers never took their uids"
        time.sleep(0.01)
    assert _uid_line(worker_like.pid) == [str(RUN_UID), "0", "0", "0"]

    assert processes_of([RUN_UID]) == {RUN_UID: [run.pid]}
    assert kill_all([RUN_UID])
    assert run.wait(timeout=10) == -9
    assert worker_like.poll() is None  # alive: it was never one of the run's
