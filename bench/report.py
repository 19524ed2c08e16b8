"""The printed report: human tables, then one ``BENCH_JSON {...}`` line with every figure."""

from __future__ import annotations

import asyncio
import json
import math
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from bench.procfs import machine_facts
from bench.stack import REPO_ROOT


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        # First column left-aligned (names), the rest right-aligned (numbers).
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _dist_line(d: Mapping[str, Any], unit_scale: float = 1.0, digits: int = 3) -> str:
    if not d or not d.get("n"):
        return "no data"
    return (
        "  ".join(
            f"{k} {fmt(d[k] * unit_scale, digits)}" for k in ("p50", "p95", "p99", "max") if k in d
        )
        + f"   (n={d['n']:,})"
    )


async def environment(session: aiohttp.ClientSession, etcd_url: str | None) -> dict[str, Any]:
    facts: dict[str, Any] = {**machine_facts(), "python": platform.python_version()}
    facts["etcd_version"] = None
    if etcd_url:
        try:
            async with session.get(etcd_url + "/version") as resp:
                facts["etcd_version"] = (await resp.json(content_type=None)).get("etcdserver")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
    etcd_binary, git_head = await asyncio.to_thread(_command_facts)
    facts["etcd_version"] = facts["etcd_version"] or etcd_binary
    facts["git_head"] = git_head
    return facts


def _command_facts() -> tuple[str | None, str | None]:
    """etcd's version from its binary (when etcd is not ours to ask) and the git HEAD."""
    etcd = None
    if shutil.which("etcd"):
        out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False)
        etcd = out.stdout.split("\n")[0].removeprefix("etcd Version: ").strip() or None
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return etcd, git.stdout.strip() or None


