"""Snapshots taken at the edges of a measurement window, and the figures derived from two of
them: CPU per process and per 1,000 runs, memory, and etcd's request counters."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from bench import promtext
from bench.procfs import CpuSample, MemSample, SystemCpu, cpu_sample, mem_sample, system_cpu

_ETCD_COUNTERS = {
    "started": "grpc_server_started_total",
    "handled": "grpc_server_handled_total",
    "msg_received": "grpc_server_msg_received_total",
}
# GDTS's own counters, scraped from the workers: for diagnosis only, never for the headline
# figures (those come from the records file).
_GDTS_COUNTERS = (
    "gdts_claims_total",
    "gdts_runs_total",
    "gdts_missed_ticks_total",
    "gdts_lost_runs_total",
    "gdts_etcd_errors_total",
    "gdts_mongodb_write_errors",
)


_SELF = "bench (this process)"


@dataclass(frozen=True)
class Processes:
    """The processes we can read in /proc, by role. Workers' reaped children are the jobs."""

    manager: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    stores: dict[str, int] = field(default_factory=dict)  # "etcd", "mongod"

    def all(self) -> dict[str, int]:
        return {**self.manager, **self.workers, **self.stores}


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    cpu: Mapping[str, CpuSample | None]
    mem: Mapping[str, MemSample | None]
    system: SystemCpu
    etcd: promtext.Samples
    gdts: promtext.Samples  # summed over every worker


def proc_snapshot(wall_s: float, procs: Processes) -> Snapshot:
    """/proc only (no scrapes): cheap enough to take every slice of the window."""
    pids = procs.all()
    cpu = {name: cpu_sample(pid) for name, pid in pids.items()}
    cpu[_SELF] = cpu_sample(os.getpid())
    mem = {name: mem_sample(pid) for name, pid in pids.items()}
    return Snapshot(wall_s, cpu, mem, system_cpu(), {}, {})


async def take_snapshot(
    session: aiohttp.ClientSession,
    wall_s: float,
    procs: Processes,
    etcd_metrics_url: str | None,
    worker_metrics_urls: Sequence[str],
) -> Snapshot:
    # /proc first and in one go: it is instantaneous, the scrapes below take milliseconds.
    procfs = proc_snapshot(wall_s, procs)
    etcd: promtext.Samples = {}
    if etcd_metrics_url:
        etcd = await promtext.scrape(session, etcd_metrics_url)
    gdts: promtext.Samples = {}
    scraped = await asyncio.gather(
        *(promtext.scrape(session, url) for url in worker_metrics_urls), return_exceptions=True
    )
    for samples in scraped:
        if isinstance(samples, BaseException):
            continue  # a worker that does not answer simply adds nothing
        for key, value in samples.items():
            if key[0] in _GDTS_COUNTERS:
                gdts[key] = gdts.get(key, 0.0) + value
    return replace(procfs, etcd=etcd, gdts=gdts)


def _per_1000(cpu_s: float, runs: int) -> float:
    return cpu_s / runs * 1000 if runs else math.nan


