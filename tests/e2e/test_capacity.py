"""maxConcurrentRuns: a worker at its cap claims nothing (its running markers never pass the
cap), says so in /worker/list, readiness and metrics, the others take over what it cannot run,
and a tick no worker had room for is logged missed, saying every eligible worker was at
capacity. Never a tick run twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from gdts.localstack import free_port
from tests.support import Cluster, api_get, api_post, probe, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

JOBS = 300
CAP = 40


async def save_many(cluster: Cluster, names: list[str], command: str) -> None:
    async def save(name: str) -> None:
        job = {"name": name, "command": command, "cronExpr": "* * * * * *"}
        await api_post(cluster.api, "/job/save", job=json.dumps(job))

    for first in range(0, len(names), 25):
        await asyncio.gather(*(save(name) for name in names[first : first + 25]))


async def all_runs(cluster: Cluster, names: list[str]) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = []
    for first in range(0, len(names), 25):
        chunk = await asyncio.gather(
            *(api_get(cluster.api, "/job/log", name=name, limit=1000)
              for name in names[first : first + 25])
        )  # fmt: skip
        runs.extend(run for job_runs in chunk for run in job_runs)
    return runs


def most_at_once(runs: list[dict[str, object]]) -> dict[str, int]:
    """worker -> the most of its runs that overlapped (from the records' start and end)."""
    edges: dict[str, list[tuple[int, int]]] = {}
    for run in runs:
        if run["status"] in ("missed", "lost") or run["startTime"] is None:
            continue
        worker = str(run["worker"])
        edges.setdefault(worker, []).append((int(str(run["startTime"])), 1))
        edges.setdefault(worker, []).append((int(str(run["endTime"])), -1))
    peaks = {}
    for worker, points in edges.items():
        level = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            level += step
            peak = max(peak, level)
        peaks[worker] = peak
    return peaks


async def test_300_long_jobs_a_second_on_workers_capped_at_40(cluster: Cluster) -> None:
    ports = [free_port() for _ in range(3)]
    await cluster.start_together(
        cluster.start_manager(),
        *(cluster.start_worker(
            f"w{i}", httpListen=f"127.0.0.1:{port}", maxConcurrentRuns=CAP,
            takeoverDelay=500, startWindow=3000,
        ) for i, port in enumerate(ports, 1)),
    )  # fmt: skip
    names = [f"long-{i:03d}" for i in range(JOBS)]
    await save_many(cluster, names, "sleep 4")
    began = time.time()
    peaks: Counter[str] = Counter()
    said_full: set[str] = set()
    while time.time() - began < 15:
        for worker in await api_get(cluster.api, "/worker/list"):
            assert worker["maxConcurrentRuns"] == CAP
            peaks[worker["id"]] = max(peaks[worker["id"]], len(worker["running"]))
            if worker["atCapacity"]:
                said_full.add(worker["id"])
        await asyncio.sleep(0.2)
    assert said_full == {"w1", "w2", "w3"}, said_full
    assert max(peaks.values()) <= CAP, peaks
    ready = [await probe(port, "/health/ready") for port in ports]
    assert all(body["maxConcurrentRuns"] == CAP for _, body in ready), ready
    _, metrics = await probe(ports[0], "/metrics")
    assert f"gdts_max_concurrent_runs {CAP}.0" in metrics
    assert 'gdts_claims_total{outcome="capacity"}' in metrics

    for first in range(0, JOBS, 25):
        await asyncio.gather(
            *(api_post(cluster.api, "/job/delete", name=name) for name in names[first:first + 25])
        )  # fmt: skip
    runs = await all_runs(cluster, names)
    ran = [run for run in runs if run["status"] != "missed"]
    at_once = most_at_once(ran)
    assert at_once and max(at_once.values()) <= CAP, at_once
    assert sum(at_once.values()) >= 2 * CAP, at_once  # the cap was reached, not just respected
    ticks = Counter((run["jobName"], run["planTime"]) for run in ran)
    assert max(ticks.values()) == 1, [tick for tick, n in ticks.items() if n > 1][:5]
    missed = [run for run in runs if run["status"] == "missed"]
    assert any("every eligible worker at capacity" in str(run["err"]) for run in missed), missed[:3]


async def test_the_others_take_over_what_a_full_worker_cannot_run(cluster: Cluster) -> None:
    await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("small", maxConcurrentRuns=1, takeoverDelay=500),
        cluster.start_worker("big", maxConcurrentRuns=50, takeoverDelay=500),
    )
    names = [f"job-{i}" for i in range(12)]
    await save_many(cluster, names, "sleep 2")

    async def every_job_ran() -> bool:
        runs = await all_runs(cluster, names)
        return {run["jobName"] for run in runs if run["status"] == "succeeded"} == set(names)

    await wait_until(every_job_ran, 30, "a run of every job")
    runs = await all_runs(cluster, names)
    assert most_at_once(runs).get("small", 0) <= 1
    # About half the jobs are the small worker's to claim first: most ran on the big one.
    ran_on = Counter(run["worker"] for run in runs if run["status"] == "succeeded")
    assert ran_on["big"] > ran_on["small"], ran_on
    # Deleted, their runs end now, not in the workers' drain when the test stops them.
    await asyncio.gather(*(api_post(cluster.api, "/job/delete", name=name) for name in names))
