"""Runs contained (a worker with runUidRange, started as root): each run is its own uid, so it
cannot read or signal another run; a kill, a timeout and the run's own end reach every process
it started, setsid children included; and nothing of a run outlives its worker, however the
worker dies. Every process here is real; the tests find them through /proc."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.test_runas import processes_with
from tests.support import (
    Child,
    Cluster,
    TcpProxy,
    api_post,
    cron_at,
    holds,
    job_runs,
    passable_dir,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip("runUidRange needs a worker started as root", allow_module_level=True)

RANGE_1 = (61300, 61349)
RANGE_2 = (61350, 61399)


def pool(uids: tuple[int, int], root: Path, name: str) -> dict[str, object]:
    return {
        "allowRoot": False,
        "runUidRange": f"{uids[0]}-{uids[1]}",
        "runDir": str(root / f"runs-{name}"),
    }


@pytest_asyncio.fixture
async def root() -> AsyncIterator[Path]:
    with passable_dir("gdts-runs-") as path:
        yield path


async def contained(cluster: Cluster, root: Path, name: str = "w1") -> Child:
    uids = RANGE_2 if name == "w2" else RANGE_1
    return await cluster.start_worker(name, **pool(uids, root, name))


def token() -> str:
    """A sleep length nothing else on the machine uses, to find a job's processes by."""
    return str(10**8 + secrets.randbelow(10**8))


def gone(token_: str) -> bool:
    return not processes_with(token_)


def soon() -> str:
    return cron_at(time.time() + 2)


async def first_run(cluster: Cluster, name: str) -> dict[str, object]:
    return (await wait_until(lambda: job_runs(cluster, name), 30, f"a run of {name}"))[0]


async def test_a_run_cannot_read_or_signal_another_run(cluster: Cluster, root: Path) -> None:
    await cluster.start_together(cluster.start_manager(), contained(cluster, root))
    hold = token()
    await save_job_fields(
        cluster.api, name="holder", cronExpr=soon(),
        command=f"export BOB_SECRET=hunter2; id -u; exec sleep {hold}",
    )  # fmt: skip
    await wait_until(holds(lambda: processes_with(hold)), 30, "the holder running")
    ((holder_uid, _),) = processes_with(hold).values()
    assert RANGE_1[0] <= holder_uid <= RANGE_1[1]
    await save_job_fields(
        cluster.api, name="snoop", cronExpr=soon(),
        command="id -u; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c "
        "BOB_SECRET; kill -9 -1; echo after-kill",
    )  # fmt: skip
    snoop = await first_run(cluster, "snoop")
    snoop_uid, seen, *rest = str(snoop["output"]).split()
    assert int(snoop_uid) != holder_uid and RANGE_1[0] <= int(snoop_uid) <= RANGE_1[1]
    assert seen == "0"  # no other run's environment was readable
    assert rest == ["after-kill"]  # kill -9 -1 reached only the snoop's own processes
    assert not gone(hold), "the other run was killed"
    await api_post(cluster.api, "/job/kill", name="holder")
    await wait_until(holds(lambda: gone(hold)), 30, "the holder killed")


async def test_each_run_of_a_uid_starts_in_a_directory_as_new(cluster: Cluster, root: Path) -> None:
    """One uid for every run: each finds its HOME empty and private, whatever the run before
    it left there or did to it."""
    single = (RANGE_1[0], RANGE_1[0])
    await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", maxConcurrentRuns=1, **pool(single, root, "w1")),
    )
    await save_job_fields(
        cluster.api, name="litter", cronExpr="* * * * * *",
        command='id -u; stat -c %a "$HOME"; ls -A "$HOME" | wc -l; '
        'touch "$HOME/left"; chmod 777 "$HOME"',
    )  # fmt: skip

    async def three_runs() -> list[dict[str, object]] | None:
        runs = await job_runs(cluster, "litter")
        return runs if len(runs) >= 3 else None

    for run in await wait_until(three_runs, 30, "three runs"):
        assert str(run["output"]).split() == [str(single[0]), "700", "0"], run


