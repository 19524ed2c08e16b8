"""What operators watch: worker probes and metrics, JSON logs with job, tick and worker."""

from __future__ import annotations

import json
import re

import pytest

from gdts.job import Job, jobs_digest
from gdts.localstack import free_port
from tests.support import Cluster, api_get, probe, record_command, save_job, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


def sample(metrics: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$"
    match = re.search(pattern, metrics, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


async def test_worker_probes_metrics_and_json_logs(cluster: Cluster) -> None:
    port = free_port()
    _, worker = await cluster.start_together(
        cluster.start_manager(),
        cluster.start_worker("w1", httpListen=f"127.0.0.1:{port}", logFormat="json"),
    )
    ticks = cluster.stack.tmp / "ticks.txt"
    await save_job(cluster.api, "beat", record_command(ticks), "* * * * * *")
    await save_job(cluster.api, "bad", "exit 2", "* * * * * *")

    async def ran_both() -> str | None:
        _, text = await probe(port, "/metrics")
        ok = 'gdts_runs_total{status="succeeded"}' in text
        ok = ok and 'gdts_runs_total{status="failed"}' in text
        # A run is counted when it ends, its fire lag once its claim is released just after.
        return text if ok and sample(text, "gdts_fire_lag_seconds_count") >= 2 else None

    metrics = await wait_until(ran_both, 20, "runs in the metrics")
    assert sample(metrics, "gdts_runs_total", 'status="succeeded"') >= 1
    assert sample(metrics, "gdts_runs_total", 'status="failed"') >= 1
    assert sample(metrics, "gdts_claims_total", 'outcome="won"') >= 2
    assert sample(metrics, "gdts_fire_lag_seconds_count") >= 2
    assert sample(metrics, "gdts_jobs") == 2
    assert sample(metrics, "gdts_lease_alive") == 1

    status, alive = await probe(port, "/health/alive")
    assert (status, alive) == (200, {"alive": True})
    status, ready = await probe(port, "/health/ready")
    assert status == 200 and ready["ready"] and ready["etcd"] and ready["mongodb"]
    assert ready["worker"] == "w1" and ready["jobs"] == 2
    status, held = await probe(port, "/health/jobs")
    assert status == 200 and held["worker"] == "w1" and held["jobs"] == 2
    listed = await api_get(cluster.api, "/job/list")
    assert held["jobsDigest"] == jobs_digest(Job.from_api(job) for job in listed)

    lines = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    assert all(line["worker"] == "w1" for line in lines)
    started = [line for line in lines if line["msg"].startswith("worker w1 started")]
    assert started and started[0]["level"] == "INFO"

    await worker.terminate()
    events = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    assert any(line["msg"].startswith("results flushed") for line in events)


async def test_only_the_owner_claims_so_workers_do_not_race_for_ticks(cluster: Cluster) -> None:
    ports = [free_port() for _ in range(3)]
    await cluster.start_together(
        cluster.start_manager(),
        *(cluster.start_worker(f"w{i}", httpListen=f"127.0.0.1:{port}")
          for i, port in enumerate(ports, 1)),
    )  # fmt: skip
    # Ten jobs: 40 claims in four ticks (the ratios below are per tick, not per job).
    for j in range(10):
        ticks = cluster.stack.tmp / f"ticks-{j}.txt"
        await save_job(cluster.api, f"job-{j}", record_command(ticks), "* * * * * *")

    async def totals() -> dict[str, float]:
        outcomes: dict[str, float] = {}
        for port in ports:
            _, text = await probe(port, "/metrics")
            for match in re.finditer(r'^gdts_claims_total\{outcome="(\w+)"\} (\S+)$', text, re.M):
                outcomes[match[1]] = outcomes.get(match[1], 0) + float(match[2])
        return outcomes

    async def won_40() -> dict[str, float] | None:
        outcomes = await totals()
        return outcomes if outcomes.get("won", 0) >= 40 else None

    won = (await wait_until(won_40, 40, "40 won claims"))["won"]

    async def deferrals_caught_up() -> dict[str, float] | None:
        # A job's backup looks takeoverDelay after each tick.
        outcomes = await totals()
        return outcomes if outcomes.get("deferred", 0) >= won else None

    outcomes = await wait_until(deferrals_caught_up, 20, "the backups to look at those ticks")
    # Every tick is claimed by one worker; the job's backup sees the claim and asks etcd
    # nothing; the third worker does not schedule the job at all: one deferral per tick, not
    # one per other worker.
    assert outcomes.get("taken", 0) <= 0.05 * outcomes["won"], outcomes
    assert outcomes["deferred"] <= 1.2 * outcomes["won"], outcomes
    owners = {
        line.split()[1]
        for j in range(10)
        for line in (cluster.stack.tmp / f"ticks-{j}.txt").read_text().splitlines()
    }
    assert len(owners) >= 2  # jobs are spread over the workers, not all on one