def print_header(title: str, env: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    print()
    print(f"=== GDTS benchmark: {title} ===")
    print(
        f"git {env.get('git_head')} | {env.get('nproc')} CPUs {env.get('cpu_model')} | "
        f"{env.get('mem_total_gib')} GiB | Python {env.get('python')} | "
        f"etcd {env.get('etcd_version')}"
    )
    print("parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))


def print_throughput(result: Mapping[str, Any]) -> None:
    rec = result["records"]
    save = result["save"]
    lag = rec["lag_s"]
    print()
    rows = [
        ("Saving jobs", f"{save['jobs']:,} in {save['seconds']:.2f} s = {save['per_s']:,.0f}/s "
                        f"(latency ms: {_dist_line(save['latency_s'], 1000, 1)})"),
        ("Runs per minute", f"{rec['runs_per_min']:,.0f} achieved / {rec['expected_per_min']:,.0f} "
                            f"expected ({rec['achieved_ratio'] * 100:.2f} %); "
                            f"{rec['runs_in_window']:,} runs planned in the window"),
        ("Duplicates", f"{rec['duplicate_pairs']} (job, tick) pairs ran more than once "
                       f"({rec['duplicate_pairs_in_window']} in the window)"),
        ("Misses", f"{rec['misses']:,} of {rec['miss_ticks_checked']:,} ticks checked "
                   f"({rec['jobs_with_misses']} jobs affected)"),
        ("Fire lag (ms)", _dist_line(lag, 1000, 1)),
        ("Odd records", f"{rec['unexpected_runs_in_window']} off-schedule, "
                        f"{rec['bad_lines']} unparsable lines"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, text in rows:
        print(f"{name.ljust(width)}  {text}")
    after = result.get("after_delete")
    if after:
        print(
            f"After the deletes   runs of ticks planned after their job's delete: "
            f"{after['runs_of_ticks_planned_after_delete']:,} ({after['jobs']} jobs, up to "
            f"{after['max_s_after_delete']:.1f} s after it); last run started "
            f"{round(after['last_record_s_after_deletes'], 1) + 0.0:.1f} s after the deletes"
        )
        zero = after.get("worker_jobs_zero_after_s") or []
        if zero:
            print(
                "                    workers' /health/ready showed 0 jobs after (s): "
                + ", ".join(fmt(z, 1) if z is not None else "never" for z in zero)
            )
        left = after.get("running_markers_left_in_etcd") or {}
        if left:
            print(
                f"                    running markers left in etcd once all was quiet: "
                f"{left['count']}"
                + (
                    f" (by worker {left['by_worker']}; {left['tick_never_ran']} for a tick "
                    f"that never ran), e.g. {left['sample'][:1]}"
                    if left["count"]
                    else ""
                )
            )
    if rec["duplicate_examples"]:
        print(f"  duplicate examples: {rec['duplicate_examples']}")
    if rec["miss_examples"]:
        print(f"  miss examples: {rec['miss_examples']}")

    print(
        "\nFire lag across the window (ms), by planned tick; CPU in each slice (cores: the"
        " machine's busy share, then GDTS's Python processes, the jobs, etcd, mongod):"
    )
    print(
        table(
            ["window s", "runs", "p50", "p99", "max", "misses", *_SLICE_CPU_HEADERS],
            [
                (
                    f"{s['from_s']:g}-{s['to_s']:g}",
                    fmt(s["runs"]),
                    fmt(_ms(s["lag_p50"]), 1),
                    fmt(_ms(s["lag_p99"]), 1),
                    fmt(_ms(s["lag_max"]), 1),
                    fmt(s["misses"]),
                    *_slice_cpu(s.get("cpu")),
                )
                for s in rec["lag_by_segment"]
            ],  # fmt: skip
        )
    )
    if rec.get("by_worker"):
        print("\nRuns per worker (from the records' GDTS_WORKER_ID):")
        print(
            table(
                ["worker", "runs", "lag p50 ms", "lag p99 ms"],
                [
                    (w, fmt(v["runs"]), fmt(_ms(v["lag_p50"]), 1), fmt(_ms(v["lag_p99"]), 1))
                    for w, v in rec["by_worker"].items()
                ],
            )
        )
    _print_cpu(result.get("cpu") or {}, result.get("memory") or {})
    _print_etcd(result.get("etcd") or {})
    counters = result.get("gdts_counters") or {}
    if counters:
        print("\nGDTS's own counters over the window, summed over workers (diagnosis only):")
        for metric, values in counters.items():
            print(f"  {metric}: " + ", ".join(f"{k} {fmt(v, 0)}" for k, v in values.items()))


def _ms(seconds: Any) -> Any:
    return seconds * 1000 if isinstance(seconds, float | int) else seconds


_SLICE_CPU_HEADERS = ("busy", "python", "jobs", "etcd", "mongod")


def _slice_cpu(cpu: dict[str, float] | None) -> list[str]:
    if not cpu:
        return ["-"] * len(_SLICE_CPU_HEADERS)
    busy = f"{cpu['machine_busy_fraction'] * 100:.0f} %"
    groups = ("gdts_python", "job_processes", "etcd", "mongod")
    return [busy, *(fmt(cpu[f"{g}_cores"], 2) for g in groups)]


def _print_cpu(cpu: Mapping[str, Any], memory: Mapping[str, Any]) -> None:
    if not cpu:
        print("\n(process metrics skipped: --target runs cannot see the processes)")
        return
    print(
        f"\nCPU over the {cpu['window_s']:.0f} s window: machine busy "
        f"{cpu['machine_busy_fraction'] * 100:.1f} % = {cpu['machine_busy_cores']:.2f} cores, of "
        f"which {cpu['bench_cores']:.2f} this benchmark and {cpu['other_cores']:.2f} other "
        f"processes (not GDTS, etcd, mongod, jobs); load average "
        f"{' '.join(f'{x:.2f}' for x in cpu['loadavg_end'])}.\n"
        f"Per 1,000 runs = per 1,000 runs started in the window "
        f"({cpu['runs_for_normalisation']:,}); memory in MiB:"
    )
    rows = []
    for name, p in cpu["per_process"].items():
        mem = memory.get(name, {})
        rows.append((name, fmt(p["cpu_s"], 2), fmt(p["cores"], 3), fmt(p["per_1000_runs"], 3),
                     fmt(mem.get("rss_start_mib"), 1), fmt(mem.get("rss_end_mib"), 1),
                     fmt(mem.get("peak_rss_mib"), 1)))  # fmt: skip
    jobs = cpu["groups"]["job_processes"]
    rows.append(("job processes", fmt(jobs["cpu_s"], 2), fmt(jobs["cores"], 3),
                 fmt(jobs["per_1000_runs"], 3), "", "", ""))  # fmt: skip
    print(
        table(
            ["process", "CPU s", "cores", "CPU s/1k runs", "RSS start", "RSS end", "peak RSS"], rows
        )
    )
    print("\n  by group:")
    print(
        table(
            ["group", "CPU s", "cores", "CPU s/1k runs"],
            [
                (name, fmt(g["cpu_s"], 2), fmt(g["cores"], 3), fmt(g["per_1000_runs"], 3))
                for name, g in cpu["groups"].items()
            ],
            indent="  ",
        )
    )


def _print_etcd(etcd: Mapping[str, Any]) -> None:
    if not etcd:
        print("\n(etcd metrics skipped: no etcd /metrics URL)")
        return
    print(
        f"\netcd: {etcd['requests_per_run']:.2f} requests per run (unary calls + streams opened; "
        f"{etcd['requests_per_s']:,.0f}/s), {etcd['messages_per_run']:.2f} messages received "
        f"per run (stream messages included)"
    )
    if "watch_events_per_run" in etcd:
        print(
            f"etcd watch events sent: {etcd['watch_events_per_run']:.2f} per run "
            f"({etcd['watch_events_per_s']:,.0f}/s) to {etcd['watchers']:.0f} watchers"
        )
    print(
        table(
            ["grpc_method", "started", "handled", "msg_received"],
            [
                (
                    m,
                    fmt(v.get("started"), 0),
                    fmt(v.get("handled"), 0),
                    fmt(v.get("msg_received"), 0),
                )
                for m, v in etcd["by_method"].items()
            ],
        )
    )


def print_calibration(cal: Mapping[str, Any]) -> None:
    print(
        f"\nFloor: {cal['spawns']} sequential `bash -c 'echo ... >> file'` from this Python "
        f"process: {_dist_line(cal['wall_per_spawn_s'], 1000, 2)} ms wall each; "
        f"{cal['child_cpu_per_1000_s']:.2f} CPU s per 1,000 in bash, "
        f"{cal['parent_cpu_per_1000_s']:.2f} in the parent"
    )


def print_kills(kills: Mapping[str, Any]) -> None:
    print(
        f"\nKill latency, POST /job/kill -> process gone or zombie ({kills['count']} kills), ms: "
        + _dist_line(kills["latency_s"], 1000, 1)
    )
    print("  the POST itself, ms: " + _dist_line(kills["api_latency_s"], 1000, 1))
    for failure in kills["failures"]:
        print(f"  FAILED: {failure}")


def print_job_log(result: Mapping[str, Any]) -> None:
    print()
    print(
        f"Runs of one job in MongoDB: {result['runs']:,} (written in "
        f"{result['write_seconds']:.1f} s); query plan: {' <- '.join(result['plan_stages'])}"
    )
    for label, dist in result["latency_s"].items():
        print(f"GET /job/log, {label}: ms {_dist_line(dist, 1000, 1)}")


def print_at_rest(result: Mapping[str, Any]) -> None:
    save = result["save"]
    print()
    through = "straight into etcd, 128 a transaction" if save.get("through") == "etcd" else "API"
    print(
        f"Saving {save['jobs']:,} jobs ({through}; "
        f"{save.get('distinct_expressions', 0):,} distinct cron expressions): "
        f"{save['seconds']:.1f} s = "
        f"{save['per_s']:,.0f}/s (latency ms: {_dist_line(save['latency_s'], 1000, 1)})"
    )
    for i, listing in enumerate(result.get("job_list", []), 1):
        print(
            f"GET /job/list #{i}: {listing['seconds']:.3f} s, {listing['jobs']:,} jobs, "
            f"{listing['bytes'] / 1e6:.1f} MB"
        )
    for label, seconds in result.get("job_list_pages", {}).items():
        print(f"GET /job/list?limit=100, {label} page (ms): {_dist_line(seconds, 1000, 1)}")
    if result.get("manager_rss_mib") is not None:
        print(f"Manager RSS after the saves and listings: {result['manager_rss_mib']:.1f} MiB")
    worker = result.get("worker")
    if not worker:
        print("(worker figures skipped: --target runs cannot start a worker)")
        return
    probe = _dist_line(worker["ready_probe_latency_s"], 1000, 1)
    rss = f"{fmt(worker['rss_after_idle_mib'], 1)} / {fmt(worker['peak_rss_mib'], 1)} MiB"
    idle_runs = f"{worker['runs_during_idle']} (job CPU {worker['idle_job_cpu_s']:.2f} s)"
    etcd_idle = (
        f"{worker['etcd_messages_per_s_idle']:.2f}/s {worker['etcd_messages_by_method_idle']}"
    )
    rows = [
        ("first HTTP answer after spawn", f"{worker['first_http_answer_s']:.2f} s"),
        ("scheduling (jobs == N in /health/ready)", f"{worker['scheduling_s']:.2f} s"),
        ("ready (ready == true)", f"{fmt(worker['ready_s'], 2)} s"),
        ("/health/ready latency at N jobs (ms)", probe),
        ("RSS when loaded", f"{fmt(worker['rss_loaded_mib'], 1)} MiB"),
        ("RSS after idle / peak", rss),
        (f"idle CPU over {worker['idle_seconds']:.0f} s", f"{worker['idle_cpu_s_per_s']:.4f} s/s"),
        ("idle CPU, a minute later", f"{worker.get('idle_cpu_s_per_s_a_minute_later', 0):.4f} s/s"),
        ("runs that fell due while idle", idle_runs),
        ("etcd messages while idle", etcd_idle),
    ]
    width = max(len(r[0]) for r in rows)
    print("One fresh worker:")
    for name, text in rows:
        print(f"  {name.ljust(width)}  {text}")


def print_logs(logs: Mapping[str, Any]) -> None:
    noisy = {
        name: s for name, s in logs.items() if s.get("warnings_errors") or s.get("non_json_lines")
    }
    if not noisy:
        print("\nGDTS logs: no WARNING or ERROR lines.")
        return
    print("\nGDTS logs, WARNING and above (a hint only; figures above come from side effects):")
    for name, summary in noisy.items():
        extra = summary.get("non_json_lines")
        print(
            f"  {name}: {summary.get('warnings_errors', 0)} lines"
            + (f", {extra} non-JSON lines" if extra else "")
        )
        for entry in summary.get("top", []):
            print(f"    {entry['count']:>6} x {entry['msg']}")


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_json(payload: Mapping[str, Any]) -> None:
    print("BENCH_JSON " + json.dumps(_clean(payload), separators=(",", ":")), flush=True)
