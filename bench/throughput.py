"""The throughput phase: many jobs on one cron, and what actually ran, from the records file."""

from __future__ import annotations

import asyncio
import math
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.analysis import Window, analyse, distribution, read_records, slice_seconds
from bench.api import ManagerClient, bounded
from bench.etcdkv import keys_under
from bench.measure import (
    Processes,
    cpu_by_slice,
    cpu_figures,
    etcd_figures,
    gdts_counter_figures,
    memory_figures,
    proc_snapshot,
    take_snapshot,
)


@dataclass(frozen=True)
class ThroughputParams:
    jobs: int
    cron: str
    duration_s: float
    warmup_s: float
    concurrency: int
    settle_s: float
    name_prefix: str
    quiesce_timeout_s: float = 180.0


def record_command(records: Path) -> str:
    # bash builtins only (echo, a redirection): no extra fork, so the job costs one bash.
    # The worker id is an extra field, for the per-worker breakdown.
    line = '"$GDTS_JOB_NAME $GDTS_PLAN_TIME $EPOCHREALTIME $GDTS_WORKER_ID"'
    return f"echo {line} >> {shlex.quote(str(records))}"


async def sleep_until(wall_s: float) -> None:
    await asyncio.sleep(max(0.0, wall_s - time.time()))


async def _wait_quiet(path: Path, still_s: float, timeout_s: float) -> float:
    """Seconds from now until ``path`` last grew, once it has not grown for still_s (or
    timeout_s passed)."""
    started = time.monotonic()
    last_size, last_change = -1, started
    while time.monotonic() - last_change < still_s and time.monotonic() - started < timeout_s:
        size = _size(path)
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        await asyncio.sleep(0.2)
    return last_change - started


