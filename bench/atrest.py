"""Jobs at rest: many yearly jobs stored, one fresh worker loading and then idling over them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench import promtext
from bench.analysis import distribution, read_records
from bench.api import ManagerClient, bounded
from bench.etcdkv import MAX_TXN_OPS, put_all
from bench.procfs import cpu_sample, mem_sample
from bench.stack import ETCD_PREFIX, Stack
from bench.throughput import record_command
from gdts.job import Job
from gdts.keys import KeyLayout

_T = TypeVar("_T")
_READY_POLL_S = 0.2  # /health/ready hashes the whole job set: do not poll it hard
_LOAD_TIMEOUT_S = 1800.0
# Beyond this a whole listing is hundreds of MB: only pages are timed.
_WHOLE_LIST_UP_TO = 200_000
_PAGE_TRIES = 20
_SETTLE_S = 60.0


@dataclass(frozen=True)
class AtRestParams:
    jobs: int
    concurrency: int
    idle_s: float
    name_prefix: str
    seed: int = 1
    # Written straight into etcd, as a manager writes them, not through POST /job/save: the API
    # saves about 400 a second (each save is checked, authorized and audited), so a million
    # would take 40 minutes before the measurement starts.
    direct: bool = False
    distinct_schedules: bool = False


async def _timed_get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, int, Any]:
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=300)
    async with session.get(url, timeout=timeout, headers=headers) as resp:
        body = await resp.read()
        resp.raise_for_status()
    return time.perf_counter() - started, len(body), json.loads(body)


def _yearly(rng: random.Random, distinct: bool, far_day: tuple[int, int]) -> str:
    """At rest: a million daily jobs would start 12 runs a second, a million yearly ones about
    one run every 30 seconds. ``distinct``: a random minute, hour, day and month (about 480,000
    different expressions in a million); otherwise a random minute and hour on one day half a
    year away (1,440 expressions, as many as a set of daily jobs has)."""
    minute, hour = rng.randrange(60), rng.randrange(24)
    day, month = (rng.randrange(1, 29), rng.randrange(1, 13)) if distinct else far_day
    return f"{minute} {hour} {day} {month} *"


async def _time_pages(
    api: ManagerClient, session: aiohttp.ClientSession, params: AtRestParams
) -> dict[str, Any]:
    """A page of 100 jobs, the first one and one from the middle of the names."""
    middle = f"{params.name_prefix}-{params.jobs // 2:07d}"
    pages: dict[str, Any] = {}
    for label, query in (("first", "limit=100"), ("middle", f"limit=100&after={middle}")):
        seconds = []
        for _ in range(_PAGE_TRIES):
            took, _, body = await _timed_get(
                session, f"{api.base_url}/job/list?{query}", api.headers
            )
            assert len(body.get("data") or []) == min(100, params.jobs), body
            seconds.append(took)
        pages[label] = distribution(seconds)
    return pages


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
    records_file = workdir / "records.txt"
    records_file.touch()
    command = record_command(records_file)
    half_a_year_on = datetime.now(UTC) + timedelta(days=182)
    far_day = (min(half_a_year_on.day, 28), half_a_year_on.month)
    jobs = [
        (f"{params.name_prefix}-{i:07d}", _yearly(rng, params.distinct_schedules, far_day))
        for i in range(params.jobs)
    ]
    distinct = len({cron for _, cron in jobs})
    saved: list[str] = []
    if params.direct:
        if stack is None:
            raise ValueError("--store-directly needs the benchmark's own etcd (no --target)")
        print(f"-- writing {params.jobs} yearly jobs into etcd directly", flush=True)
        headers = await stack.etcd_gateway_headers(session)
        keys = KeyLayout(ETCD_PREFIX)
        stored = [
            (keys.job(name), Job.create(name, command, cron).to_record()) for name, cron in jobs
        ]
        chunks = [stored[i : i + MAX_TXN_OPS] for i in range(0, len(stored), MAX_TXN_OPS)]

        async def put_chunk(chunk: list[tuple[bytes, bytes]]) -> None:
            await put_all(session, stack.etcd_url, chunk, headers)

        return await _measure(
            api, session, params, chunks, put_chunk, stack, records_file, distinct
        )
    print(f"-- saving {params.jobs} yearly jobs, {params.concurrency} in flight", flush=True)

    async def save(job: tuple[str, str]) -> None:
        await api.save(job[0], command, job[1])
        saved.append(job[0])

    try:
        return await _measure(api, session, params, jobs, save, stack, records_file, distinct)
    finally:
        if stack is None:  # someone else's cluster: take our jobs away again
            print(f"-- deleting {len(saved)} jobs", flush=True)
            await bounded(list(saved), api.delete, params.concurrency)


async def _measure(
    api: ManagerClient,
    session: aiohttp.ClientSession,
    params: AtRestParams,
    jobs: list[_T],
    save: Callable[[_T], Awaitable[None]],
    stack: Stack | None,
    records: Path,
    distinct_expressions: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    latencies = await bounded(jobs, save, params.concurrency)
    save_s = time.perf_counter() - started
    print(f"   saved in {save_s:.1f}s ({params.jobs / save_s:.0f}/s)", flush=True)
    result: dict[str, Any] = {
        "save": {
            "jobs": params.jobs,
            "through": "etcd" if params.direct else "api",
            "distinct_expressions": distinct_expressions,
            "seconds": save_s,
            "per_s": params.jobs / save_s,
            "latency_s": distribution(latencies),
        }
    }

    if params.jobs <= _WHOLE_LIST_UP_TO:
        listings = []
        for _ in range(3):
            seconds, size, body = await _timed_get(session, api.base_url + "/job/list", api.headers)
            listings.append(
                {"seconds": seconds, "bytes": size, "jobs": len(body.get("data") or [])}
            )
        result["job_list"] = listings
    result["job_list_pages"] = await _time_pages(api, session, params)

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
    runs_idle = len(read_records(records)[0]) - runs_before
    # Again a minute later: just after loading, the worker still looks for ticks missed while
    # no worker ran (the last run of every job, 5,000 jobs a MongoDB query).
    print(f"-- a minute later, idle for {params.idle_s:.0f}s again", flush=True)
    await asyncio.sleep(_SETTLE_S)
    cpu2, later_started = cpu_sample(worker.pid), time.perf_counter()
    await asyncio.sleep(params.idle_s)
    cpu3, later_s = cpu_sample(worker.pid), time.perf_counter() - later_started
    assert cpu2 is not None and cpu3 is not None
    idle_mem = mem_sample(worker.pid)
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
        "idle_cpu_s_per_s_a_minute_later": (cpu3.own - cpu2.own) / later_s,
        "idle_job_cpu_s": cpu1.children - cpu0.children,
        # Yearly crons spread over the year: a few fall due while we watch, as in real life.
        "runs_during_idle": runs_idle,
        "etcd_messages_per_s_idle": sum(etcd_by_method.values()) / idle_s,
        "etcd_messages_by_method_idle": etcd_by_method,
    }
    return result