async def test_a_kill_a_timeout_and_a_runs_end_reach_what_it_started_unless_kept(
    cluster: Cluster, root: Path
) -> None:
    """Four runs of one tick, each a uid of its own (one tick's wait, not three): a kill and a
    timeout reach setsid children; what a run leaves behind dies at its end, unless kept."""
    await cluster.start_together(cluster.start_manager(), contained(cluster, root))
    child, main, slow_child, left, kept = token(), token(), token(), token(), token()
    at = soon()
    await asyncio.gather(
        save_job_fields(
            cluster.api, name="escaper", cronExpr=at,
            command=f"setsid sleep {child} >/dev/null 2>&1 </dev/null & exec sleep {main}",
        ),
        save_job_fields(
            cluster.api, name="slow", cronExpr=at, timeout=1,
            command=f"setsid sleep {slow_child} >/dev/null 2>&1 </dev/null & sleep 3600",
        ),
        save_job_fields(
            cluster.api, name="kept", cronExpr=at, keepBackground=True,
            command=f"setsid sleep {kept} >/dev/null 2>&1 </dev/null & echo bye",
        ),
        save_job_fields(
            cluster.api, name="leaver", cronExpr=at,
            command=f"sleep {left} >/dev/null 2>&1 & echo bye",
        ),
    )  # fmt: skip

    # A kill reaches setsid children.
    await wait_until(
        holds(lambda: not gone(child) and not gone(main)), 30, "both processes running"
    )
    await api_post(cluster.api, "/job/kill", name="escaper")
    await wait_until(holds(lambda: gone(child) and gone(main)), 15, "both processes killed")
    run = await first_run(cluster, "escaper")
    assert run["status"] == "killed", run

    # A timeout reaches setsid children.
    run = await first_run(cluster, "slow")
    assert run["status"] == "timeout", run
    await wait_until(holds(lambda: gone(slow_child)), 15, "the setsid child killed")

    # What a run leaves behind dies with it, unless kept.
    for name in ("kept", "leaver"):
        assert (await first_run(cluster, name))["status"] == "succeeded"
    await wait_until(holds(lambda: gone(left)), 15, "the detached child killed at the run's end")
    # The same sweep left the kept one alone; /job/kill ends it.
    assert not gone(kept)
    await api_post(cluster.api, "/job/kill", name="kept")
    await wait_until(holds(lambda: gone(kept)), 15, "the kept background process killed")


async def test_nothing_of_a_run_outlives_its_worker(cluster: Cluster, root: Path) -> None:
    _, w1 = await cluster.start_together(cluster.start_manager(), contained(cluster, root, "w1"))
    first, second = token(), token()
    await save_job_fields(
        cluster.api, name="long", cronExpr=soon(),
        command=f"setsid sleep {first} >/dev/null 2>&1 </dev/null & exec sleep {second}",
    )  # fmt: skip
    await wait_until(holds(lambda: not gone(first) and not gone(second)), 30, "the run going")
    os.kill(w1.pid, signal.SIGKILL)  # no drain, no cleanup of its own
    killed_at = time.monotonic()
    await wait_until(holds(lambda: gone(first) and gone(second)), 10, "the run's processes gone")
    assert time.monotonic() - killed_at < 5
    # A worker restarted on the same range kills what an earlier life left, even with its
    # guardian dead too (both SIGKILLed: a reboot of the worker's cgroup, say).
    w1b = await contained(cluster, root, "w1b")
    third = token()
    await save_job_fields(
        cluster.api, name="orphan", cronExpr=soon(), command=f"exec sleep {third}"
    )
    await wait_until(holds(lambda: not gone(third)), 30, "the orphan running")
    for pid in [w1b.pid, *_guardians_of(w1b.pid)]:
        os.kill(pid, signal.SIGKILL)
    assert not gone(third)
    await contained(cluster, root, "w1c")
    await wait_until(holds(lambda: gone(third)), 15, "the restarted worker killing the orphan")


