"""The whole system as an operator runs it: a manager and workers as processes, real etcd and
mongod, jobs with real side effects. Each tick's side effect is the record we check."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest

from gdts.localstack import EtcdProcess
from tests.support import (
    EVERY_SECOND,
    Cluster,
    Stack,
    api_get,
    api_post,
    count_at_least,
    cron_at,
    job_runs,
    now_ms,
    process_alive,
    read_ticks,
    record_command,
    save_job,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def test_job_runs_on_schedule_and_its_run_is_logged_with_output(cluster: Cluster) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    await save_job(cluster.api, "greet", 'echo "hello at $GDTS_PLAN_TIME"', EVERY_SECOND)
    await save_job(cluster.api, "broken", "echo oops >&2; exit 3", EVERY_SECOND)

    logged = await wait_until(lambda: job_runs(cluster, "greet"), 20, "a logged run of greet")
    run = logged[0]
    assert run["status"] == "succeeded" and run["exitCode"] == 0 and run["err"] == ""
    assert run["output"] == f"hello at {run['planTime']}\n"
    assert run["planTime"] % 1000 == 0  # ticks fall on whole seconds
    assert run["planTime"] <= run["scheduleTime"] <= run["startTime"] <= run["endTime"]
    assert run["worker"] == "w1" and run["jobName"] == "greet"

    failed = (await wait_until(lambda: job_runs(cluster, "broken"), 20, "a run of broken"))[0]
    assert failed["status"] == "failed" and failed["exitCode"] == 3
    assert failed["err"] == "exit status 3" and failed["output"] == "oops\n"


async def test_delete_stops_future_runs(cluster: Cluster, stack: Stack) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    ticks = stack.tmp / "ticks.txt"
    sentinel = stack.tmp / "sentinel.txt"
    await save_job(cluster.api, "doomed", record_command(ticks), EVERY_SECOND)
    await wait_until(lambda: count_at_least(ticks, 2), 20, "two runs of doomed")

    deleted = await api_post(cluster.api, "/job/delete", name="doomed")
    deleted_at = now_ms()
    assert deleted["name"] == "doomed"
    # Saved after the delete, so the worker sees it after the delete: once the sentinel has run
    # twice, the worker has long applied the delete.
    await save_job(cluster.api, "sentinel", record_command(sentinel), EVERY_SECOND)
    await wait_until(lambda: count_at_least(sentinel, 2), 20, "two runs of sentinel")
    late = [plan for plan, _ in read_ticks(ticks) if plan > deleted_at]
    assert late == [], f"doomed ran after it was deleted: {late}"


async def test_kill_stops_the_process_group_and_logs_the_run_as_killed(
    cluster: Cluster, stack: Stack
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    shell_pid, child_pid = stack.tmp / "shell.pid", stack.tmp / "child.pid"
    command = f"sleep 600 & echo $! > {child_pid}; echo $$ > {shell_pid}; sleep 600"
    await save_job(cluster.api, "sleeper", command, cron_at(time.time() + 2))

    async def pids() -> tuple[int, int] | None:
        if shell_pid.exists() and child_pid.exists():
            text = shell_pid.read_text().strip(), child_pid.read_text().strip()
            if all(text):
                return int(text[0]), int(text[1])
        return None

    shell, child = await wait_until(pids, 20, "the job to start")
    assert process_alive(shell) and process_alive(child)
    await api_post(cluster.api, "/job/kill", name="sleeper")

    async def both_gone() -> bool:
        return not process_alive(shell) and not process_alive(child)

    await wait_until(both_gone, 2.0, "the shell and its child to die within 2 s")
    logged = await wait_until(lambda: job_runs(cluster, "sleeper"), 10, "the killed run in the log")
    assert logged[0]["status"] == "killed"
    assert "killed on request" in logged[0]["err"]


@pytest.mark.waits
async def test_three_workers_run_every_tick_exactly_once_and_round_robin_takes_turns(
    cluster: Cluster, stack: Stack
) -> None:
    """One cluster for two promises over the same 100 s: a job placed by its bucket (the
    default) runs every tick once, and a roundRobin job's 100 ticks split 34/33/33 +- 2."""
    await cluster.start_together(
        cluster.start_manager(), *(cluster.start_worker(w) for w in ("w1", "w2", "w3"))
    )
    ticks, turns = stack.tmp / "ticks.txt", stack.tmp / "turns.txt"
    await save_job(cluster.api, "every-second", record_command(ticks), EVERY_SECOND)
    start_ms = now_ms() + 2000  # every worker has seen the roundRobin job by then
    await save_job_fields(cluster.api, name="turns", command=record_command(turns),
                          cronExpr=EVERY_SECOND, routing="roundRobin")  # fmt: skip

    def hundred_turns() -> list[tuple[int, str]]:
        end_ms = start_ms + 100_000
        return [(plan, w) for plan, w in read_ticks(turns) if start_ms <= plan < end_ms]

    async def all_hundred() -> bool:
        return len({plan for plan, _ in hundred_turns()}) >= 100

    await wait_until(all_hundred, 130, "100 ticks of the roundRobin job")
    await api_post(cluster.api, "/job/delete", name="every-second")
    deleted_at = now_ms()
    # Ticks planned before the delete may still be finishing; wait until every one is logged.
    await wait_until(
        lambda: _logged_equals_file(cluster, "every-second", ticks), 20, "all runs logged"
    )

    plans = sorted(plan for plan, _ in read_ticks(ticks))
    counts = Counter(plans)
    duplicates = {plan: n for plan, n in counts.items() if n > 1}
    assert duplicates == {}, f"ticks run more than once: {duplicates}"
    first, last = plans[0], plans[-1]
    assert last <= deleted_at
    expected = set(range(first + 1000, last + 1, 1000))  # every tick after the first
    missing = sorted(expected - set(plans))
    assert missing == [], f"ticks never run: {missing}"
    assert len(expected) >= 20
    logged = await job_runs(cluster, "every-second")
    assert sorted(r["planTime"] for r in logged) == plans  # one log document per run

    taken = hundred_turns()
    assert len(taken) == 100, f"a tick of the roundRobin job ran twice: {Counter(taken)}"
    shares = sorted(Counter(worker for _, worker in taken).values())
    assert len(shares) == 3, shares
    assert all(abs(a - b) <= 2 for a, b in zip(shares, [33, 33, 34], strict=True)), shares


