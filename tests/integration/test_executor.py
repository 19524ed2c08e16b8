"""Running real commands: output capture and cap, process-group kill, failures to start."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gdts.worker.executor import RunningCommand
from gdts.worker.runas import JobUser, lookup_user
from tests.support import process_alive, wait_until

pytestmark = pytest.mark.asyncio

ENV = dict(os.environ)


async def run(command: str, limit: int = 1024 * 1024, grace: float = 1.0, **kw: object):
    return await RunningCommand(grace).run("/bin/bash", command, ENV, limit)


async def test_output_and_exit_code_are_captured() -> None:
    result = await run("echo out; echo err >&2; exit 4")
    assert result.exit_code == 4 and not result.killed
    assert result.err == "exit status 4"
    assert sorted(result.output.splitlines()) == ["err", "out"]
    assert result.start_ms <= result.end_ms


async def test_output_over_the_cap_is_cut_with_a_visible_marker() -> None:
    result = await run("head -c 5000 /dev/zero | tr '\\0' 'x'", limit=1000)
    kept, marker = result.output.split("\n", 1)
    assert kept == "x" * 1000
    assert marker == "[output truncated: 4000 more bytes not kept]"
    assert result.exit_code == 0


async def test_output_larger_than_a_pipe_buffer_arrives_whole() -> None:
    # The job writes faster than we read: its end of the pipe must block, not fail with EAGAIN.
    result = await run("head -c 1000000 /dev/zero | tr '\\0' 'y'; echo; echo end")
    assert result.exit_code == 0, result.err
    lines = result.output.splitlines()
    assert lines == ["y" * 1_000_000, "end"]


async def test_a_cancelled_run_kills_its_group_and_leaves_no_zombie(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run(f"echo $$ > {pid_file}; sleep 600"))

    async def started() -> int | None:
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        return int(text) if text else None

    shell = await wait_until(started, 10, "the command to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def reaped() -> bool:
        return not _in_process_table(shell)

    await wait_until(reaped, 10, "the killed shell to be reaped")


async def test_a_background_child_holding_the_output_does_not_hold_the_run(tmp_path) -> None:
    pid_file = tmp_path / "bg.pid"
    started = time.monotonic()
    result = await run(f"sleep 30 & echo $! > {pid_file}; echo done")
    assert time.monotonic() - started < 10  # not the 30 s of the background sleep
    assert result.output.startswith("done\n")
    assert "background process still held it open" in result.output
    os.kill(int(pid_file.read_text()), 9)


async def test_kill_terminates_the_whole_group_and_escalates_to_sigkill(tmp_path) -> None:
    pids = tmp_path / "pids"
    # The shell and its child both ignore SIGTERM: only SIGKILL after the grace period works.
    command = f"trap '' TERM; (trap '' TERM; sleep 600) & echo $$ $! > {pids}; wait"
    runner = RunningCommand(kill_grace_s=0.5)
    task = asyncio.create_task(runner.run("/bin/bash", command, ENV, 1024))

    async def started() -> list[int] | None:
        text = pids.read_text().split() if pids.exists() else []
        return [int(p) for p in text] if len(text) == 2 else None

    shell, child = await wait_until(started, 10, "the command to start")
    runner.kill()
    result = await asyncio.wait_for(task, 10)
    assert result.killed and result.exit_code is None
    assert result.err == "killed on request; terminated by signal SIGKILL"
    await wait_until(_gone(shell, child), 5, "both processes to die")


async def test_kill_before_start_still_kills() -> None:
    runner = RunningCommand(kill_grace_s=0.5)
    runner.kill()
    result = await asyncio.wait_for(runner.run("/bin/bash", "sleep 600", ENV, 1024), 10)
    assert result.killed and "SIGTERM" in result.err


async def test_a_missing_shell_is_a_failed_run_not_a_crash() -> None:
    result = await RunningCommand(1.0).run("/nonexistent/bash", "true", ENV, 1024)
    assert result.exit_code is None and not result.killed
    assert result.err.startswith("cannot start /nonexistent/bash")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can start a process as another user")
async def test_a_run_as_another_user_has_its_ids_groups_env_and_workdir() -> None:
    nobody = lookup_user("nobody")
    # 4242 is in no group file: setgroups() takes any gid, so the list shown is the one given.
    user = JobUser("nobody", nobody.uid, nobody.gid, (nobody.gid, 4242), "/var/empty", "/tmp")
    env = dict(ENV, HOME="/root", USER="root", LOGNAME="root")
    result = await RunningCommand(1.0).run(
        "/bin/bash", "id -u; id -g; id -G; echo $HOME $USER $LOGNAME; pwd", env, 1024, user=user
    )
    assert result.exit_code == 0, result
    assert result.output.splitlines() == [
        str(nobody.uid), str(nobody.gid), f"{nobody.gid} 4242", "/var/empty nobody nobody", "/tmp"
    ]  # fmt: skip


def _in_process_table(pid: int) -> bool:
    # Not merely alive: a zombie (dead, never reaped) still has its /proc entry.
    return os.path.exists(f"/proc/{pid}")


def _gone(*pids: int):
    async def check() -> bool:
        return not any(process_alive(pid) for pid in pids)

    return check
