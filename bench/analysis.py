"""What the records file says: runs, duplicates, misses and fire lag.

Each run appends ``<job> <planned tick, epoch ms> <bash's $EPOCHREALTIME>`` when its shell
starts, so a line is proof that the tick ran and when; nothing here trusts GDTS's own account.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gdts.cron import parse_cron

# The default cron: every second. Its ticks are plain arithmetic; anything else goes through
# GDTS's own parser so the benchmark expects exactly what GDTS is meant to schedule.
_EVERY_SECOND = ("* * * * * *", "*/1 * * * * *")


@dataclass(frozen=True)
class Record:
    job: str
    plan_ms: int
    start_s: float  # EPOCHREALTIME: when the job's shell ran its first command
    worker: str = ""  # GDTS_WORKER_ID of the worker that ran it

    @property
    def lag_s(self) -> float:
        return self.start_s - self.plan_ms / 1000


def read_records(path: Path) -> tuple[list[Record], int]:
    """All well-formed records, and how many lines were not."""
    records: list[Record] = []
    bad = 0
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) not in (3, 4):
            bad += 1
            continue
        try:
            # EPOCHREALTIME uses the locale's decimal separator.
            start_s = float(parts[2].replace(",", "."))
            worker = parts[3] if len(parts) == 4 else ""
            records.append(Record(parts[0], int(parts[1]), start_s, worker))
        except ValueError:
            bad += 1
    return records, bad


def cron_ticks_ms(cron: str, start_s: float, end_s: float) -> list[int]:
    """Planned ticks (epoch ms) of ``cron`` with start_s <= tick < end_s."""
    if " ".join(cron.split()) in _EVERY_SECOND:
        first = math.ceil(start_s)
        return [s * 1000 for s in range(first, math.ceil(end_s))]
    schedule = parse_cron(cron)
    ticks: list[int] = []
    # next_after is strictly after: start just before start_s so a tick at start_s counts.
    moment = datetime.fromtimestamp(start_s, UTC) - timedelta(microseconds=1)
    while True:
        nxt = schedule.next_after(moment)
        if nxt is None or nxt.timestamp() >= end_s:
            return ticks
        ticks.append(round(nxt.timestamp() * 1000))
        moment = nxt


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; ``sorted_values`` must be sorted."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def distribution(values: Iterable[float]) -> dict[str, float | int]:
    data = sorted(values)
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "min": data[0],
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": data[-1],
        "mean": sum(data) / len(data),
    }


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    # Ticks this close to the end are not counted as misses: the jobs are deleted right after
    # the window, and a tick due a moment before that may legitimately still be in flight.
    miss_margin_s: float = 2.0

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


SEGMENTS = 6  # about how many slices the over-time tables get


def slice_seconds(window_s: float, segments: int = SEGMENTS) -> int:
    """Whole seconds per slice, so every slice holds the same number of per-second ticks."""
    return max(1, math.ceil(window_s / segments))


def analyse(
    records: Sequence[Record],
    jobs: Sequence[str],
    cron: str,
    window: Window,
    segments: int = SEGMENTS,
) -> dict[str, Any]:
    """``segments``: about how many slices the lag-over-time table gets (whole seconds each,
    so every slice holds the same number of per-second ticks)."""
    counts = Counter((r.job, r.plan_ms) for r in records)
    duplicates = {pair: n for pair, n in counts.items() if n > 1}

    start_ms, end_ms = window.start_s * 1000, window.end_s * 1000
    in_window = [r for r in records if start_ms <= r.plan_ms < end_ms]
    ticks = cron_ticks_ms(cron, window.start_s, window.end_s)
    miss_ticks = [t for t in ticks if t < (window.end_s - window.miss_margin_s) * 1000]
    expected_runs = len(jobs) * len(ticks)

    missed: list[tuple[str, int]] = [
        (job, tick) for job in jobs for tick in miss_ticks if (job, tick) not in counts
    ]
    job_set, tick_set = set(jobs), set(ticks)
    unexpected = sum(1 for r in in_window if r.job not in job_set or r.plan_ms not in tick_set)

    minutes = window.seconds / 60
    runs = len(in_window)
    lag = distribution(r.lag_s for r in in_window)

    # The window in equal slices: does lag (or the miss count) grow as the run goes on?
    slice_s = slice_seconds(window.seconds, segments)
    by_segment: list[dict[str, Any]] = []
    for i in range(math.ceil(window.seconds / slice_s)):
        lo = start_ms + i * slice_s * 1000
        hi = min(end_ms, lo + slice_s * 1000)
        seg = [r.lag_s for r in in_window if lo <= r.plan_ms < hi]
        seg_dist = distribution(seg)
        by_segment.append(
            {
                "from_s": round((lo - start_ms) / 1000, 1),
                "to_s": round((hi - start_ms) / 1000, 1),
                "runs": len(seg),
                "lag_p50": seg_dist.get("p50"),
                "lag_p99": seg_dist.get("p99"),
                "lag_max": seg_dist.get("max"),
                "misses": sum(1 for _, t in missed if lo <= t < hi),
            }
        )

    per_worker: dict[str, dict[str, Any]] = {}
    for worker in sorted({r.worker for r in in_window}):
        mine = distribution(r.lag_s for r in in_window if r.worker == worker)
        per_worker[worker or "?"] = {"runs": mine["n"], "lag_p50": mine.get("p50"),
                                     "lag_p99": mine.get("p99")}  # fmt: skip

    return {
        "records_total": len(records),
        "duplicate_pairs": len(duplicates),
        "duplicate_extra_runs": sum(n - 1 for n in duplicates.values()),
        "duplicate_examples": [
            {"job": j, "plan_ms": t, "times": n} for (j, t), n in list(duplicates.items())[:5]
        ],
        "duplicate_pairs_in_window": sum(1 for (_, t) in duplicates if start_ms <= t < end_ms),
        "ticks_per_job_in_window": len(ticks),
        "expected_runs": expected_runs,
        "runs_in_window": runs,  # by planned tick
        "runs_started_in_window": sum(
            1 for r in records if window.start_s <= r.start_s < window.end_s
        ),
        "runs_per_min": runs / minutes if minutes else math.nan,
        "expected_per_min": expected_runs / minutes if minutes else math.nan,
        "achieved_ratio": runs / expected_runs if expected_runs else math.nan,
        "miss_ticks_checked": len(jobs) * len(miss_ticks),
        "misses": len(missed),
        "jobs_with_misses": len({j for j, _ in missed}),
        "miss_examples": [{"job": j, "plan_ms": t} for j, t in missed[:5]],
        "unexpected_runs_in_window": unexpected,
        "lag_s": lag,
        "lag_by_segment": by_segment,
        "by_worker": per_worker,
    }