def _guardians_of(worker_pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == worker_pid and b"gdts.worker.guardian" in cmdline:
            found.append(int(entry.name))
    return found


async def test_a_lost_run_is_gone_before_the_next_run_starts(cluster: Cluster, root: Path) -> None:
    """SIGKILL of the worker mid-run: its run's processes are gone before another worker starts
    the job's next run (policy forbid: never two at once), and the run is recorded lost."""
    _, w1 = await cluster.start_together(cluster.start_manager(), contained(cluster, root, "w1"))
    hold = token()
    await save_job_fields(
        cluster.api, name="steady", cronExpr="* * * * * *",
        command=f"setsid sleep {hold} >/dev/null 2>&1 </dev/null & exec sleep {hold}",
    )  # fmt: skip
    await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 2), 30, "w1's run going")
    await contained(cluster, root, "w2")
    os.kill(w1.pid, signal.SIGKILL)
    await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 0), 10, "w1's run's processes gone")
    gone_ms = time.time() * 1000

    async def run_on_w2() -> list[dict[str, object]]:
        return [r for r in await job_runs(cluster, "steady") if r["worker"] == "w2"]

    await wait_until(holds(lambda: _held_in(hold, RANGE_2) > 0), 30, "w2's run going")
    await api_post(cluster.api, "/job/kill", name="steady")
    (w2_run, *_) = await wait_until(run_on_w2, 30, "w2's run recorded")
    assert int(str(w2_run["startTime"])) > gone_ms, (w2_run, gone_ms)
    statuses = {r["status"] for r in await job_runs(cluster, "steady") if r["worker"] == "w1"}
    assert "lost" in statuses, statuses


def _held_in(token_: str, uids: tuple[int, int]) -> int:
    """How many processes with ``token_`` in their command line hold a uid of ``uids``."""
    return sum(1 for uid, _ in processes_with(token_).values() if uids[0] <= uid <= uids[1])


async def test_a_frozen_workers_run_dies_before_another_worker_starts_the_job(
    cluster: Cluster, root: Path
) -> None:
    """SIGSTOP of the worker mid-run: it cannot kill anything, but its guardian does, once the
    worker's lease may be gone, before another worker may start the job (forbid: never two at
    once)."""
    _, w1 = await cluster.start_together(cluster.start_manager(), contained(cluster, root, "w1"))
    hold = token()
    await save_job_fields(
        cluster.api, name="steady", cronExpr="* * * * * *", command=f"exec sleep {hold}"
    )
    await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 1), 30, "w1's run going")
    await contained(cluster, root, "w2")
    os.kill(w1.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 0), 15, "w1's run killed")
        ttl = cluster.stack.worker_config()["workerLeaseTtl"]
        assert time.monotonic() - stopped_at < ttl + 1
        gone_ms = time.time() * 1000
        await wait_until(holds(lambda: _held_in(hold, RANGE_2) == 1), 30, "w2's run going")
    finally:
        os.kill(w1.pid, signal.SIGCONT)
    await api_post(cluster.api, "/job/kill", name="steady")

    async def w2_run() -> list[dict[str, object]]:
        return [r for r in await job_runs(cluster, "steady") if r["worker"] == "w2"]

    (first_on_w2, *_) = await wait_until(w2_run, 30, "w2's run recorded")
    assert int(str(first_on_w2["startTime"])) > gone_ms


async def test_a_cut_off_workers_run_is_killed_when_its_lease_may_be_gone(
    cluster: Cluster, root: Path
) -> None:
    await cluster.start_manager()
    host, port = cluster.stack.etcd_endpoint.split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        await cluster.start_worker(
            "w1", etcdEndpoints=[proxy.endpoint], **pool(RANGE_1, root, "w1")
        )
        hold = token()
        await save_job_fields(
            cluster.api, name="steady", cronExpr="* * * * * *", command=f"exec sleep {hold}"
        )
        await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 1), 30, "w1's run going")
        proxy.cut()
        cut_at = time.monotonic()
        await wait_until(holds(lambda: _held_in(hold, RANGE_1) == 0), 15, "w1's run killed")
        assert time.monotonic() - cut_at < cluster.stack.worker_config()["workerLeaseTtl"] + 1

        async def killed_for_the_lease() -> bool:
            return any(
                str(r["err"]).startswith("killed: the worker's etcd lease may be gone")
                for r in await job_runs(cluster, "steady")
            )

        await wait_until(killed_for_the_lease, 30, "the run logged killed, saying why")
    finally:
        await proxy.close()
