"""Fault injection: crashes, partitions, clock skew, store outages, racing managers, shutdown.

Each scenario runs jobs every second on several workers and checks the side-effect record (one
line per run, appended by the job itself) for duplicates and misses. Run alone: ``pytest -m
fault``. The cluster-failover scenarios are in test_failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import time

import pytest
from pymongo import AsyncMongoClient

from gdts.job import Job, jobs_digest
from gdts.livelog import COLLECTION as LIVE_OUTPUT
from gdts.localstack import EtcdProcess, MongoProcess, free_port
from tests.support import (
    EVERY_SECOND,
    Child,
    Cluster,
    Stack,
    TcpProxy,
    api_get,
    api_post,
    count_after,
    count_at_least,
    cron_at,
    holds,
    job_owned_by,
    now_ms,
    probe,
    read_ticks,
    record_command,
    save_job,
    tick_report,
    wait_until,
)

# Each scenario waits out its fault: the whole module runs in the lane beside the rest.
pytestmark = [pytest.mark.asyncio, pytest.mark.fault, pytest.mark.waits]


async def manager_and_workers(cluster: Cluster, count: int, **overrides) -> list[Child]:
    """The manager and workers w1..w<count>, started side by side; returns the workers."""
    workers = (cluster.start_worker(f"w{i}", **overrides) for i in range(1, count + 1))
    return (await cluster.start_together(cluster.start_manager(), *workers))[1:]


async def logged(cluster: Cluster, name: str) -> list[dict]:
    return await api_get(cluster.api, "/job/log", name=name, limit=1000)


async def test_sigkill_mid_run_marks_the_run_lost_and_the_job_moves_on(
    cluster: Cluster, stack: Stack
) -> None:
    # Live output after 0.2 s: the run's first line reaches MongoDB before the worker dies.
    workers = {
        w.name: w
        for w in await manager_and_workers(cluster, 3, liveOutputAfter=200, liveOutputInterval=100)
    }
    beat, slow = stack.tmp / "beat.txt", stack.tmp / "slow.txt"
    await save_job(cluster.api, "beat", record_command(beat), EVERY_SECOND)
    # A long run, so the crash lands mid-run; "forbid" keeps one run at a time cluster-wide.
    pids = stack.tmp / "slow.pids"
    await save_job(
        cluster.api,
        "slow",
        record_command(slow, f"; echo $$ >> {pids}; echo partial; sleep 30"),
        EVERY_SECOND,
    )
    try:
        await _sigkill_mid_run(cluster, stack, workers, beat, slow)
    finally:
        # The killed worker's run outlives it (as under any supervisor that does not kill the
        # whole group); do not leave it behind.
        for pid in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


async def _sigkill_mid_run(cluster, stack, workers, beat, slow) -> None:
    started = await wait_until(lambda: _lines(slow, 1), 20, "slow to start")
    lost_plan, victim_id = started[0]
    victim = workers[victim_id]

    async def live_output() -> dict | None:
        part = await api_get(cluster.api, "/job/output", name="slow", planTime=lost_plan)
        return part if part["output"] else None

    assert (await wait_until(live_output, 10, "the run's live output"))["running"] is True
    await victim.kill()
    killed_at = now_ms()
    ttl_ms = stack.worker_config()["workerLeaseTtl"] * 1000

    async def lost_record() -> dict | None:
        runs = [r for r in await logged(cluster, "slow") if r["planTime"] == lost_plan]
        return runs[0] if runs and runs[0]["status"] == "lost" else None

    record = await wait_until(lost_record, 2 * ttl_ms / 1000, "the run to be marked lost")
    assert record["worker"] == victim_id and record["exitCode"] is None
    # What it printed before its worker died is the lost record's output.
    assert record["output"] == "partial\n"
    partial = await api_get(cluster.api, "/job/output", name="slow", planTime=lost_plan)
    assert partial["output"] == "partial\n" and partial["status"] == "lost"
    assert partial["running"] is False
    # Its chunks went once that record was stored.
    client: AsyncMongoClient = AsyncMongoClient(stack.mongo_uri)
    try:
        chunks = client[stack.database][LIVE_OUTPUT]
        run = {"jobName": "slow", "planTime": lost_plan}
        await wait_until(lambda: _none(chunks, run), 10, "the lost run's chunks to go")
    finally:
        await client.close()
    assert now_ms() - killed_at <= 2 * ttl_ms
    # The next tick of slow runs on a surviving worker.
    moved = await wait_until(lambda: _lines(slow, 2), 20, "slow to run again elsewhere")
    assert moved[1][1] != victim_id and moved[1][0] > lost_plan
    duplicates, _ = tick_report(beat, killed_at, now_ms())
    assert duplicates == {}
    assert len({p for p, _ in read_ticks(slow)}) == len(read_ticks(slow))  # slow never twice


async def _none(collection, query: dict) -> bool:
    return await collection.count_documents(query) == 0


async def test_partitioned_worker_fences_itself_and_healing_adds_no_duplicate(
    cluster: Cluster, stack: Stack
) -> None:
    await manager_and_workers(cluster, 2)
    host, port = stack.etcd_endpoint.split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        cut_off = await cluster.start_worker("w3", etcdEndpoints=[proxy.endpoint])
        ticks = stack.tmp / "ticks.txt"
        beat = job_owned_by("w3", ["w1", "w2", "w3"], "beat")  # w3 claims its ticks first
        await save_job(cluster.api, beat, record_command(ticks), EVERY_SECOND)
        await wait_until(lambda: _ran_on(ticks, "w3"), 30, "w3 to take a tick")
        begin = now_ms()
        proxy.cut()
        cut_at = now_ms()
        ttl = stack.worker_config()["workerLeaseTtl"]

        async def fenced() -> bool:
            return "not claiming: lease not confirmed alive" in cut_off.log_text()

        await wait_until(fenced, ttl + 10, "w3 to stop claiming (self-fencing)")
        await wait_until(lambda: count_after(ticks, cut_at + ttl * 1000, 3), 20,
                         "w1/w2 to carry on")  # fmt: skip
        proxy.heal()
        healed_at = now_ms()
        await wait_until(lambda: _ran_on(ticks, "w3", after=healed_at), 40, "w3 back at work")
        end = now_ms() - 2000
        duplicates, misses = tick_report(ticks, begin, end)
        assert duplicates == {}
        # Until w3's lease expires, a run it finished but could not release still counts as
        # going (forbid policy), so those ticks may be skipped; none outside that window.
        allowed_until = cut_at + (ttl + 1) * 1000
        outside = [m for m in misses if not cut_at - 1000 <= m <= allowed_until]
        assert outside == [], f"missed outside the cut-off worker's lease: {outside}"
        # Cut off, w3 ran nothing; a tick planned within one start window of the healing may
        # still be claimed by w3's retries once healed (once, late, never twice).
        window = stack.worker_config().get("startWindow", 10_000)
        cut_off_ticks = [
            w for plan, w in read_ticks(ticks) if cut_at + 1000 < plan < healed_at - window
        ]
        assert "w3" not in cut_off_ticks
    finally:
        await proxy.close()


async def test_a_worker_whose_clock_runs_ahead_causes_no_duplicate_and_no_miss(
    cluster: Cluster, stack: Stack
) -> None:
    await manager_and_workers(cluster, 2)
    metrics_port = free_port()
    skewed = await cluster.start_worker(
        "w3", clockOffset=3000, httpListen=f"127.0.0.1:{metrics_port}"
    )
    ticks = stack.tmp / "ticks.txt"
    begin = now_ms()
    await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
    await wait_until(lambda: count_at_least(ticks, 15), 40, "15 s of ticks")
    await api_post(cluster.api, "/job/delete", name="beat")
    end = max(plan for plan, _ in read_ticks(ticks))
    duplicates, misses = tick_report(ticks, begin + 5000, end)  # the first ticks: save latency
    assert duplicates == {} and misses == []

    async def warned() -> bool:
        return "clock is 3.0s off MongoDB's clock" in skewed.log_text()

    await wait_until(warned, 15, "the skewed worker to warn")
    _, metrics = await probe(metrics_port, "/metrics")
    offset = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("gdts_clock_offset_seconds ")
    )
    assert 2.5 < offset < 3.5


async def test_mongodb_down_for_30s_loses_no_result(stack: Stack) -> None:
    mongo = MongoProcess(stack.tmp / "mongo", log_path=stack.tmp / "mongod.log")
    await mongo.start()
    own = dataclasses.replace(stack, mongo_uri=mongo.uri)
    cluster = Cluster(own)
    try:
        # A tiny in-memory buffer, so the outage exercises both the results held in memory
        # (the first four) and the spill to disk (the rest).
        await manager_and_workers(cluster, 3, jobLogBufferLimit=4, mongodbConnectTimeout=1000)
        ticks = stack.tmp / "ticks.txt"
        await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
        await wait_until(lambda: logged(cluster, "beat"), 20, "a first logged run")
        await mongo.stop()
        down_at = time.monotonic()
        while time.monotonic() - down_at < 30:  # the outage lasts 30 s; the job keeps running
            target = len(read_ticks(ticks)) + 1
            await wait_until(lambda: count_at_least(ticks, target), 10, "a run")  # noqa: B023
        assert any(list((stack.tmp / f"spill-w{i}").glob("*.jsonl")) for i in (1, 2, 3)), (
            "nothing was spilled to disk"
        )
        await mongo.start()
        await api_post(cluster.api, "/job/delete", name="beat")
        await wait_until(lambda: _all_logged(cluster, "beat", ticks), 60, "every run logged")
    finally:
        await cluster.stop_all()
        await mongo.stop()


async def test_etcd_frozen_for_seconds_delays_ticks_but_skips_none(stack: Stack) -> None:
    """etcd stops answering for a while (a compaction, a slow disk): ticks planned meanwhile
    start late, but each once. A worker's own release of a job's previous run may still wait
    behind a stalled batch when the job's next claim goes out; that claim must not find the
    marker, count the job busy, and skip the tick."""
    etcd = EtcdProcess(stack.tmp / "etcd", log_path=stack.tmp / "etcd.log")
    await etcd.start()
    own = dataclasses.replace(stack, etcd_endpoint=etcd.endpoint)
    cluster = Cluster(own)
    jobs = 40
    try:
        # A lease that outlives the freeze: this test is about the runs, not about fencing.
        await cluster.start_together(
            cluster.start_manager(), cluster.start_worker("w1", workerLeaseTtl=15)
        )
        files = [stack.tmp / f"j{i:02}.txt" for i in range(jobs)]
        for i, ticks in enumerate(files):
            # Runs of different lengths end (and release) one after another through each
            # second, so the freeze catches releases waiting behind a stalled batch.
            command = record_command(ticks, f"; sleep {i * 0.015:.3f}")
            await save_job(cluster.api, f"j{i:02}", command, EVERY_SECOND)
        started_at = now_ms()
        await wait_until(holds(lambda: _all_ran_after(files, started_at)), 20, "every job")
        # Into the second, while runs are ending: not a wait for a condition, a phase.
        await asyncio.sleep(1.3 - time.time() % 1)
        frozen_from = now_ms()
        assert etcd.pid is not None
        os.kill(etcd.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(2.5)  # the stall itself is what is tested, not a wait
        finally:
            os.kill(etcd.pid, signal.SIGCONT)
        thawed_at = now_ms()
        await wait_until(
            holds(lambda: _all_ran_after(files, thawed_at + 3000)), 30, "runs after the thaw"
        )
        for ticks in files:
            duplicates, misses = tick_report(ticks, frozen_from - 2000, thawed_at + 2000)
            assert not duplicates, f"{ticks.name}: ticks run twice: {duplicates}"
            assert not misses, f"{ticks.name}: ticks skipped: {misses}\n{cluster.logs()}"
    finally:
        await cluster.stop_all()
        await etcd.stop()


def _all_ran_after(files: list, after_ms: int) -> bool:
    return all(any(plan > after_ms for plan, _ in read_ticks(f)) for f in files)


async def test_two_managers_racing_leave_one_whole_write_and_workers_converge(
    cluster: Cluster, stack: Stack
) -> None:
    first = await cluster.start_manager()
    api_one = cluster.api
    await cluster.start_manager()
    api_two = cluster.api
    assert first.process.returncode is None and api_one != api_two
    ports = [free_port() for _ in range(3)]
    for i, port in enumerate(ports, 1):
        await cluster.start_worker(f"w{i}", httpListen=f"127.0.0.1:{port}")
    rng = random.Random(7)
    written: dict[str, list[dict]] = {f"job{i}": [] for i in range(5)}

    async def one_write(api: str, writer: str, round_no: int) -> None:
        name = rng.choice(sorted(written))
        if rng.random() < 0.3:
            await api_post(api, "/job/delete", name=name)
            return
        job = {"name": name, "command": f"echo {writer}-{round_no}-" + "x" * rng.randint(0, 300),
               "cronExpr": rng.choice(["@daily", "@hourly", "0 0 1 1 *"])}  # fmt: skip
        written[name].append(job)
        await api_post(api, "/job/save", job=json.dumps(job))

    for round_no in range(30):
        await asyncio.gather(*(one_write(api, f"m{i}", round_no)
                               for i, api in enumerate([api_one, api_two] * 4)))  # fmt: skip
    final_one = await api_get(api_one, "/job/list")
    final_two = await api_get(api_two, "/job/list")
    assert final_one == final_two
    for job in final_one:
        sent = {field: job[field] for field in ("name", "command", "cronExpr")}
        assert sent in written[job["name"]], f"{sent} is not one of the writes (a mix?)"
    expected = jobs_digest(Job.from_api(job) for job in final_one)

    async def converged() -> bool:
        digests = [(await probe(port, "/health/jobs"))[1]["jobsDigest"] for port in ports]
        return all(d == expected for d in digests)

    await wait_until(converged, 20, "every worker to hold the final jobs")


async def test_sigterm_lets_a_running_job_finish_then_flushes_and_revokes(
    cluster: Cluster, stack: Stack
) -> None:
    workers = {w.name: w for w in await manager_and_workers(cluster, 2, drainTimeout=20_000)}
    slow, beat = stack.tmp / "slow.txt", stack.tmp / "beat.txt"
    await save_job(cluster.api, "beat", record_command(beat), EVERY_SECOND)
    await save_job(
        cluster.api, "slow", record_command(slow, f"; sleep 3; echo done >> {slow}.done"),
        cron_at(time.time() + 3),
    )  # fmt: skip
    ((plan, runner_id),) = await wait_until(lambda: _lines(slow, 1), 20, "slow to start")
    runner = workers[runner_id]
    runner.process.send_signal(15)
    stopped_at = now_ms()

    async def gone_from_list() -> bool:
        return runner_id not in {w["id"] for w in await api_get(cluster.api, "/worker/list")}

    assert await asyncio.wait_for(runner.process.wait(), 30) == 0
    assert (stack.tmp / "slow.txt.done").exists()  # the run finished before the worker left
    assert await gone_from_list()  # revoked at once, not after the lease TTL
    runs = await logged(cluster, "slow")
    assert [(r["planTime"], r["status"]) for r in runs] == [(plan, "succeeded")]
    later = [w for p, w in read_ticks(beat) if p > stopped_at + 1000]
    await wait_until(lambda: count_after(beat, stopped_at + 1000, 2), 10, "beat to go on")
    later = [w for p, w in read_ticks(beat) if p > stopped_at + 1000]
    assert later and runner_id not in later  # it stopped claiming
    await wait_until(lambda: _all_logged(cluster, "beat", beat, upto=stopped_at), 10,
                     "its earlier results flushed")  # fmt: skip


async def test_sigterm_kills_a_job_that_outlives_the_drain_timeout(
    cluster: Cluster, stack: Stack
) -> None:
    _, worker = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", drainTimeout=1000, killGracePeriod=500),
    )
    slow = stack.tmp / "slow.txt"
    await save_job(cluster.api, "slow", record_command(slow, "; sleep 600"),
                   cron_at(time.time() + 2))  # fmt: skip
    ((plan, _),) = await wait_until(lambda: _lines(slow, 1), 20, "slow to start")
    assert await worker.terminate(grace=30) == 0
    runs = await logged(cluster, "slow")
    assert [(r["planTime"], r["status"]) for r in runs] == [(plan, "killed")]


async def _lines(path, count: int) -> list[tuple[int, str]] | None:
    ticks = read_ticks(path)
    return ticks if len(ticks) >= count else None


async def _ran_on(path, worker: str, after: int = 0) -> bool:
    return any(w == worker and plan > after for plan, w in read_ticks(path))


async def _all_logged(cluster: Cluster, name: str, path, upto: int | None = None) -> bool:
    plans = sorted(p for p, _ in read_ticks(path) if upto is None or p <= upto)
    logged_plans = sorted(r["planTime"] for r in await logged(cluster, name))
    if upto is not None:
        logged_plans = [p for p in logged_plans if p <= upto]
    return bool(plans) and logged_plans == plans


async def test_results_not_yet_written_survive_a_sigkill_of_their_worker(
    cluster: Cluster, stack: Stack
) -> None:
    """The results wait for their batch (a minute, here) when the worker is SIGKILLed: its
    next start finds them in its journal and writes them."""
    holding = {"jobLogCommitTimeout": 60_000, "jobLogBatchSize": 1000}
    port = free_port()
    _, worker = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", httpListen=f"127.0.0.1:{port}", **holding),
    )
    ticks = stack.tmp / "ticks.txt"
    await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
    await wait_until(lambda: count_at_least(ticks, 3), 30, "three runs")
    await api_post(cluster.api, "/job/disable", name="beat")

    async def every_run_counted() -> bool:
        _, metrics = await probe(port, "/metrics")
        counted = sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("gdts_runs_total{")
        )
        return counted >= len(read_ticks(ticks))

    await wait_until(every_run_counted, 15, "the runs' results in the worker's buffer")
    assert await logged(cluster, "beat") == []  # still waiting for their batch
    await worker.kill()
    ran = sorted(plan for plan, _ in read_ticks(ticks))
    await cluster.start_worker("w1", **holding)

    async def all_written() -> bool:
        return sorted(r["planTime"] for r in await logged(cluster, "beat")) == ran

    await wait_until(all_written, 30, "every finished run's result written by the next start")


async def test_a_worker_started_while_etcd_is_unreachable_waits_and_then_works(
    cluster: Cluster, stack: Stack
) -> None:
    await cluster.start_manager()
    host, port = stack.etcd_endpoint.split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        proxy.cut()
        config = stack.worker_config(workerId="late", etcdEndpoints=[proxy.endpoint])
        worker = await cluster.spawn("worker", "late", config)

        async def waiting() -> bool:
            assert worker.process.returncode is None, worker.log_text()
            return "cannot register yet" in worker.log_text()

        await wait_until(waiting, 30, "the worker to say it waits for etcd")
        proxy.heal()
        ticks = stack.tmp / "ticks.txt"
        await save_job(cluster.api, "beat", record_command(ticks), EVERY_SECOND)
        await wait_until(lambda: _ran_on(ticks, "late"), 60, "the worker to run a tick")
        assert worker.process.returncode is None
    finally:
        await proxy.close()
