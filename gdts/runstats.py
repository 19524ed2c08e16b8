"""What the dashboard's figures are made of: runs rolled up by the minute they ended in, and
those minutes merged into a window's series and figures. Pure: no I/O, "now" is an argument.

A minute's rollup holds its runs counted by status, a fire-lag histogram and its failing jobs.
The histogram's buckets are fixed and log-spaced (four to a doubling), so minutes merge by
adding counts and a quantile of any span is read off the sum: the bucket's upper bound, at most
2^(1/4) - 1 = 19 % above the true value (and never below it). Failing jobs are kept per minute
for the ``TOP_FAILING_PER_MINUTE`` jobs that failed most in it; a window's top ten is summed
from those, exact unless a job outside a minute's top 100 in some minutes makes the ten."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gdts.runrecord import RunStatus

MINUTE_MS = 60_000
# A minute is rolled up once this long after it closed: results reach MongoDB a little after
# their end (jobLogCommitTimeout, 1 s by default, plus the write).
SETTLE_MS = 30_000
# A result inserted more than this after its end may belong to a minute already rolled up (a
# worker held it through a MongoDB outage): its minute is noted to be computed again. Well
# under SETTLE_MS, so that a result in flight when its minute is rolled up is noted too.
LATE_MS = 10_000
# Runs that count as failures in the failure rate and the failing jobs: the job did not do its
# work. Not killed (on request, or its job deleted), not missed or skipped (never started).
FAILING = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.LIMIT, RunStatus.LOST})
# Runs that never started: no lag, and not in the failure rate's denominator.
NOT_STARTED = frozenset({RunStatus.MISSED, RunStatus.SKIPPED})
# A lost run's startTime is when it was claimed, not when it started: it has no lag either.
NO_LAG = NOT_STARTED | {RunStatus.LOST}
TOP_FAILING_PER_MINUTE = 100
TOP_FAILING = 10
# Fire lag (startTime - planTime, as the workers' gdts_fire_lag_seconds and the benchmark
# measure it) in buckets: 0 holds lags under 1 ms, bucket i >= 1 holds [2^((i-1)/4), 2^(i/4))
# ms, the last everything from 2^28 ms (3.1 days) on.
LAG_STEPS_PER_DOUBLING = 4
LAG_BUCKETS = LAG_STEPS_PER_DOUBLING * 28 + 1
# The same formula in MongoDB ($ln) and here (math.log): both the C library's log.
LAG_SCALE = LAG_STEPS_PER_DOUBLING / math.log(2)


def lag_bucket(lag_ms: float) -> int:
    if lag_ms < 1:
        return 0
    return min(LAG_BUCKETS - 1, math.floor(math.log(lag_ms) * LAG_SCALE) + 1)


def bucket_upper_ms(bucket: int) -> float:
    """The lag every run in the bucket is under (the last bucket has none: its lower bound)."""
    return 2 ** (min(bucket, LAG_BUCKETS - 2) / LAG_STEPS_PER_DOUBLING)


def minute_of(ms: int) -> int:
    return ms - ms % MINUTE_MS


def closed_before(now_ms: int) -> int:
    """Minutes starting before this are closed and settled: the rollup loop computes them."""
    return minute_of(now_ms - SETTLE_MS - MINUTE_MS) + MINUTE_MS


def late_minutes(documents: Iterable[Mapping[str, Any]], now_ms: int) -> set[int]:
    """The minutes of the runs among these that are late (see LATE_MS), by their endTime."""
    return {minute_of(int(d["endTime"])) for d in documents if int(d["endTime"]) < now_ms - LATE_MS}


@dataclass
class MinuteRollup:
    """One minute's runs (or several minutes' merged)."""

    counts: Counter[str] = field(default_factory=Counter)  # status -> runs
    lag: Counter[int] = field(default_factory=Counter)  # lag bucket -> runs
    failing: Counter[str] = field(default_factory=Counter)  # job -> failing runs
    # team -> the part of these runs that are its jobs' (what a non-admin's dashboard sums)
    teams: dict[str, MinuteRollup] = field(default_factory=dict)

    def add(self, other: MinuteRollup) -> None:
        self.counts.update(other.counts)
        self.lag.update(other.lag)
        self.failing.update(other.failing)
        for team, part in other.teams.items():
            self.teams.setdefault(team, MinuteRollup()).add(part)

    def of_teams(self, teams: Iterable[str]) -> MinuteRollup:
        """The part of these runs that are the jobs of ``teams``."""
        part = MinuteRollup()
        for team in teams:
            if team in self.teams:
                part.add(self.teams[team])
        return part

    def cut_failing(self) -> None:
        """Keep the TOP_FAILING_PER_MINUTE jobs that failed most (its teams' parts too)."""
        self.failing = Counter(dict(self.failing.most_common(TOP_FAILING_PER_MINUTE)))
        for part in self.teams.values():
            part.cut_failing()

    def to_document(self) -> dict[str, Any]:
        # Jobs, buckets and teams as pairs or entries, not keys: a name may hold "." or
        # start with "$".
        document: dict[str, Any] = {
            "counts": dict(self.counts),
            "lag": sorted([b, n] for b, n in self.lag.items()),
            "failing": [[job, n] for job, n in self.failing.most_common(TOP_FAILING_PER_MINUTE)],
        }
        if self.teams:
            document["teams"] = [
                {"team": team, **part.to_document()} for team, part in sorted(self.teams.items())
            ]
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> MinuteRollup:
        return cls(
            Counter({str(s): int(n) for s, n in (document.get("counts") or {}).items()}),
            Counter({int(b): int(n) for b, n in document.get("lag") or ()}),
            Counter({str(job): int(n) for job, n in document.get("failing") or ()}),
            {str(t["team"]): cls.from_document(t) for t in document.get("teams") or ()},
        )


def assemble_minutes(
    counts: Iterable[Mapping[str, Any]],
    lags: Iterable[Mapping[str, Any]],
    failing: Iterable[Mapping[str, Any]],
    start_ms: int,
    end_ms: int,
) -> dict[int, MinuteRollup]:
    """Every minute in [start_ms, end_ms) from the groups MongoDB made of their runs (rows of
    ``{"minute": ms, "key": status | bucket | job, "n": runs}``); minutes without runs too, so
    a minute computed again after its runs expired is written empty."""
    minutes = {m: MinuteRollup() for m in range(start_ms, end_ms, MINUTE_MS)}
    for rows, counter in ((counts, "counts"), (lags, "lag"), (failing, "failing")):
        for row in rows:
            minute = minutes.get(int(row["minute"]))
            if minute is not None:
                getattr(minute, counter)[row["key"]] += int(row["n"])
    for minute in minutes.values():
        minute.cut_failing()
    return minutes


def split_by_team(
    counts: Iterable[Mapping[str, Any]],
    lags: Iterable[Mapping[str, Any]],
    failing: Iterable[Mapping[str, Any]],
    team_of: Callable[[str], str | None],
    start_ms: int,
    end_ms: int,
) -> dict[str, dict[int, MinuteRollup]]:
    """Each team's minutes from groups by job (``counts`` and ``lags``: rows keyed ``[job,
    status | bucket]``; ``failing``: keyed by job), a job's runs going to ``team_of(job)`` (None:
    a job that no longer exists, in no team's part)."""
    rows: dict[str, tuple[list[dict[str, Any]], ...]] = {}
    for index, grouped in enumerate((counts, lags, failing)):
        for row in grouped:
            job, key = (row["key"], row["key"]) if index == 2 else row["key"]
            team = team_of(job)
            if team is not None:
                kept = {"minute": row["minute"], "key": key, "n": row["n"]}
                rows.setdefault(team, ([], [], []))[index].append(kept)
    return {team: assemble_minutes(*its, start_ms, end_ms) for team, its in rows.items()}


def merge_spans(minutes: Mapping[int, MinuteRollup], span_ms: int) -> dict[int, MinuteRollup]:
    """The minutes merged into spans of ``span_ms`` (by each span's start), each span's failing
    jobs cut to its TOP_FAILING_PER_MINUTE (a window's top ten is summed from these)."""
    spans: dict[int, MinuteRollup] = {}
    for minute, rollup in minutes.items():
        spans.setdefault(minute - minute % span_ms, MinuteRollup()).add(rollup)
    for span in spans.values():
        span.cut_failing()
    return spans


@dataclass(frozen=True)
class Window:
    name: str
    bucket_minutes: int
    buckets: int


WINDOWS = {"hour": Window("hour", 1, 60), "day": Window("day", 15, 96)}
# The rollups also kept by the quarter hour: the day's buckets, read whole.
QUARTER_MS = WINDOWS["day"].bucket_minutes * MINUTE_MS


def window_start(window: Window, now_ms: int) -> int:
    """The first minute of the window's first bucket; the last bucket holds now."""
    bucket_ms = window.bucket_minutes * MINUTE_MS
    return now_ms - now_ms % bucket_ms - (window.buckets - 1) * bucket_ms


def lag_quantile(lag: Mapping[int, int], q: float) -> float | None:
    """The q-quantile's bucket's upper bound (ms); None without runs."""
    total = sum(lag.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(lag):
        seen += lag[bucket]
        if seen >= rank:
            return round(bucket_upper_ms(bucket), 3)
    raise AssertionError("unreachable: the ranks add up to the total")


def failure_rate(counts: Mapping[str, int]) -> float | None:
    """Failing runs among the runs that started; None when none did."""
    started = sum(n for status, n in counts.items() if status not in NOT_STARTED)
    if started == 0:
        return None
    return sum(counts.get(status, 0) for status in FAILING) / started


def summarize(
    window: Window,
    now_ms: int,
    minutes: Mapping[int, MinuteRollup],
    workers_online: Mapping[int, int],
) -> dict[str, Any]:
    """The window's series and figures from its minutes' rollups (``minutes``: minute start ->
    rollup, those outside the window ignored) and the workers counted each minute."""
    start = window_start(window, now_ms)
    bucket_ms = window.bucket_minutes * MINUTE_MS
    starts = [start + i * bucket_ms for i in range(window.buckets)]
    per_bucket = [MinuteRollup() for _ in starts]
    online: list[int | None] = [None] * window.buckets
    whole = MinuteRollup()
    for minute, rollup in minutes.items():
        if start <= minute <= now_ms:
            per_bucket[(minute - start) // bucket_ms].add(rollup)
            whole.add(rollup)
    for minute, count in workers_online.items():
        if start <= minute <= now_ms:
            i = (minute - start) // bucket_ms
            online[i] = max(count, online[i] or 0)
    statuses = [str(status) for status in RunStatus]
    per_minute = {
        status: [
            round(b.counts.get(status, 0) / _minutes_begun(s, window, now_ms), 3)
            for s, b in zip(starts, per_bucket, strict=True)
        ]
        for status in statuses
    }
    return {
        "window": window.name,
        "now": now_ms,
        "bucketMinutes": window.bucket_minutes,
        "buckets": starts,
        "perMinute": per_minute,
        "runs": {status: whole.counts.get(status, 0) for status in statuses},
        "failureRate": failure_rate(whole.counts),
        "lagP50Ms": lag_quantile(whole.lag, 0.5),
        "lagP99Ms": lag_quantile(whole.lag, 0.99),
        "missed": whole.counts.get(RunStatus.MISSED, 0),
        "lost": whole.counts.get(RunStatus.LOST, 0),
        "topFailing": top_failing(whole.failing),
        "workersOnline": online,
    }


def top_failing(failing: Mapping[str, int]) -> list[dict[str, Any]]:
    ranked = sorted(failing.items(), key=lambda item: (-item[1], item[0]))[:TOP_FAILING]
    return [{"jobName": job, "failures": n} for job, n in ranked]


def running_per_worker(workers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """From /worker/list's entries: each live worker's id and how many jobs it runs now."""
    rows = [{"worker": str(w["id"]), "running": len(w.get("running") or ())} for w in workers]
    return sorted(rows, key=lambda row: row["worker"])


def _minutes_begun(bucket_start: int, window: Window, now_ms: int) -> int:
    # The bucket holding now is a rate over the minutes of it that have begun, so the last
    # point of the day's series does not sag while its 15 minutes fill.
    return max(1, min(window.bucket_minutes, (now_ms - bucket_start) // MINUTE_MS + 1))
