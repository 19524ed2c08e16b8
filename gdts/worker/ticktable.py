"""Which job fires next: a timer heap over every job's next planned tick. Pure: takes "now".

Popping is O(log n) per due tick; jobs that are not due cost nothing, so 100,000 daily jobs
leave the loop idle. Replaced and removed jobs leave stale heap entries that are skipped on
pop (lazy deletion) instead of an O(n) heap rebuild on every change.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gdts.cron import CronSchedule
from gdts.job import Job
from gdts.plans import from_ms, next_run, to_ms
from gdts.runrecord import ChainStep

__all__ = [
    "DueTick",
    "TickTable",
    "from_ms",
    "misfire_grace_ms",
    "next_plan",
    "start_window_ms",
    "to_ms",
]


@dataclass(frozen=True)
class DueTick:
    job: Job
    plan_ms: int
    # A run asked for through POST /job/run: its request key, deleted by the winning claim.
    run_request: bytes | None = None
    # A catch-up run for this missed tick (the job's catchUp): it may start until start_by_ms.
    catch_up: bool = False
    start_by_ms: int | None = None
    # A step of a chain run (its run request names it), run as its job alone.
    chain: ChainStep | None = None

    @property
    def exclusive(self) -> bool:
        """Whether its run holds the job's one running marker: not under policy "allow", nor
        as a chain run's step (which runs beside its job's own runs, see gdts.chains)."""
        return self.job.concurrency != "allow" and self.chain is None

    def start_deadline(self, default_window_ms: int) -> int:
        """The last instant this tick may still start."""
        return self.start_by_ms or self.plan_ms + start_window_ms(self.job, default_window_ms)


def misfire_grace_ms(job: Job) -> int | None:
    return None if job.misfire_grace_s is None else round(job.misfire_grace_s * 1000)


def start_window_ms(job: Job, default_window_ms: int) -> int:
    """How late a tick of this job may still start: its misfireGrace, or the worker's default
    (startWindow)."""
    grace = misfire_grace_ms(job)
    return default_window_ms if grace is None else grace


def next_plan(job: Job, after_ms: int) -> int | None:
    """The job's first planned tick strictly after ``after_ms`` (see gdts.plans.next_run)."""
    return next_run(job.enabled, job.run_at_ms, job.schedule, after_ms)


class _Slot:
    """One job in the table. A slotted object, not three dicts and a tuple: a worker holds a
    million of them."""

    __slots__ = ("generation", "job", "pending_ms", "since_ms")

    def __init__(self, job: Job, generation: int, since_ms: int) -> None:
        self.job = job
        self.generation = generation  # of its live heap entry; older entries are stale
        self.since_ms = since_ms  # when its current version was put here
        self.pending_ms: int | None = None  # the plan of its live heap entry, if any


