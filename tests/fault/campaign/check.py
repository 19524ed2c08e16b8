"""The campaign's verdict, from what the jobs wrote themselves, what MongoDB holds and what the
API acknowledged. Pure: no I/O; every time is epoch seconds or, for planned ticks, epoch ms.

The jobs' lines (see commands): ``S`` when a run starts, ``E`` when it ends by itself, ``O``
when a run of a forbid job starts while a process of the job's run before it still lives (the
job holds a lock file for as long as any of its processes lives). Each start numbers itself
(``attempt``) with an atomic mkdir per (job, tick), so a tick run twice shows as more starts
than the job has attempts.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fault.campaign.plan import JobSpec


@dataclass(frozen=True)
class RunLine:
    kind: str  # S, E or O
    job: str
    plan_ms: int
    attempt: int
    worker: str
    at_s: float


@dataclass(frozen=True)
class Record:
    job: str
    plan_ms: int
    attempt: int
    status: str


@dataclass(frozen=True)
class Acked:
    """An API call: when it was sent, and when its answer came (None: no answer, so whether it
    took effect is unknown)."""

    job: str
    action: str
    sent_s: float
    acked_s: float | None
    # The etcd revision of the write (a delete: one read at or after it); None: not known
    revision: int | None = None


@dataclass(frozen=True)
class FaultWindow:
    kind: str
    start_s: float
    end_s: float
    worker: str | None = None  # the worker it was dealt to, if any


@dataclass
class Verdict:
    twice: list[tuple[str, int, int]] = field(default_factory=list)  # job, tick, starts
    overlaps: list[RunLine] = field(default_factory=list)
    missing_records: list[tuple[str, int, int]] = field(default_factory=list)
    after_ack: list[tuple[RunLine, Acked]] = field(default_factory=list)
    missed: list[tuple[str, int]] = field(default_factory=list)  # not in any fault window
    missed_in_faults: Counter[str] = field(default_factory=Counter)  # by the fault's kind
    # Ticks a /job/kill took before their run started: due when it was asked, logged killed
    killed_before_start: int = 0
    ticks_checked: int = 0
    runs_started: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.twice or self.overlaps or self.missing_records or self.after_ack or self.missed
        )

    def counts(self) -> dict[str, int]:
        return {
            "ticks run twice": len(self.twice),
            "overlapping runs of a forbid job": len(self.overlaps),
            "finished runs missing from MongoDB": len(self.missing_records),
            "runs after an acknowledged disable or delete": len(self.after_ack),
            "ticks missed outside fault windows": len(self.missed),
            "ticks missed inside fault windows": sum(self.missed_in_faults.values()),
            "ticks killed before their run started (a kill asked for then)": (
                self.killed_before_start
            ),
        }


def parse_lines(text: str) -> list[RunLine]:
    lines = []
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) != 6 or parts[0] not in ("S", "E", "O"):
            continue  # a line cut by a kill mid-write
        kind, job, plan, attempt, worker, at = parts
        try:
            lines.append(RunLine(kind, job, int(plan), int(attempt), worker, float(at)))
        except ValueError:
            continue
    return lines


def check(
    jobs: list[JobSpec],
    lines: list[RunLine],
    records: list[Record],
    calls: list[Acked],
    faults: list[FaultWindow],
    *,
    saved_s: float,
    until_s: float,
    recovery_s: float,
    window_s: float = 10.0,
    claims: dict[tuple[str, int], int] | None = None,
) -> Verdict:
    """``saved_s``: when every job had been saved; ``until_s``: the last instant whose ticks
    are checked; ``recovery_s``: how long after a fault ends its misses are still its own;
    ``window_s``: how late a tick may start (a replace job's tick not started by then because
    a later tick's run started first was superseded, as the policy means); ``claims``: the
    etcd revision each (job, tick) was claimed at. A start after a disable or delete was
    acknowledged is a violation if its claim came after the write (a claim made just before
    it may still be spawning its process when the answer comes); without the revisions, any
    start after the answer is."""
    verdict = Verdict()
    specs = {job.name: job for job in jobs}
    starts = [line for line in lines if line.kind == "S" and line.job in specs]
    verdict.runs_started = len(starts)

    per_tick = Counter((line.job, line.plan_ms) for line in starts)
    for (job, plan), count in sorted(per_tick.items()):
        if count > 1 + specs[job].retries:
            verdict.twice.append((job, plan, count))

    verdict.overlaps = [
        line for line in lines if line.kind == "O" and specs.get(line.job, _ANY).policy == "forbid"
    ]

    # A run that ended as its worker was SIGKILLed, before the worker saw it end, has its
    # record all the same: "lost", for the attempt its running marker named.
    stored = {(r.job, r.plan_ms, r.attempt) for r in records}
    for line in lines:
        if line.kind == "E" and line.job in specs:
            if (line.job, line.plan_ms, line.attempt) not in stored:
                verdict.missing_records.append((line.job, line.plan_ms, line.attempt))

    timelines = _timelines(calls)
    for line in starts:
        if line.plan_ms % 1000:
            continue  # asked for with /job/run: it runs on a disabled job too
        call = _state_at(timelines.get(line.job, []), line.at_s)
        if call is None or call.action not in ("disable", "delete"):
            continue
        claimed = (claims or {}).get((line.job, line.plan_ms))
        if claimed is not None and call.revision is not None and claimed < call.revision:
            continue  # claimed before the write: that run was already on its way
        verdict.after_ack.append((line, call))

    started = {(line.job, line.plan_ms) for line in starts}
    logged_killed = {(r.job, r.plan_ms) for r in records if r.status == "killed"}
    kills = _kill_spans(calls, window_s)
    for job in jobs:
        if not job.every_tick:
            continue
        superseded = _superseded_before(starts, job) if job.policy == "replace" else None
        for plan_s in range(int(saved_s) + 2, int(until_s)):
            if not _surely_enabled(timelines.get(job.name, []), plan_s):
                continue
            verdict.ticks_checked += 1
            if (job.name, plan_s * 1000) in started:
                continue
            if superseded is not None and superseded(plan_s) <= plan_s + window_s:
                continue
            if (job.name, plan_s * 1000) in logged_killed and any(
                first <= plan_s <= last for first, last in kills.get(job.name, ())
            ):
                verdict.killed_before_start += 1
                continue
            fault = next(
                (f for f in faults if f.start_s - 1 <= plan_s <= f.end_s + recovery_s), None
            )
            if fault is None:
                verdict.missed.append((job.name, plan_s * 1000))
            else:
                verdict.missed_in_faults[fault.kind] += 1
    return verdict


_ANY = JobSpec("", "", 0.0)


def _superseded_before(starts: list[RunLine], job: JobSpec) -> Callable[[int], float]:
    """For a replace job: the earliest start of any of its scheduled ticks planned after a
    given second (inf: none)."""
    first_start: dict[int, float] = {}
    for line in starts:
        if line.job == job.name and line.plan_ms % 1000 == 0:
            plan_s = line.plan_ms // 1000
            first_start[plan_s] = min(first_start.get(plan_s, math.inf), line.at_s)
    plans = sorted(first_start)
    earliest_after = [math.inf] * (len(plans) + 1)  # earliest start among plans[i:]
    for i in range(len(plans) - 1, -1, -1):
        earliest_after[i] = min(earliest_after[i + 1], first_start[plans[i]])

    def superseded(plan_s: int) -> float:
        return earliest_after[bisect.bisect_right(plans, plan_s)]

    return superseded


def _kill_spans(calls: list[Acked], window_s: float) -> dict[str, list[tuple[float, float]]]:
    """Per job, the planned times a /job/kill may rightly take before their run starts: a
    tick due when the kill was asked (still within its start window) and not yet started is
    killed at spawn, as the worker promises, until the kill is answered (unanswered: any
    tick from then on may be its)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for call in calls:
        if call.action == "kill":
            last = math.inf if call.acked_s is None else call.acked_s
            spans[call.job].append((call.sent_s - window_s, last))
    return spans


def _timelines(calls: list[Acked]) -> dict[str, list[Acked]]:
    """Each job's calls that change whether it runs, in the order they were sent."""
    timelines: dict[str, list[Acked]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.sent_s):
        if call.action in ("disable", "enable", "delete", "save"):
            timelines[call.job].append(call)
    return timelines


def _state_at(timeline: list[Acked], at_s: float) -> Acked | None:
    """The call that decides whether the job may start at ``at_s``: the last one acknowledged
    before it, unless a later one was sent before ``at_s`` (its effect may have begun) or one
    sent before went unanswered (it may have taken effect at any time)."""
    decided = None
    for call in timeline:
        if call.sent_s > at_s:
            break
        if call.acked_s is None or call.acked_s > at_s:
            return None  # in flight or unknown: nothing is promised yet
        decided = call
    return decided


# A change sent this close after a tick's planned time may land before the tick is claimed
# (a disable then rightly drops it): such ticks are not owed.
_SETTLE_S = 2


def _surely_enabled(timeline: list[Acked], plan_s: int) -> bool:
    """Whether the job was, beyond doubt, enabled from a second before the tick until it had
    started (a change in flight around it excuses the tick)."""
    decided = _state_at(timeline, plan_s - 1)
    if decided is not None and decided.action in ("disable", "delete"):
        return False
    if timeline and decided is None and timeline[0].sent_s <= plan_s - 1:
        return False  # a call in doubt
    return not any(plan_s - 1 <= call.sent_s <= plan_s + _SETTLE_S for call in timeline)
