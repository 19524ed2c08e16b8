"""Jobs at rest: many daily jobs stored, one fresh worker loading and then idling over them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import promtext
from bench.analysis import distribution, read_records
from bench.api import ManagerClient, bounded
from bench.procfs import cpu_sample, mem_sample
from bench.stack import Stack
from bench.throughput import record_command

_READY_POLL_S = 0.2  # /health/ready hashes the whole job set: do not poll it hard
_LOAD_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class AtRestParams:
    jobs: int
    concurrency: int
    idle_s: float
    name_prefix: str
    seed: int = 1


async def _timed_get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, int, Any]:
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=300)
    async with session.get(url, timeout=timeout, headers=headers) as resp:
        body = await resp.read()
        resp.raise_for_status()
    return time.perf_counter() - started, len(body), json.loads(body)


async def run_at_rest(
    api: ManagerClient,
    session: aiohttp.ClientSession,
    params: AtRestParams,
    workdir: Path,
    stack: Stack | None,
) -> dict[str, Any]:
    """Without a stack (--target) only the API figures are measured: we cannot start a worker
    against someone else's etcd."""
    rng = random.Random(params.seed)
    records = workdir / "records.txt"
    records.touch()
    command = record_command(records)
    jobs = [
        (f"{params.name_prefix}-{i:06d}", f"{rng.randrange(60)} {rng.randrange(24)} * * *")
        for i in range(params.jobs)
    ]
    print(f"-- saving {params.jobs} daily jobs, {params.concurrency} in flight", flush=True)
    saved: list[str] = []

    async def save(job: tuple[str, str]) -> None:
        await api.save(job[0], command, job[1])
        saved.append(job[0])

    try:
        return await _measure(api, session, params, jobs, save, stack, records)
    finally:
        if stack is None:  # someone else's cluster: take our jobs away again
            print(f"-- deleting {len(saved)} jobs", flush=True)
            await bounded(list(saved), api.delete, params.concurrency)


async def _measure(
    api: ManagerClient,
    session: aiohttp.ClientSession,
    params: AtRestParams,
    jobs: list[tuple[str, str]],
    save: Callable[[tuple[str, str]], Awaitable[None]],
    stack: Stack | None,
    records: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    latencies = await bounded(jobs, save, params.concurrency)
    save_s = time.perf_counter() - started
    print(f"   saved in {save_s:.1f}s ({params.jobs / save_s:.0f}/s)", flush=True)
    result: dict[str, Any] = {
        "save": {
            "jobs": params.jobs,
            "seconds": save_s,
            "per_s": params.jobs / save_s,
            "latency_s": distribution(latencies),
        }
    }

    listings = []
    for _ in range(3):
        seconds, size, body = await _timed_get(session, api.base_url + "/job/list", api.headers)
        listings.append({"seconds": seconds, "bytes": size, "jobs": len(body.get("data") or [])})
    result["job_list"] = listings

    if stack is None:
        return result

    assert stack.manager is not None
    manager_mem = mem_sample(stack.manager.pid)
    result["manager_rss_mib"] = manager_mem.rss_mib if manager_mem else None

    print("-- starting one fresh worker", flush=True)
    worker = await stack.start_worker("rest1")
    assert worker.url is not None
    ready_url = worker.url + "/health/ready"
    first_answer: float | None = None
    loaded_at: float | None = None
    ready_at: float | None = None
    last_probe: dict[str, Any] = {}
    deadline = time.monotonic() + _LOAD_TIMEOUT_S
    while (loaded_at is None or ready_at is None) and time.monotonic() < deadline:
        if worker.returncode is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}; see its log")
        try:
            async with session.get(ready_url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                last_probe = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            await asyncio.sleep(_READY_POLL_S)
            continue
        now = time.monotonic() - worker.spawned_at
        first_answer = first_answer if first_answer is not None else now
        if loaded_at is None and last_probe.get("jobs") == params.jobs:
            loaded_at = now
        if ready_at is None and last_probe.get("ready"):
            ready_at = now
        await asyncio.sleep(_READY_POLL_S)
    if loaded_at is None:
        raise RuntimeError(f"worker never reported {params.jobs} jobs; last answer {last_probe}")
    loaded_mem = mem_sample(worker.pid)
    # What one readiness probe costs at this size (it fingerprints every job).
    probe_seconds: list[float] = []
    for _ in range(3):
        asked = time.perf_counter()
        async with session.get(ready_url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            await resp.read()
        probe_seconds.append(time.perf_counter() - asked)

    # Idle: nothing polls the worker now (its readiness probe alone costs CPU at this size).
    etcd0 = await promtext.scrape(session, stack.etcd_url + "/metrics")
    cpu0 = cpu_sample(worker.pid)
    runs_before = len(read_records(records)[0])
    print(f"-- worker loaded; idle for {params.idle_s:.0f}s", flush=True)
    idle_started = time.perf_counter()
    await asyncio.sleep(params.idle_s)
    cpu1 = cpu_sample(worker.pid)
    idle_s = time.perf_counter() - idle_started
    etcd1 = await promtext.scrape(session, stack.etcd_url + "/metrics")
    idle_mem = mem_sample(worker.pid)
    runs_idle = len(read_records(records)[0]) - runs_before
    assert cpu0 is not None and cpu1 is not None

    etcd_by_method = promtext.by_label(
        promtext.delta(etcd0, etcd1, "grpc_server_msg_received_total"), "grpc_method"
    )
    result["worker"] = {
        "first_http_answer_s": first_answer,
        "scheduling_s": loaded_at,  # spawn -> /health/ready says jobs == N
        "ready_s": ready_at,
        "ready_probe_latency_s": distribution(probe_seconds),
        "rss_loaded_mib": loaded_mem.rss_mib if loaded_mem else None,
        "rss_after_idle_mib": idle_mem.rss_mib if idle_mem else None,
        "peak_rss_mib": idle_mem.hwm_mib if idle_mem else None,
        "idle_seconds": idle_s,
        "idle_cpu_s_per_s": (cpu1.own - cpu0.own) / idle_s,
        "idle_job_cpu_s": cpu1.children - cpu0.children,
        # Daily crons spread over the day: some fall due while we watch, as in real life.
        "runs_during_idle": runs_idle,
        "etcd_messages_per_s_idle": sum(etcd_by_method.values()) / idle_s,
        "etcd_messages_by_method_idle": etcd_by_method,
    }
    return result