async def _until_no_jobs(
    session: aiohttp.ClientSession, ready_url: str, timeout_s: float
) -> float | None:
    """Seconds until the worker's /health/ready counts no job (None: not within timeout_s)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            async with session.get(ready_url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.json(content_type=None)
            if body.get("jobs") == 0:
                return time.monotonic() - started
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        await asyncio.sleep(0.5)
    return None


def _leftover_markers(
    markers: Sequence[dict[str, Any]], etcd_prefix: str, ran: set[tuple[str, int]]
) -> dict[str, Any]:
    """Running markers still in etcd when nothing runs, and how many name a tick that never ran
    (a claim transaction that committed in etcd while its worker had given up on it)."""
    never_ran = 0
    by_worker: dict[str, int] = {}
    for marker in markers:
        value = marker["value"] if isinstance(marker["value"], dict) else {}
        job = marker["key"].removeprefix(etcd_prefix + "lock/running/")
        worker = str(value.get("worker", "?"))
        by_worker[worker] = by_worker.get(worker, 0) + 1
        if (job, value.get("planTime")) not in ran:
            never_ran += 1
    return {
        "count": len(markers),
        "by_worker": by_worker,
        "tick_never_ran": never_ran,
        "sample": list(markers[:3]),
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def run_throughput(
    api: ManagerClient,
    session: aiohttp.ClientSession,
    params: ThroughputParams,
    workdir: Path,
    procs: Processes,
    etcd_metrics_url: str | None,
    worker_metrics_urls: Sequence[str],
    worker_ready_urls: Sequence[str] = (),
    etcd_url: str | None = None,
    etcd_headers: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
    etcd_prefix: str = "/gdts/",
    check_alive: Callable[[], None] | None = None,
) -> dict[str, Any]:
    records = workdir / "records.txt"
    records.touch()
    records.chmod(0o666)  # whatever uid the jobs run as appends to it
    command = record_command(records)
    names = [f"{params.name_prefix}-{i:05d}" for i in range(params.jobs)]

    print(
        f"-- saving {params.jobs} jobs ({params.cron!r}), {params.concurrency} in flight",
        flush=True,
    )
    started = time.perf_counter()
    saved: list[str] = []
    deleted_at: dict[str, float] = {}

    async def save(name: str) -> None:
        await api.save(name, command, params.cron)
        saved.append(name)

    async def delete(name: str) -> None:
        await api.delete(name)
        deleted_at[name] = time.time()

    try:
        latencies = await bounded(names, save, params.concurrency)
        save_s = time.perf_counter() - started
        print(f"   saved in {save_s:.2f}s; warm-up {params.warmup_s:.0f}s", flush=True)

        # Whole seconds: with a per-second cron the window then holds exactly duration ticks.
        t0 = math.ceil(time.time() + params.warmup_s)
        t1 = t0 + params.duration_s
        await sleep_until(t0)
        before = await take_snapshot(session, t0, procs, etcd_metrics_url, worker_metrics_urls)
        print(f"-- measuring for {params.duration_s:.0f}s", flush=True)
        # /proc at each boundary of the lag table's slices, for CPU by slice.
        slice_s = slice_seconds(params.duration_s)
        boundaries = [t0 + i * slice_s for i in range(1, math.ceil(params.duration_s / slice_s))]
        slices = [before]
        while time.time() < t1:
            await sleep_until(
                min(t1, time.time() + 10, *(b for b in boundaries if b > time.time()))
            )
            while boundaries and time.time() >= boundaries[0]:
                slices.append(proc_snapshot(boundaries.pop(0), procs))
            if check_alive is not None:
                check_alive()
        after = await take_snapshot(session, t1, procs, etcd_metrics_url, worker_metrics_urls)
        slices.append(after)
    finally:
        # Also on Ctrl-C or an error: a --target cluster must not keep our jobs.
        print(f"-- deleting {len(saved)} jobs", flush=True)
        del_started = time.perf_counter()
        await bounded(list(saved), delete, params.concurrency)
        delete_s = time.perf_counter() - del_started
    # Deleted jobs should stop at once; wait until the records file has been still for
    # settle_s, so the next phase starts on a quiet system, and report how long that took.
    deletes_done = time.time()
    watchers = [
        asyncio.ensure_future(_until_no_jobs(session, url, params.quiesce_timeout_s))
        for url in worker_ready_urls
    ]
    try:
        quiet_after = await _wait_quiet(records, params.settle_s, params.quiesce_timeout_s)
        # GDTS's own view, as a hint: when did each worker's table drop the deleted jobs?
        jobs_gone = await asyncio.gather(*watchers)
    finally:
        for watcher in watchers:
            watcher.cancel()

    # Nothing runs now: a running marker left in etcd blocks its job (a new job of the same
    # name) on every worker until the lease it is on ends.
    markers: list[dict[str, Any]] = []
    if etcd_url:
        headers = None if etcd_headers is None else await etcd_headers()
        markers = await keys_under(
            session, etcd_url, etcd_prefix + "lock/running/", headers=headers
        )

    all_records, bad_lines = read_records(records)
    mine = [r for r in all_records if r.job.startswith(params.name_prefix + "-")]
    leftovers = _leftover_markers(markers, etcd_prefix, {(r.job, r.plan_ms) for r in mine})
    result = analyse(mine, names, params.cron, Window(t0, t1))
    if procs.all():
        for segment, cpu in zip(
            result["lag_by_segment"], cpu_by_slice(slices, procs), strict=False
        ):
            segment["cpu"] = cpu
    # A tick planned after its job was deleted should never run.
    late = [r for r in mine if r.job in deleted_at and r.plan_ms / 1000 > deleted_at[r.job]]
    after_delete = {
        "runs_of_ticks_planned_after_delete": len(late),
        "jobs": len({r.job for r in late}),
        "max_s_after_delete": max((r.plan_ms / 1000 - deleted_at[r.job] for r in late), default=0),
        "last_record_s_after_deletes": max((r.start_s for r in mine), default=deletes_done)
        - deletes_done,
        "quiet_wait_s": quiet_after,
        "worker_jobs_zero_after_s": jobs_gone,
        "running_markers_left_in_etcd": leftovers,
    }
    runs = result["runs_started_in_window"]
    return {
        "save": {
            "jobs": len(names),
            "seconds": save_s,
            "per_s": len(names) / save_s,
            "latency_s": distribution(latencies),
        },
        "delete_seconds": delete_s,
        "after_delete": after_delete,
        "window": {"start": t0, "end": t1},
        "records": {**result, "bad_lines": bad_lines},
        "cpu": cpu_figures(before, after, procs, runs) if procs.all() else {},
        "memory": memory_figures(before, after, procs) if procs.all() else {},
        "etcd": etcd_figures(before, after, runs),
        "gdts_counters": gdts_counter_figures(before, after),
    }