async def test_sigkilled_worker_leaves_worker_list_and_job_runs_on(
    cluster: Cluster, stack: Stack
) -> None:
    await cluster.start_manager()
    victim = await cluster.start_worker("w1")
    await cluster.start_worker("w2")
    await cluster.start_worker("w3")
    ticks = stack.tmp / "ticks.txt"
    await save_job(cluster.api, "steady", record_command(ticks), EVERY_SECOND)
    await wait_until(lambda: count_at_least(ticks, 3), 20, "the job to run")
    listed = {w["id"] for w in await api_get(cluster.api, "/worker/list")}
    assert listed == {"w1", "w2", "w3"}

    await victim.kill()
    killed_at = time.monotonic()
    killed_at_ms = now_ms()

    async def victim_gone() -> bool:
        return "w1" not in {w["id"] for w in await api_get(cluster.api, "/worker/list")}

    lease_ttl = stack.worker_config()["workerLeaseTtl"]
    # etcd checks lease expiry every 500 ms; allow that beyond the TTL.
    await wait_until(victim_gone, lease_ttl + 1.0, f"w1 to vanish within its {lease_ttl}s lease")
    assert time.monotonic() - killed_at <= lease_ttl + 1.0

    async def three_more_ticks_elsewhere() -> bool:
        later = [w for plan, w in read_ticks(ticks) if plan > killed_at_ms + lease_ttl * 1000]
        return len(later) >= 3 and "w1" not in later

    await wait_until(three_more_ticks_elsewhere, 20, "the job to keep running on w2/w3")
    counts = Counter(plan for plan, _ in read_ticks(ticks))
    assert max(counts.values()) == 1, "a tick ran twice"


async def test_sigterm_flushes_buffered_results(cluster: Cluster, stack: Stack) -> None:
    # A commit timeout far beyond the test: results can only reach MongoDB through the flush.
    _, worker = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", jobLogCommitTimeout=600_000, jobLogBatchSize=1000),
    )
    ticks = stack.tmp / "ticks.txt"
    await save_job(cluster.api, "buffered", record_command(ticks), EVERY_SECOND)
    await wait_until(lambda: count_at_least(ticks, 3), 20, "three runs")
    await api_post(cluster.api, "/job/delete", name="buffered")
    assert await job_runs(cluster, "buffered") == []  # all still in the worker's buffer

    assert await worker.terminate() == 0
    plans = sorted(plan for plan, _ in read_ticks(ticks))
    logged = sorted(r["planTime"] for r in await job_runs(cluster, "buffered"))
    assert logged == plans
    assert "revoked" in worker.log_text()


async def test_worker_survives_an_etcd_restart(stack: Stack) -> None:
    etcd = EtcdProcess(stack.tmp / "etcd", log_path=stack.tmp / "etcd.log")
    await etcd.start()
    own = dataclasses.replace(stack, etcd_endpoint=etcd.endpoint)
    cluster = Cluster(own)
    try:
        _, worker = await cluster.start_together(
            cluster.start_manager(), cluster.start_worker("w1")
        )
        before, after = stack.tmp / "before.txt", stack.tmp / "after.txt"
        await save_job(cluster.api, "before", record_command(before), EVERY_SECOND)
        await wait_until(lambda: count_at_least(before, 2), 20, "runs before the restart")
        await etcd.stop()
        await etcd.start()
        # A job saved after the restart runs only if the worker re-watched by itself.
        await wait_until(
            lambda: _save_ok(cluster, "after", record_command(after)), 20, "etcd back up"
        )
        await wait_until(
            lambda: count_at_least(after, 2), 30, "the new job to run after the restart"
        )
        count = len(read_ticks(before))
        await wait_until(
            lambda: count_at_least(before, count + 2), 20, "the old job to keep running"
        )
        assert worker.process.returncode is None  # the same process, never restarted
    finally:
        await cluster.stop_all()
        await etcd.stop()


async def _save_ok(cluster: Cluster, name: str, command: str) -> bool:
    try:
        await save_job(cluster.api, name, command, EVERY_SECOND)
        return True
    except AssertionError:
        return False


async def _logged_equals_file(cluster: Cluster, name: str, ticks: Path) -> bool:
    logged = sorted(r["planTime"] for r in await job_runs(cluster, name))
    return bool(logged) and logged == sorted(plan for plan, _ in read_ticks(ticks))