class TickTable:
    """Every job, and the next tick of each job this worker schedules: those ``in_scope`` (its
    buckets, see partition, and the routed jobs it may run); the others are kept for their
    definition alone."""

    def __init__(self, in_scope: Callable[[Job], bool] = lambda job: True) -> None:
        self._in_scope = in_scope
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[int, int, str]] = []  # (plan_ms, generation, name)
        self._generations = itertools.count()
        # The next plans computed for one ``after`` instant, by schedule: the jobs of one tick
        # (500 every-second jobs) or of one load (every job at "now") share a few schedules,
        # so one cron search serves each schedule.
        self._plans_after = -1
        self._plans: dict[CronSchedule, int | None] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, name: str) -> bool:
        return name in self._slots

    def jobs(self) -> list[Job]:
        return [slot.job for slot in self._slots.values()]

    def get(self, name: str) -> Job | None:
        slot = self._slots.get(name)
        return slot.job if slot else None

    def put(self, job: Job, now_ms: int) -> bool:
        """Add or replace a job; returns whether its schedule changed. An unchanged job keeps
        its pending tick, so re-reading etcd after a reconnect drops nothing; its ticks still
        come with the version just put (the one a claim must be made from)."""
        slot = self._slots.get(job.name)
        if slot is not None and slot.job == job:
            slot.job = job
            return False
        # An edit that arrives just after a tick fell due (but before it was popped) must not
        # drop that tick: schedule from just before the pending one when that is earlier.
        after = now_ms
        if slot is None:
            slot = self._slots[job.name] = _Slot(job, next(self._generations), now_ms)
        else:
            if slot.pending_ms is not None:
                after = min(after, slot.pending_ms - 1)
            slot.job, slot.generation, slot.since_ms = job, next(self._generations), now_ms
            slot.pending_ms = None
        if self._in_scope(job):
            self._push_next(slot, after)
        self._maybe_compact()
        return True

    def unschedule(self, name: str) -> None:
        """The job left this worker's scope: its pending tick is dropped, its definition kept."""
        slot = self._slots.get(name)
        if slot is not None and slot.pending_ms is not None:
            slot.pending_ms = None
            slot.generation = next(self._generations)
            self._maybe_compact()

    def schedule_from(self, name: str, after_ms: int) -> None:
        """The job came into this worker's scope: its ticks from just after ``after_ms`` on
        (which may be past: those still within their start window are due at once), but none
        planned before its current version was put here (not before it existed)."""
        slot = self._slots.get(name)
        if slot is None or not self._in_scope(slot.job):
            return
        after_ms = max(after_ms, slot.since_ms)
        if slot.pending_ms is not None:
            plan_ms = self._next_plan(slot.job, after_ms)
            if plan_ms is None or plan_ms >= slot.pending_ms:
                return  # nothing due before what is pending (a first start: every job)
        slot.generation = next(self._generations)
        self._push_next(slot, after_ms)
        self._maybe_compact()

    def remove(self, name: str) -> bool:
        removed = self._slots.pop(name, None) is not None
        self._maybe_compact()
        return removed

    def replace_all(self, jobs: Iterable[Job], now_ms: int) -> None:
        wanted = {job.name: job for job in jobs}
        for name in [n for n in self._slots if n not in wanted]:
            del self._slots[name]
        for job in wanted.values():
            self.put(job, now_ms)

    def next_ms(self) -> int | None:
        """The earliest pending tick, or None when no job will ever fire again."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(
        self,
        now_ms: int,
        oldest_ms: int,
        window_of: Callable[[Job], int | None] | None = None,
        on_missed: Callable[[DueTick], None] | None = None,
    ) -> tuple[list[DueTick], int]:
        """Ticks planned at or before ``now_ms``; returns (due, missed). Ticks older than
        ``oldest_ms`` (after a stall or a clock jump) are not returned: the job is rescheduled
        from ``oldest_ms`` so a long gap is never replayed as a burst. ``missed`` counts the jobs
        that skipped ticks this way, not the ticks: counting every tick of a long gap would cost
        one cron evaluation per skipped tick (a week of a one-second job: 600,000). A job's
        own window (``window_of``, ms, or None for the default) replaces ``oldest_ms`` for it;
        ``on_missed`` hears of the first tick each such job skipped."""
        due: list[DueTick] = []
        missed = 0
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now_ms:
                return due, missed
            plan_ms, _, name = heapq.heappop(self._heap)
            slot = self._slots[name]
            job = slot.job
            window = window_of(job) if window_of is not None else None
            oldest = oldest_ms if window is None else now_ms - window
            if plan_ms >= oldest:
                due.append(DueTick(job, plan_ms))
                self._push_next(slot, plan_ms)
            else:
                missed += 1
                self._push_next(slot, oldest - 1)
                if on_missed is not None:
                    on_missed(DueTick(job, plan_ms))

    def _push_next(self, slot: _Slot, after_ms: int) -> None:
        job = slot.job
        plan_ms = slot.pending_ms = self._next_plan(job, after_ms)
        if plan_ms is not None:
            heapq.heappush(self._heap, (plan_ms, slot.generation, job.name))

    def _next_plan(self, job: Job, after_ms: int) -> int | None:
        schedule = job.schedule
        if schedule is None or not job.enabled or job.run_at_ms is not None:
            return next_plan(job, after_ms)
        if after_ms != self._plans_after:
            self._plans_after = after_ms
            self._plans.clear()
        plan_ms = self._plans.get(schedule, -1)
        if plan_ms == -1:
            plan_ms = self._plans[schedule] = next_plan(job, after_ms)
        return plan_ms

    def _maybe_compact(self) -> None:
        # Edits and deletes leave stale entries; rebuild before they outnumber the live ones.
        if len(self._heap) > 2 * len(self._slots) + 64:
            self._compact()

    def _live(self, generation: int, name: str) -> bool:
        slot = self._slots.get(name)
        return slot is not None and slot.generation == generation

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and not self._live(heap[0][1], heap[0][2]):
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._live(entry[1], entry[2])]
        heapq.heapify(self._heap)
