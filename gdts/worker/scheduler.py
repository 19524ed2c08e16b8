"""The worker's timer: pops the ticks that fall due, fires those this worker should claim (its
own jobs' at once, other owners' ``takeoverDelay`` later if nobody claimed them), and speaks for
the ticks that could not start in time. Owns every fire it starts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable

from gdts.config import WorkerConfig
from gdts.errors import GdtsError
from gdts.logs import event
from gdts.routing import no_live_member
from gdts.runlog import RunLog
from gdts.runrecord import RunStatus
from gdts.worker import takeover
from gdts.worker.capacity import RunSlots
from gdts.worker.chainruns import ChainRuns
from gdts.worker.claimflow import ClaimFlow
from gdts.worker.clusterview import ClusterView
from gdts.worker.logsink import LogSink
from gdts.worker.records import (
    ALL_AT_CAPACITY,
    NO_WORKER_COULD,
    OWNER_AT_CAPACITY,
    missed_record,
)
from gdts.worker.runs import Runs
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick, TickTable, misfire_grace_ms, next_plan, start_window_ms

log = logging.getLogger(__name__)

_OUTAGE_CHECK_CHUNK = 5000  # job names per MongoDB query when looking for outage misses


class Scheduler:
    def __init__(
        self,
        config: WorkerConfig,
        worker_id: str,
        clock: Callable[[], int],
        *,
        table: TickTable,
        view: ClusterView,
        claims: ClaimFlow,
        chains: ChainRuns,
        runs: Runs,
        slots: RunSlots,
        sink: LogSink,
        runlog: RunLog,
        stats: WorkerStats,
        stopping: asyncio.Event,
    ) -> None:
        self._config = config
        self._worker_id = worker_id
        self._now_ms = clock
        self._table = table
        self._view = view
        self._claims = claims
        self._chains = chains
        self._runs = runs
        self._slots = slots
        self._sink = sink
        self._runlog = runlog
        self._stats = stats
        self._stopping = stopping
        self._wake = asyncio.Event()  # the table changed: the next tick may be sooner
        self._takeovers = takeover.TakeoverQueue()
        self._catching_up: set[str] = set()  # jobs with a catch-up run under way here
        # Ticks planned before this instant are due only because a bucket came to this worker
        # (see Worker.running_reset).
        self._caught_up_before = 0
        self.fires: set[asyncio.Task[None]] = set()  # ticks being claimed or run

    def wake(self) -> None:
        """The table changed: look again at when the next tick falls due."""
        self._wake.set()

    async def run(self) -> None:
        """Fire ticks as they fall due, forever (cancel it to stop taking ticks)."""
        window = self._config.start_window
        while True:
            now = self._now_ms()
            due, missed = self._table.pop_due(
                now, now - window, window_of=misfire_grace_ms, on_missed=self.tick_missed
            )
            if missed:
                self._stats.missed_ticks.inc(missed)
                log.warning("%d job(s) skipped ticks older than the start window", missed)
            takeover_at = now - self._config.takeover_delay
            for tick in due:
                if tick.job.routed:
                    self._route(tick, now)
                elif tick.plan_ms < self._caught_up_before:
                    # Caught up on when the bucket came here: looked at as a backup would
                    # (claimed already, running elsewhere), never claimed blindly.
                    self._take_over(tick, now)
                elif self._view.owns(tick.job.name):
                    self.fire(tick, now, owner=True)
                elif tick.plan_ms > takeover_at:
                    self._takeovers.push(tick, tick.plan_ms + self._config.takeover_delay)
                else:
                    self._take_over(tick, now)
            for tick in self._takeovers.pop_due(now):
                self._take_over(tick, now)
            next_ms = self._table.next_ms()
            first_takeover = self._takeovers.next_ms()
            if first_takeover is not None:
                next_ms = first_takeover if next_ms is None else min(next_ms, first_takeover)
            # Never sleep more than a second: the wait runs on the monotonic clock, and a step
            # of the wall clock must not turn the next tick into a miss.
            left_s = 1.0 if next_ms is None else (next_ms - self._now_ms()) / 1000
            delay = min(1.0, max(0.0, left_s))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def catching_up(self, until_ms: int) -> None:
        """Ticks planned before ``until_ms`` that fall due now are a new bucket's past ones."""
        self._caught_up_before = until_ms
        self._wake.set()

    def run_requested(self, tick: DueTick) -> None:
        """POST /job/run: the job's owner claims the run at once, as it would a tick; its backup
        steps in after takeoverDelay if the request is still there."""
        now = self._now_ms()
        if tick.job.routed:
            self._route(tick, now)
        elif self._view.owns(tick.job.name):
            self.fire(tick, now, owner=True)
        elif self._view.handles(tick.job.name):  # the job's backup
            self._takeovers.push(tick, now + self._config.takeover_delay)
            self._wake.set()  # the next wake-up may now be earlier

    def _route(self, tick: DueTick, now: int) -> None:
        """A routed job's tick (see gdts.routing): the first worker of its order claims it at
        once, the second steps in takeoverDelay later if nobody did; the others leave it. A
        tick whose host group has no live member is missed (see tick_missed)."""
        order = self._view.route(tick.job, tick.plan_ms)
        if not order:
            self.tick_missed(tick)
        elif order[0] == self._worker_id:
            self.fire(tick, now, owner=True)
        elif order[1:2] == [self._worker_id]:
            since = now if tick.run_request is not None else tick.plan_ms
            self._takeovers.push(tick, since + self._config.takeover_delay)
            self._wake.set()  # the next wake-up may now be earlier

    def _take_over(self, tick: DueTick, now: int) -> None:
        decision = takeover.decide(
            tick,
            self._view,
            now,
            delay_ms=self._config.takeover_delay,
            window_ends_ms=tick.start_deadline(self._config.start_window),
            job_deleted=self._table.get(tick.job.name) is None,
            stopping=self._stopping.is_set(),
            at_capacity=self._slots.full(),
        )
        if decision.outcome is not None:
            self._stats.claim(decision.outcome)
        if decision.look_again_at is not None:
            self._takeovers.push(tick, decision.look_again_at)
        if decision.step_in:
            tags = event(job=tick.job.name, tick=tick.plan_ms)
            log.info("stepping in for the job's owner", extra=tags)
            self.fire(tick, now)

    def tick_missed(self, tick: DueTick, why: str = NO_WORKER_COULD) -> None:
        """A tick could not start within its window. The job's owner speaks for it: a job with
        catchUp gets one catch-up run now (not one per missed tick: never a burst), any other
        job a run record with status missed (``why``: what its record says)."""
        job = tick.job
        if tick.catch_up or self._stopping.is_set():
            return
        if self._view.tick_claimed(job.name, job.generation, tick.plan_ms):
            return  # run (or running) elsewhere: seen claimed
        order = self._view.route(job, tick.plan_ms) if job.routed else None
        if order == [] and (tick.run_request is None or tick.chain is not None):
            # No live member: nobody may run it, so no catch-up either; its bucket's owner
            # tells (once: the owner alone).
            if self._view.owns(job.name):
                self._record_missed(tick, no_live_member(job.host_group))
            return
        if not (self._view.owns(job.name) if order is None else order[:1] == [self._worker_id]):
            return  # another speaks for it
        now = self._now_ms()
        window = start_window_ms(job, self._config.start_window)
        if job.catch_up and tick.chain is None:
            if job.name not in self._catching_up:
                self._catching_up.add(job.name)
                log.info(
                    "catching up on a missed tick", extra=event(job=job.name, tick=tick.plan_ms)
                )
                # At least the default window: a catch-up comes right after an outage, when the
                # worker may first have to register again.
                start_by = now + max(window, self._config.start_window)
                catch_up = DueTick(job, tick.plan_ms, catch_up=True, start_by_ms=start_by)
                self.fire(catch_up, now, owner=True)
            return
        self._record_missed(tick, why)

    def _record_missed(self, tick: DueTick, why: str) -> None:
        window = start_window_ms(tick.job, self._config.start_window)
        record = missed_record(
            tick.job,
            tick.plan_ms,
            worker=self._worker_id,
            now_ms=self._now_ms(),
            window_ms=window,
            why=why,
        )
        if tick.chain is not None:
            record = dataclasses.replace(record, chain=tick.chain, trigger="chain")
            self._chains.tell(tick.chain, str(RunStatus.MISSED), why)
        self._sink.add(record)
        self._stats.run(RunStatus.MISSED.value)

    async def note_outage_misses(self) -> None:
        """After a start: a job whose next tick after its last run is already past its window
        missed ticks while no worker ran it (every worker down). Record or catch up on it, as
        for a tick missed while running. Beside the scheduler, not before it: reading the last
        runs of 100,000 jobs must not hold up the first ticks."""
        # A routed job's speaker is found per tick (see tick_missed).
        jobs = [
            job
            for job in self._table.jobs()
            if job.enabled and (job.routed or self._view.owns(job.name))
        ]
        now = self._now_ms()
        for first in range(0, len(jobs), _OUTAGE_CHECK_CHUNK):
            chunk = jobs[first : first + _OUTAGE_CHECK_CHUNK]
            try:
                last_runs = await self._runlog.last_runs_of([job.name for job in chunk])
            except GdtsError as exc:
                log.warning("cannot look for ticks missed while no worker ran: %s", exc)
                return
            for job in chunk:
                summary = last_runs.get(job.name)
                if summary is None or not isinstance(summary.get("planTime"), int):
                    continue  # never ran: nothing says when it should have
                missed = next_plan(job, summary["planTime"])
                window = start_window_ms(job, self._config.start_window)
                if missed is not None and missed < now - window:
                    self.tick_missed(DueTick(job, missed))

    def fire(self, tick: DueTick, schedule_ms: int, *, owner: bool = False) -> None:
        """Claim the tick and, if won, run it, in a task of its own. The job's ``owner`` waits
        for a free run slot while the tick may start; any other worker only steps in with one."""
        task = asyncio.get_running_loop().create_task(self._fire(tick, schedule_ms, owner))
        self.fires.add(task)
        task.add_done_callback(self.fires.discard)

    async def _fire(self, tick: DueTick, schedule_ms: int, owner: bool) -> None:
        try:
            if tick.job.links and tick.chain is None:
                # A chain run's head: its tick starts the chain run, which runs the job itself
                # as one of its steps (no run slot: nothing runs here yet).
                window = tick.start_deadline(self._config.start_window) - tick.plan_ms
                await self._chains.start(tick, window)
                return
            if not await self._take_slot(tick, owner):
                return
            freed = False
            try:
                async with self._claims.hold(tick) as claimed:
                    if claimed is None:
                        return
                    # The job's version the claim was made from, which may be newer.
                    record, last = await self._runs.run(
                        claimed,
                        schedule_ms,
                        on_retry=functools.partial(self._claims.mark_attempt, claimed),
                    )
                    # The run is over: its slot is free before the claim's release is confirmed.
                    freed = True
                    self._slots.give_back()
                    if claimed.chain is not None:
                        # Before the release: a worker that dies before telling leaves a
                        # running marker whose loss tells instead (see chainruns).
                        await self._chains.step_ended(claimed.chain, last.status, last.err)
            finally:
                if not freed:
                    self._slots.give_back()
        except Exception:
            # A bug must cost one run, never the worker and every other running job with it.
            tags = event(job=tick.job.name, tick=tick.plan_ms)
            log.exception("run failed inside the worker", extra=tags)
            return
        finally:
            if tick.catch_up:
                self._catching_up.discard(tick.job.name)
        if record.start_time is not None:
            self._stats.fire_lag.observe(max(0.0, (record.start_time - tick.plan_ms) / 1000))

    async def _take_slot(self, tick: DueTick, owner: bool) -> bool:
        """A run slot for the tick. At its cap a worker claims nothing: the owner waits for a
        run to end while the tick may start, and others may step in meanwhile; a tick that
        still found no slot anywhere is recorded missed, saying so."""
        if self._slots.try_take():
            return True
        self._stats.claim("capacity")
        if not owner:
            return False
        window_ends = tick.start_deadline(self._config.start_window)
        # The worker's stop closes the slots, which ends this wait (see Worker.run).
        if await self._slots.take(max(0.0, (window_ends - self._now_ms()) / 1000)):
            if not self._view.tick_claimed(tick.job.name, tick.job.generation, tick.plan_ms):
                return True
            self._slots.give_back()  # another worker took it while we waited
            return False
        if not self._view.tick_claimed(tick.job.name, tick.job.generation, tick.plan_ms):
            self._stats.missed_ticks.inc()
            why = ALL_AT_CAPACITY if self._view.others_full() else OWNER_AT_CAPACITY
            log.warning("tick missed: %s", why, extra=event(job=tick.job.name, tick=tick.plan_ms))
            self.tick_missed(tick, why)
        return False
