"""The worker process: schedules every job locally, claims each tick in etcd, runs what it wins,
and writes the results to MongoDB. Owns every background task it starts."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
from collections import defaultdict, deque
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from gdts.config import WorkerConfig, parse_listen
from gdts.errors import GdtsError
from gdts.etcd import ETCD_ERRORS, etcd_errors, open_etcd
from gdts.job import Job, jobs_digest
from gdts.keys import KeyLayout
from gdts.logs import event
from gdts.mongo import open_mongo
from gdts.runlog import RunLog
from gdts.runrecord import RunRecord, RunStatus
from gdts.worker.clusterwatch import YIELD_EVERY, ClusterWatch
from gdts.worker.executor import ExecResult, RunningCommand
from gdts.worker.httpjob import RunningRequest
from gdts.worker.lock import Claim, ClaimOutcome, TickClaimer
from gdts.worker.logsink import LogSink
from gdts.worker.lostruns import LostRun, LostRunDetector, marker_plan
from gdts.worker.outcome import decide
from gdts.worker.owner import owner_of
from gdts.worker.probes import create_probe_app
from gdts.worker.registration import Registration
from gdts.worker.runas import JobUser, job_user
from gdts.worker.spill import SpillDir
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick, TickTable, next_plan

log = logging.getLogger(__name__)

_RELEASE_RETRY_MAX_S = 5.0
_RETRIED = frozenset((RunStatus.FAILED, RunStatus.TIMEOUT))
_OUTAGE_CHECK_CHUNK = 5000  # job names per MongoDB query when looking for outage misses
_MONGO_CHECK_EVERY_S = 10.0
_MONGO_STALE_S = 3 * _MONGO_CHECK_EVERY_S
# How often a tick waiting for the one before it checks that our lease is still confirmed.
_FENCE_CHECK_S = 1.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """``await Worker(config).run(stop)`` runs until ``stop`` is set, then drains and returns."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.worker_id = config.worker_id or default_worker_id()
        self._keys = KeyLayout(config.etcd_prefix)
        self._table = TickTable()
        self._table_changed = asyncio.Event()
        # job -> its runs going on here, each with its planned time
        self._running: defaultdict[str, dict[RunningCommand | RunningRequest, int]] = defaultdict(
            dict
        )
        self._fires: set[asyncio.Task[None]] = set()
        self._workers: dict[str, int] = {}  # live worker id -> its lease, from etcd
        self._owned: dict[str, bool] = {}  # job -> whether we own it, for the current workers
        # Ticks of jobs another worker owns: (takeover deadline, sequence, tick), checked then.
        self._takeovers: list[tuple[int, int, DueTick]] = []
        self._takeover_seq = 0
        self._run_requests: set[bytes] = set()  # POST /job/run requests not yet claimed
        self._catching_up: set[str] = set()  # jobs with a catch-up run under way here
        self._lost = LostRunDetector(horizon_ms=max(10_000, 2000 * config.worker_lease_ttl))
        self._mongo_ok_at = -float("inf")
        self._table_version = 0  # bumped on every change, so readiness hashes only when needed
        self._digest: tuple[int, str] = (-1, "")
        self._stopping = False  # set on SIGTERM: claim nothing new
        self._stop_requested = asyncio.Event()  # the same, for waits to end on
        self._killing_all = False  # set when the drain timed out: kill whatever starts now
        # job -> (when its last kill marker arrived, the planned time it kills runs before or
        # None for all of them)
        self._killed_at: dict[str, tuple[int, int | None]] = {}
        self._claims: dict[str, Claim] = {}  # job -> claim of its run going here
        # job -> its latest tick going through this worker (see _Turn)
        self._turns: dict[str, _Turn] = {}
        # job -> the removal of its last run's running marker, while etcd has not confirmed it
        self._releasing: dict[str, asyncio.Task[None]] = {}
        # From the running-marker watch: which jobs run anywhere, and which ticks were claimed
        # (kept for two start windows), so a non-owner decides to step in without asking etcd.
        self._running_anywhere: dict[str, bytes] = {}
        self._claimed_ticks: set[tuple[str, int]] = set()
        # job -> when (our clock) the watch last showed a claim of it, by any worker
        self._last_claim_seen: dict[str, int] = {}
        self._claimed_order: deque[tuple[int, tuple[str, int]]] = deque()
        self._job_user: JobUser | None = None  # who command jobs run as; None: this process
        self.stats = WorkerStats(
            jobs=lambda: len(self._table),
            running=lambda: sum(len(c) for c in self._running.values()),
            buffered=lambda: len(self._sink),
            spilled_segments=lambda: self._sink.spilled_segments,
            result_write_errors=lambda: self._sink.write_errors,
            watch_restarts=lambda: self._watch.interruptions + max(0, self._watch.full_reads - 1),
            lease_alive=lambda: 1.0 if self._registration.can_claim() else 0.0,
        )

    def now_ms(self) -> int:
        """This worker's clock; ``clockOffset`` shifts it for fault tests."""
        return time.time_ns() // 1_000_000 + self.config.clock_offset

    # -- ClusterListener: called by ClusterWatch for every change in etcd -------------------------

    async def jobs_reset(self, jobs: list[Job]) -> None:
        wanted = {job.name for job in jobs}
        for job in self._table.jobs():
            if job.name not in wanted:
                self._table.remove(job.name)
        now = self.now_ms()
        for index, job in enumerate(jobs):
            self._table.put(job, now)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # computing next ticks for 100,000 jobs takes seconds
        self._table_version += 1
        self._table_changed.set()

    def job_saved(self, job: Job) -> None:
        if self._table.put(job, self.now_ms()):
            self._table_version += 1
            self._table_changed.set()

    def job_deleted(self, name: str) -> None:
        self._killed_at.pop(name, None)
        self._last_claim_seen.pop(name, None)
        if self._table.remove(name):
            self._table_version += 1
            self._table_changed.set()

    def kill_requested(self, name: str, before_plan_ms: int | None = None) -> None:
        # Remembered, so a run whose claim was in flight when the kill came is killed at spawn.
        self._killed_at[name] = (self.now_ms(), before_plan_ms)
        runs = self._running.get(name, {})
        doomed = [r for r, plan in runs.items() if before_plan_ms is None or plan < before_plan_ms]
        if doomed:
            log.info("killing %d running process group(s)", len(doomed), extra=event(job=name))
            for runner in doomed:
                runner.kill()

    def _kill_pending(self, name: str, plan_ms: int, since_ms: int) -> bool:
        """Whether a kill that arrived at or after ``since_ms`` applies to the run of plan_ms."""
        at, before = self._killed_at.get(name, (-1, None))
        return at >= since_ms and (before is None or plan_ms < before)

    def workers_reset(self, workers: dict[str, int]) -> None:
        self._workers = dict(workers)
        self._owned.clear()

    def worker_registered(self, worker_id: str, lease: int) -> None:
        if worker_id not in self._workers:
            self._owned.clear()
        self._workers[worker_id] = lease

    def worker_gone(self, worker_id: str, lease: int, revision: int) -> None:
        if self._workers.get(worker_id) == lease:
            del self._workers[worker_id]
            self._owned.clear()
        for run in self._lost.registration_deleted(lease, revision, self.now_ms()):
            self._record_lost(run)

    def running_reset(self, markers: dict[str, bytes], other_runs: list[tuple[str, bytes]]) -> None:
        # Only a job's one marker says "the job is running" (what blocks a takeover); a run of
        # a job whose runs may overlap has its own, which still tells its tick was claimed.
        self._running_anywhere = dict(markers)
        for job_name, value in [*markers.items(), *other_runs]:
            self._note_claimed(job_name, value)

    def run_requests_reset(self, requests: list[tuple[str, int, bytes]]) -> None:
        self._run_requests.clear()
        for name, requested_ms, key in requests:
            self.run_requested(name, requested_ms, key)

    def run_requested(self, job_name: str, requested_ms: int, key: bytes) -> None:
        """POST /job/run: the job's owner claims the run at once, as it would a tick; any other
        worker steps in after takeoverDelay if the request is still there."""
        job = self._table.get(job_name)
        if job is None or key in self._run_requests or self._stopping:
            return
        self._run_requests.add(key)
        tick = DueTick(job, requested_ms, run_request=key)
        now = self.now_ms()
        if self._owns(job_name):
            self._start_fire(tick, now)
        else:
            self._defer_takeover(tick, now + self.config.takeover_delay)
            self._table_changed.set()  # the scheduler's next wake-up may now be earlier

    def run_request_gone(self, key: bytes) -> None:
        self._run_requests.discard(key)

    def running_marker_put(self, job_name: str, value: bytes, exclusive: bool = True) -> None:
        if exclusive:
            self._running_anywhere[job_name] = value
        self._note_claimed(job_name, value)

    def _note_claimed(self, job_name: str, value: bytes) -> None:
        plan_ms = marker_plan(value)
        if plan_ms is None:
            return
        now = self.now_ms()
        self._last_claim_seen[job_name] = now
        key = (job_name, plan_ms)
        if key not in self._claimed_ticks:
            self._claimed_ticks.add(key)
            self._claimed_order.append((now, key))
        horizon = now - 2 * self.config.start_window
        while self._claimed_order and self._claimed_order[0][0] < horizon:
            self._claimed_ticks.discard(self._claimed_order.popleft()[1])

    def running_marker_gone(
        self, job_name: str, lease: int, revision: int, value: bytes, exclusive: bool = True
    ) -> None:
        if exclusive and self._running_anywhere.get(job_name) == value:
            del self._running_anywhere[job_name]
        now = self.now_ms()
        self._lost.expire(now)
        run = self._lost.marker_deleted(job_name, lease, revision, value, now)
        if run is not None:
            self._record_lost(run)

    def _record_lost(self, run: LostRun) -> None:
        # One live worker reports (the lowest id, as every worker sees it); should two views
        # differ for a moment, the run log's unique index keeps a single record.
        if min([*self._workers, self.worker_id]) != self.worker_id:
            return
        job = self._table.get(run.job_name)
        log.warning(
            "run lost: worker %s died while running it", run.worker,
            extra=event(job=run.job_name, tick=run.plan_ms),
        )  # fmt: skip
        self.stats.lost_runs.inc()
        self.stats.runs.inc(status=RunStatus.LOST.value)
        self._sink.add(
            RunRecord(
                job_name=run.job_name,
                command=job.command if job is not None else "",
                worker=run.worker,
                plan_time=run.plan_ms,
                schedule_time=run.claimed_ms or run.plan_ms,
                start_time=run.claimed_ms,
                end_time=self.now_ms(),
                output="",
                err=f"worker {run.worker} lost its lease while running this job; "
                "what the command did is unknown",
                exit_code=None,
                status=RunStatus.LOST,
            )
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        # Before touching etcd: a worker that may not run jobs must never claim one.
        self._job_user = job_user(config.run_as, config.allow_root, os.geteuid())
        # Read once, not per run: the worker's own GDTS_* settings (etcd password, MongoDB URI)
        # are not the job's.
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("GDTS_")}
        async with contextlib.AsyncExitStack() as stack:
            etcd = open_etcd(config)
            stack.push_async_callback(etcd.close)
            mongo = open_mongo(config.mongodb_uri, config.mongodb_connect_timeout)
            stack.push_async_callback(mongo.close)
            self._runlog = RunLog(mongo, config.mongodb_database)
            # One session for every HTTP job: connection pooling, closed after the drain.
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
            stack.push_async_callback(self._http.close)
            self._sink = LogSink(
                self._runlog,
                batch_size=config.job_log_batch_size,
                commit_timeout_s=config.job_log_commit_timeout / 1000,
                limit=config.job_log_buffer_limit,
                spill=SpillDir(Path(config.spill_dir)),
            )
            self._registration = Registration(
                etcd,
                self._keys,
                self.worker_id,
                {
                    "id": self.worker_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "startedAt": self.now_ms(),
                },
                config.worker_lease_ttl,
            )
            self._claimer = TickClaimer(
                etcd, self._keys, self.worker_id, config.start_window / 1000
            )
            stack.push_async_callback(self._claimer.close)
            self._watch = ClusterWatch(etcd, self._keys, self)
            await self._registration.register()
            stack.push_async_callback(self._registration.revoke)
            if config.http_listen:
                await self._start_probes(stack)
            async with asyncio.TaskGroup() as group:
                self._group = group
                side_tasks = [
                    group.create_task(self._registration.keep_alive(), name="keepalive"),
                    group.create_task(self._watch.run(), name="watch"),
                    group.create_task(self._sink.run(), name="results"),
                    group.create_task(self._check_mongo(mongo), name="mongo-check"),
                    group.create_task(self._restore_markers(), name="marker-restore"),
                    group.create_task(self._note_outage_misses(), name="outage-check"),
                ]
                scheduler = group.create_task(self._schedule(), name="scheduler")
                log.info("worker %s started", self.worker_id)
                await stop.wait()
                log.info("worker %s stopping", self.worker_id)
                self._stopping = True
                self._stop_requested.set()
                await _cancel(scheduler)
                await self._drain()
                # The lease is kept alive through the flush: revoked, not expired, at the end.
                await _cancel(*side_tasks[1:])
                saved = await self._sink.flush(
                    timeout_s=max(5.0, config.mongodb_connect_timeout / 1000)
                )
                log.info(
                    "results flushed (%s; %d written in all)",
                    "all saved" if saved else "SOME LOST", self._sink.written,
                )  # fmt: skip
                await _cancel(side_tasks[0])
        log.info("worker %s stopped", self.worker_id)

    async def _start_probes(self, stack: contextlib.AsyncExitStack) -> None:
        host, port = parse_listen(self.config.http_listen)
        # No access log: a scrape every few seconds would drown the worker's own events.
        runner = web.AppRunner(
            create_probe_app(self._readiness, self.stats.registry), access_log=None
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, host, port).start()
        log.info("probes and metrics on http://%s:%d", host, port)

    def _readiness(self) -> dict[str, Any]:
        etcd_ok = self._registration.can_claim() and self._watch.synced.is_set()
        mongo_ok = time.monotonic() - self._mongo_ok_at < _MONGO_STALE_S
        return {
            "ready": etcd_ok and mongo_ok,
            "etcd": etcd_ok,
            "mongodb": mongo_ok,
            "worker": self.worker_id,
            "jobs": len(self._table),
            "jobsDigest": self._jobs_digest(),
            "running": sum(len(c) for c in self._running.values()),
        }

    def _jobs_digest(self) -> str:
        if self._digest[0] != self._table_version:
            self._digest = (self._table_version, jobs_digest(self._table.jobs()))
        return self._digest[1]

    async def _check_mongo(self, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        """Every few seconds: is MongoDB answering, and how far is our clock from its clock?"""
        warned = False
        while True:
            try:
                sent = self.now_ms()
                reply = await mongo.admin.command("hello")
                received = self.now_ms()
                self._mongo_ok_at = time.monotonic()
                server: datetime = reply["localTime"]
                offset_ms = (sent + received) / 2 - server.timestamp() * 1000
                self.stats.clock_offset.set(offset_ms / 1000)
                # The true offset lies within half the round trip of the estimate: a busy event
                # loop stretches the round trip, and must not read as a wrong clock.
                uncertainty_ms = (received - sent) / 2
                off = abs(offset_ms) - uncertainty_ms > self.config.clock_skew_warning
                if off and not warned:
                    log.warning(
                        "this worker's clock is %.1fs off MongoDB's clock; ticks fire by this "
                        "worker's clock, so fix its time sync", offset_ms / 1000,
                    )  # fmt: skip
                warned = off
            except PyMongoError as exc:
                log.debug("MongoDB check failed: %s", exc)
            await asyncio.sleep(_MONGO_CHECK_EVERY_S)

    async def _drain(self) -> None:
        """Let running jobs finish within the drain timeout; kill the rest and wait for them."""
        if not self._fires:
            return
        log.info(
            "waiting up to %.0fs for %d running job(s)",
            self.config.drain_timeout / 1000, len(self._fires),
        )  # fmt: skip
        _, pending = await asyncio.wait(self._fires, timeout=self.config.drain_timeout / 1000)
        if pending:
            log.warning("killing %d job(s) still running after the drain timeout", len(pending))
            self._killing_all = True
            for commands in self._running.values():
                for command in commands:
                    command.kill()
            _, pending = await asyncio.wait(
                pending, timeout=self.config.kill_grace_period / 1000 + 5
            )
        # Whatever is left waits on etcd (a claim or a release); results are already in the
        # sink, and revoking the lease removes the markers.
        await _cancel(*pending)

    # -- scheduling -----------------------------------------------------------------------------

    async def _schedule(self) -> None:
        await self._watch.synced.wait()
        window = self.config.start_window
        while True:
            now = self.now_ms()
            due, missed = self._table.pop_due(
                now, now - window, window_of=_misfire_grace_ms, on_missed=self._tick_missed
            )
            if missed:
                self.stats.missed_ticks.inc(missed)
                log.warning("%d job(s) skipped ticks older than the start window", missed)
            takeover_at = now - self.config.takeover_delay
            for tick in due:
                if self._owns(tick.job.name):
                    self._start_fire(tick, now)
                elif tick.plan_ms > takeover_at:
                    self._defer_takeover(tick, tick.plan_ms + self.config.takeover_delay)
                elif self._should_take_over(tick, now):
                    self._start_fire(tick, now)
            while self._takeovers and self._takeovers[0][0] <= now:
                tick = heapq.heappop(self._takeovers)[2]
                if self._should_take_over(tick, now):
                    self._start_fire(tick, now)
            next_ms = self._table.next_ms()
            if self._takeovers:
                first = self._takeovers[0][0]
                next_ms = first if next_ms is None else min(next_ms, first)
            # Never sleep more than a second: the wait runs on the monotonic clock, and a step
            # of the wall clock must not turn the next tick into a miss.
            delay = 1.0 if next_ms is None else min(1.0, max(0.0, (next_ms - self.now_ms()) / 1000))
            self._table_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._table_changed.wait(), delay)

    def _window_ms(self, job: Job) -> int:
        """How late a tick of this job may still start: its misfireGrace, or startWindow."""
        grace = _misfire_grace_ms(job)
        return self.config.start_window if grace is None else grace

    def _tick_missed(self, tick: DueTick) -> None:
        """A tick could not start within its window. The job's owner speaks for it: a job with
        catchUp gets one catch-up run now (not one per missed tick: never a burst), any other
        job a run record with status missed."""
        job = tick.job
        if tick.catch_up or self._stopping or not self._owns(job.name):
            return
        now = self.now_ms()
        if job.catch_up:
            if job.name not in self._catching_up:
                self._catching_up.add(job.name)
                log.info(
                    "catching up on a missed tick", extra=event(job=job.name, tick=tick.plan_ms)
                )
                # At least the default window: a catch-up comes right after an outage, when the
                # worker may first have to register again.
                window = max(self._window_ms(job), self.config.start_window)
                catch_up = DueTick(job, tick.plan_ms, catch_up=True, start_by_ms=now + window)
                self._start_fire(catch_up, now)
            return
        window_s = self._window_ms(job) / 1000
        self._sink.add(
            RunRecord(
                job_name=job.name,
                command=job.command,
                worker=self.worker_id,
                plan_time=tick.plan_ms,
                schedule_time=now,
                start_time=None,
                end_time=now,
                output="",
                err=f"not started within {window_s:g} s of its planned time, so not run late "
                "(no worker could start it: stopped, stalled, or cut off from etcd)",
                exit_code=None,
                status=RunStatus.MISSED,
            )
        )
        self.stats.runs.inc(status=RunStatus.MISSED.value)

    async def _note_outage_misses(self) -> None:
        """After a start: a job whose next tick after its last run is already past its window
        missed ticks while no worker ran it (every worker down). Record or catch up on it, as
        for a tick missed while running. Beside the scheduler, not before it: reading the last
        runs of 100,000 jobs must not hold up the first ticks."""
        await self._watch.synced.wait()
        jobs = [job for job in self._table.jobs() if job.enabled and self._owns(job.name)]
        now = self.now_ms()
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
                if missed is not None and missed < now - self._window_ms(job):
                    self._tick_missed(DueTick(job, missed))

    def _start_fire(self, tick: DueTick, schedule_ms: int) -> None:
        task = self._group.create_task(self._fire(tick, schedule_ms))
        self._fires.add(task)
        task.add_done_callback(self._fires.discard)

    async def _fire(self, tick: DueTick, schedule_ms: int) -> None:
        try:
            await self._claim_and_run(tick, schedule_ms)
        finally:
            if tick.catch_up:
                self._catching_up.discard(tick.job.name)

    async def _claim_and_run(self, tick: DueTick, schedule_ms: int) -> None:
        tags = event(job=tick.job.name, tick=tick.plan_ms)
        turn = _Turn()
        try:
            claim = await self._claim(tick, turn)
            if claim is None:
                return
            self._claims[tick.job.name] = claim
            try:
                record = await self._run_attempts(tick, schedule_ms)
            finally:
                self._claims.pop(tick.job.name, None)
                release = self._track_release(claim)
                turn.end()
                # Shielded: even on cancellation the marker must go, or the job never runs again.
                await asyncio.shield(release)
        except Exception:
            # A bug must cost one run, never the worker and every other running job with it.
            log.exception("run failed inside the worker", extra=tags)
            return
        finally:
            turn.end()
            if self._turns.get(tick.job.name) is turn:
                del self._turns[tick.job.name]
        if record.start_time is not None:
            self.stats.fire_lag.observe(max(0.0, (record.start_time - tick.plan_ms) / 1000))

    async def _run_attempts(self, tick: DueTick, schedule_ms: int) -> RunRecord:
        """Run the claimed tick, and again while it fails and the job's ``retries`` allow:
        after ``retryBackoff`` seconds, doubling, never when the retry would start at or after
        the job's next planned tick. Every attempt is logged; the claim holds throughout.
        Returns the first attempt's record."""
        job, plan_ms = tick.job, tick.plan_ms
        tags = event(job=job.name, tick=plan_ms)
        first: RunRecord | None = None
        attempt = 1
        while True:
            started_ms = self.now_ms()
            trigger = "manual" if tick.run_request else "catchup" if tick.catch_up else "schedule"
            record = await self._execute(
                job, plan_ms, schedule_ms, trigger=trigger, attempt=attempt
            )
            # Into the sink before the release: if etcd is down at shutdown, the release may be
            # abandoned, but the result is flushed.
            self._sink.add(record)
            self.stats.runs.inc(status=record.status.value)
            first = first or record
            if record.status not in _RETRIED or attempt > job.retries:
                return first
            delay_s = job.retry_backoff_s * 2 ** (attempt - 1)
            next_tick = next_plan(job, plan_ms) if tick.run_request is None else None
            if next_tick is not None and self.now_ms() + delay_s * 1000 >= next_tick:
                log.info("no retry: it would reach the next tick", extra=tags)
                return first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay_s)
            killed = self._kill_pending(job.name, plan_ms, started_ms)
            if self._stopping or killed or self._table.get(job.name) is None:
                return first  # stopping, killed during the backoff, or deleted
            attempt += 1
            log.info("retrying (attempt %d of %d)", attempt, job.retries + 1, extra=tags)

    def _owns(self, job_name: str) -> bool:
        owned = self._owned.get(job_name)
        if owned is None:
            owner = owner_of(job_name, [*self._workers, self.worker_id])
            owned = self._owned[job_name] = owner == self.worker_id
        return owned

    def _defer_takeover(self, tick: DueTick, at_ms: int) -> None:
        self._takeover_seq += 1
        heapq.heappush(self._takeovers, (at_ms, self._takeover_seq, tick))

    def _should_take_over(self, tick: DueTick, now: int) -> bool:
        """The job's owner claims at once; any other worker, ``takeoverDelay`` later, claims
        only if, as far as the watch shows, nobody did and the job is not running anywhere.
        (The owner may have changed meanwhile: the new owner's claim shows the same way.)"""
        job_name = tick.job.name
        if self._table.get(job_name) is None:  # deleted meanwhile
            return False
        if tick.run_request is not None and tick.run_request not in self._run_requests:
            return False  # another worker claimed the manual run (its claim deleted the request)
        if self._stopping or (job_name, tick.plan_ms) in self._claimed_ticks:
            self.stats.claims.inc(outcome="deferred")
            return False
        if job_name in self._running_anywhere and tick.job.concurrency == "forbid":
            self.stats.claims.inc(outcome="busy")
            return False
        delay = self.config.takeover_delay
        seen = self._last_claim_seen.get(job_name)
        if seen is not None and now - seen < delay:
            # The job's ticks are being claimed, only late (a loaded machine, a slow etcd): the
            # owner is alive and behind, and stepping in would add claims that mostly lose, and
            # load where there is already too much. Look again later, while the tick may start.
            self.stats.claims.inc(outcome="deferred")
            window_ends = tick.start_by_ms or tick.plan_ms + self._window_ms(tick.job)
            if now + delay < window_ends:
                self._defer_takeover(tick, now + delay)
            return False
        log.info("stepping in for the job's owner", extra=event(job=job_name, tick=tick.plan_ms))
        return True

    async def _claim(self, tick: DueTick, turn: _Turn) -> Claim | None:
        """Claim the tick, retrying passing failures until its start window closes."""
        exclusive = tick.job.concurrency != "allow"
        if not exclusive:
            claim = await self._claim_now(tick, exclusive)
            turn.claimed(claim is not None)
            return claim
        name = tick.job.name
        earlier = self._turns.get(name)
        self._turns[name] = turn
        claim = None
        try:
            if earlier is None or await self._after(earlier, tick):
                claim = await self._claim_now(tick, exclusive)
            return claim
        finally:
            turn.claimed(claim is not None)

    async def _after(self, earlier: _Turn, tick: DueTick) -> bool:
        """Wait for the job's earlier tick here to be out of the way: its claim answered, its
        run ended, its running marker removed. Ticks of one job then claim in order, and each
        claim finds the marker gone instead of asking etcd again and again while the run before
        goes on (under load, those retries were most of etcd's work). False: that run is still
        going ``busyWait`` later (policy forbid), so this tick is skipped, as a claim that found
        it would have been."""
        window_ends = tick.start_by_ms or tick.plan_ms + self._window_ms(tick.job)

        def left_s() -> float:
            return max(0, window_ends - self.now_ms()) / 1000

        await self._wait_while_claimable(earlier.won, left_s())
        # Under "replace" the claim goes ahead and has the run before killed.
        replacing = tick.job.concurrency == "replace"
        if not replacing and earlier.won.done() and earlier.won.result():
            await asyncio.wait({earlier.ended}, timeout=min(left_s(), self.config.busy_wait / 1000))
            if not earlier.ended.done():
                self.stats.claims.inc(outcome="busy")
                return False
        releasing = self._releasing.get(tick.job.name)
        if releasing is not None:
            # The run before has ended, but its marker is still on its way out (etcd is slow,
            # or the release waits behind a slow batch).
            await self._wait_while_claimable(releasing, left_s())
        return True

    async def _wait_while_claimable(self, waited: asyncio.Future[Any], timeout_s: float) -> None:
        """Wait for ``waited``, but not once our lease is in doubt (cut off from etcd): what we
        wait for may then never come, and the claim that follows fences itself and says so."""
        deadline = time.monotonic() + timeout_s
        while not waited.done() and self._registration.can_claim():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.wait({waited}, timeout=min(left, _FENCE_CHECK_S))

    async def _claim_now(self, tick: DueTick, exclusive: bool) -> Claim | None:
        marker = self._claimer.marker(tick.plan_ms, self.now_ms())
        outcome, unanswered = await self._try_claim(tick, marker)
        if outcome is ClaimOutcome.WON:
            return Claim(ClaimOutcome.WON, tick.job.name, tick.plan_ms, marker, exclusive)
        if outcome is None and unanswered:
            # Every attempt failed, and one whose answer was lost may have committed all the
            # same: its running marker would block this job on every worker for as long as our
            # lease lives. Remove it (only if it is ours, as on any release).
            lost = Claim(ClaimOutcome.WON, tick.job.name, tick.plan_ms, marker, exclusive)
            self._track_release(lost)
        return None

    async def _try_claim(self, tick: DueTick, marker: bytes) -> tuple[ClaimOutcome | None, bool]:
        """(WON, TAKEN or BUSY as etcd answered, or None when no answer came in time; whether
        an attempt went out and got no answer)."""
        job = tick.job
        tags = event(job=job.name, tick=tick.plan_ms)
        window_ends = tick.start_by_ms or tick.plan_ms + self._window_ms(job)
        # Set at the first busy answer: a tick waits busyWait for the run before it from when it
        # could first ask, so a claim that etcd answers late (the same stall also made the run
        # before it late) still gets its wait.
        busy_until: int | None = None
        replacing = job.concurrency == "replace"
        if replacing:
            # The run going on is being killed for this one: wait for it as long as the tick
            # may start.
            busy_until = window_ends
        kill_sent = False
        delay = 0.1
        unanswered = False
        while not self._stopping:
            remaining_s = (window_ends - self.now_ms()) / 1000
            if remaining_s <= 0:
                self.stats.missed_ticks.inc()
                log.warning("tick not claimed within its start window", extra=tags)
                self._tick_missed(tick)
                return None, unanswered
            if not self._registration.can_claim():
                # Self-fencing: our lease may already be gone in etcd; claim nothing on it.
                self.stats.claims.inc(outcome="fenced")
                log.warning("not claiming: lease not confirmed alive", extra=tags)
            else:
                try:
                    # No deadline of our own: each etcd call has its timeout, and a claim given
                    # up while its batch is in flight could still commit, leaving a running
                    # marker that nobody runs or removes.
                    with etcd_errors():
                        claim = await self._claimer.claim(
                            job.name, tick.plan_ms, self._registration.lease_id, marker,
                            once=job.one_shot and tick.run_request is None,
                            run_request=tick.run_request,
                            exclusive=job.concurrency != "allow",
                            window_s=(window_ends - tick.plan_ms) / 1000,
                        )  # fmt: skip
                    outcome = claim.outcome
                    if outcome is ClaimOutcome.WON and self.now_ms() > window_ends:
                        # Won, but too late to start: release it and count the tick missed.
                        self.stats.claims.inc(outcome="late")
                        self.stats.missed_ticks.inc()
                        log.warning("tick claimed after its start window; not run", extra=tags)
                        return None, True
                    if outcome is ClaimOutcome.BUSY and replacing and not kill_sent:
                        with etcd_errors():
                            await self._claimer.request_kill(job.name, before_plan_ms=tick.plan_ms)
                        kill_sent = True
                        log.info("replacing the run going on", extra=tags)
                    # BUSY: the previous run is still going. Runs that end a moment after the
                    # next tick (or a worker whose clock is ahead starting a later tick at the
                    # same instant) would otherwise turn into a skipped tick: retry a little.
                    if outcome is ClaimOutcome.BUSY and busy_until is None:
                        busy_until = self.now_ms() + min(
                            self.config.busy_wait, self.config.start_window
                        )
                    if (
                        outcome is not ClaimOutcome.BUSY
                        or busy_until is None
                        or self.now_ms() + delay * 1000 > busy_until
                    ):
                        self.stats.claims.inc(outcome=outcome.value)
                        return outcome, False
                except GdtsError as exc:
                    unanswered = True
                    self.stats.claims.inc(outcome="error")
                    self.stats.etcd_errors.inc(operation="claim")
                    log.warning("cannot claim (%s); retrying", exc, extra=tags)
            await asyncio.sleep(min(delay, max(0.0, (window_ends - self.now_ms()) / 1000)))
            delay = min(delay * 2, 1.0)
        return None, unanswered

    async def _execute(
        self,
        job: Job,
        plan_ms: int,
        schedule_ms: int,
        *,
        trigger: str = "schedule",
        attempt: int = 1,
    ) -> RunRecord:
        runner: RunningCommand | RunningRequest
        if job.kind == "http":
            runner = RunningRequest()
        else:
            runner = RunningCommand(self.config.kill_grace_period / 1000)
        self._running[job.name][runner] = plan_ms
        if self._killing_all or self._kill_pending(job.name, plan_ms, schedule_ms):
            runner.kill()  # the kill came while this run was being claimed
        timed_out = False

        def time_out() -> None:
            nonlocal timed_out
            timed_out = True
            runner.kill()

        loop = asyncio.get_running_loop()
        timer = loop.call_later(job.timeout_s, time_out) if job.timeout_s else None
        http_status: int | None = None
        exit_code: int | None = None
        try:
            if isinstance(runner, RunningRequest):
                assert job.http is not None
                http_result = await runner.run(
                    self._http,
                    job.http,
                    timeout_s=None,  # the timer above, as for commands
                    output_limit=self.config.output_limit,
                    env_headers={
                        "X-GDTS-Job": job.name,
                        "X-GDTS-Plan-Time": str(plan_ms),
                        "X-GDTS-Worker": self.worker_id,
                    },
                )
                http_status = http_result.status
                result = ExecResult(
                    http_result.start_ms, http_result.end_ms, http_result.output, None,
                    http_result.err, http_result.killed,
                )  # fmt: skip
            else:
                result = await runner.run(
                    self.config.bash_path, job.command, self._job_env(job, plan_ms),
                    self.config.output_limit, user=self._job_user,
                )  # fmt: skip
                exit_code = result.exit_code
        except Exception as exc:  # a bug of ours: record the run as failed, keep the worker
            log.exception("cannot run the job", extra=event(job=job.name, tick=plan_ms))
            at = time.time_ns() // 1_000_000
            result = ExecResult(at, at, "", None, f"worker error: {exc!r}", False)
        finally:
            if timer is not None:
                timer.cancel()
            self._running[job.name].pop(runner, None)
            if not self._running[job.name]:
                del self._running[job.name]
        outcome = decide(
            job,
            output=result.output,
            exit_code=exit_code,
            http_status=http_status,
            killed=result.killed,
            timed_out=timed_out,
        )
        err = result.err
        if timed_out:
            # What the kill did to a shell (its signal) is worth keeping; "killed" is not.
            detail = "" if http_status is None and job.kind == "http" else err
            detail = detail.removeprefix("killed on request; ").removeprefix("killed")
            err = "; ".join(filter(None, [outcome.err, detail]))
        elif outcome.err and outcome.err not in err:
            err = "; ".join(filter(None, [err, outcome.err]))
        offset = self.config.clock_offset
        return RunRecord(
            job_name=job.name,
            command=job.command if job.http is None else f"{job.http.method} {job.http.url}",
            worker=self.worker_id,
            plan_time=plan_ms,
            schedule_time=schedule_ms,
            start_time=result.start_ms + offset,
            end_time=result.end_ms + offset,
            output=result.output,
            err=err,
            exit_code=exit_code,
            status=outcome.status,
            trigger=trigger,
            attempt=attempt,
        )

    def _job_env(self, job: Job, plan_ms: int) -> dict[str, str]:
        env = dict(self._base_env)
        env.update(
            GDTS_JOB_NAME=job.name, GDTS_PLAN_TIME=str(plan_ms), GDTS_WORKER_ID=self.worker_id
        )
        return env

    def _track_release(self, claim: Claim) -> asyncio.Task[None]:
        """Release the claim in a task the job's next claim can wait for (see _claim)."""
        release = self._group.create_task(self._release(claim))
        name = claim.job_name
        self._releasing[name] = release

        def forget(task: asyncio.Task[None]) -> None:
            if self._releasing.get(name) is task:
                del self._releasing[name]

        release.add_done_callback(forget)
        return release

    async def _release(self, claim: Claim) -> None:
        delay = 0.2
        while True:
            try:
                await self._claimer.release(claim)
                return
            except ETCD_ERRORS as exc:
                if not self._registration.lease_id or self._stopping:
                    # Lease gone: the marker went with it; stopping: the revoke removes it.
                    return
                self.stats.etcd_errors.inc(operation="release")
                log.warning(
                    "cannot release running marker (%s); retrying", exc,
                    extra=event(job=claim.job_name, tick=claim.plan_ms),
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RELEASE_RETRY_MAX_S)

    async def _restore_markers(self) -> None:
        """After the lease was lost and a new one granted, put back the running markers of runs
        still going here, so the cluster keeps skipping those jobs' next ticks."""
        while True:
            await self._registration.new_lease.wait()
            self._registration.new_lease.clear()
            for claim in list(self._claims.values()):
                tags = event(job=claim.job_name, tick=claim.plan_ms)
                try:
                    with etcd_errors():
                        restored = await self._claimer.restore(claim, self._registration.lease_id)
                except GdtsError as exc:
                    log.warning("cannot restore running marker: %s", exc, extra=tags)
                    continue
                if not restored:
                    log.warning("another worker started this job while our lease was lost; "
                                "both runs go on", extra=tags)  # fmt: skip


class _Turn:
    """One tick of a job going through this worker, for the job's next tick to wait on."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.won: asyncio.Future[bool] = loop.create_future()  # the claim's answer
        self.ended: asyncio.Future[None] = loop.create_future()  # no run, or the run is over

    def claimed(self, won: bool) -> None:
        if not self.won.done():
            self.won.set_result(won)
        if not won:
            self.end()

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _misfire_grace_ms(job: Job) -> int | None:
    return None if job.misfire_grace_s is None else round(job.misfire_grace_s * 1000)