def cpu_figures(before: Snapshot, after: Snapshot, procs: Processes, runs: int) -> dict[str, Any]:
    """CPU seconds over the window, per process and per group, also per 1,000 runs."""
    seconds = after.wall_s - before.wall_s
    per_process: dict[str, dict[str, float]] = {}
    for name in procs.all():
        a, b = before.cpu.get(name), after.cpu.get(name)
        if a is None or b is None:
            continue
        used = b.own - a.own
        per_process[name] = {
            "cpu_s": used,
            "cores": used / seconds,
            "per_1000_runs": _per_1000(used, runs),
        }
        if name in procs.workers:
            per_process[name]["children_cpu_s"] = b.children - a.children

    def group(names: Sequence[str], key: str = "cpu_s") -> float:
        return sum(per_process[n].get(key, 0.0) for n in names if n in per_process)

    groups = {
        "gdts_python": group([*procs.manager, *procs.workers]),
        "job_processes": group(list(procs.workers), "children_cpu_s"),
        "etcd": group([n for n in procs.stores if n == "etcd"]),
        "mongod": group([n for n in procs.stores if n == "mongod"]),
    }
    busy = after.system.busy - before.system.busy
    total = after.system.total - before.system.total
    machine_cores = busy / total * (os.cpu_count() or 1) if total else math.nan
    ours = sum(groups.values())
    a, b = before.cpu.get(_SELF), after.cpu.get(_SELF)
    bench_s = b.own - a.own if a is not None and b is not None else math.nan
    return {
        "window_s": seconds,
        "runs_for_normalisation": runs,
        "groups": {
            name: {"cpu_s": v, "cores": v / seconds, "per_1000_runs": _per_1000(v, runs)}
            for name, v in groups.items()
        },
        "per_process": per_process,
        # Everything on the machine, this benchmark included: is the box itself saturated?
        "machine_busy_fraction": busy / total if total else math.nan,
        "machine_busy_cores": machine_cores,
        "bench_cores": bench_s / seconds,
        # Whatever else ran meanwhile (other users' work): the noise under every figure above.
        "other_cores": machine_cores - (ours + bench_s) / seconds,
        "loadavg_end": os.getloadavg(),
    }


def cpu_by_slice(snapshots: Sequence[Snapshot], procs: Processes) -> list[dict[str, float]]:
    """Cores used between consecutive snapshots: the machine, and each group. Shows which
    process a slow slice of the window was busy in."""
    out = []
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        figures = cpu_figures(before, after, procs, 0)
        out.append(
            {
                "machine_busy_fraction": figures["machine_busy_fraction"],
                **{f"{name}_cores": g["cores"] for name, g in figures["groups"].items()},
            }
        )
    return out


def memory_figures(before: Snapshot, after: Snapshot, procs: Processes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in procs.all():
        a, b = before.mem.get(name), after.mem.get(name)
        if b is None:
            continue
        out[name] = {
            "rss_start_mib": a.rss_mib if a is not None else None,
            "rss_end_mib": b.rss_mib,
            "peak_rss_mib": b.hwm_mib,
        }
    return out


def etcd_figures(before: Snapshot, after: Snapshot, runs: int) -> dict[str, Any]:
    if not after.etcd:
        return {}
    by_method: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for key, metric in _ETCD_COUNTERS.items():
        values = promtext.delta(before.etcd, after.etcd, metric)
        totals[key] = promtext.total(values.values())
        for method, value in promtext.by_label(values, "grpc_method").items():
            by_method.setdefault(method, {})[key] = value
    seconds = after.wall_s - before.wall_s
    # Watch events etcd sent (one per key change per watcher that covers it): the fan-out.
    events = promtext.total(
        promtext.delta(before.etcd, after.etcd, "etcd_debugging_mvcc_events_total").values()
    )
    watchers = promtext.total(
        value
        for (name, _), value in after.etcd.items()
        if name == "etcd_debugging_mvcc_watcher_total"
    )
    return {
        "watch_events_sent": events,
        "watch_events_per_run": events / runs if runs else math.nan,
        "watch_events_per_s": events / seconds,
        "watchers": watchers,
        # Unary calls plus streams opened; stream messages (each keep-alive) are in
        # msg_received, which also counts every unary request once.
        "requests": totals["started"],
        "requests_per_run": totals["started"] / runs if runs else math.nan,
        "requests_per_s": totals["started"] / seconds,
        "messages_received": totals["msg_received"],
        "messages_per_run": totals["msg_received"] / runs if runs else math.nan,
        "by_method": dict(sorted(by_method.items(), key=lambda kv: -kv[1].get("msg_received", 0))),
    }


def gdts_counter_figures(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in _GDTS_COUNTERS:
        values = promtext.delta(before.gdts, after.gdts, metric)
        if not values:
            continue
        labelled = {
            ",".join(f"{k}={v}" for k, v in labels) or "total": value
            for labels, value in values.items()
            if value
        }
        if labelled:
            out[metric.removeprefix("gdts_")] = labelled
    return out
