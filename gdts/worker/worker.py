"""The worker process: schedules every job locally, claims each tick in etcd, runs what it wins,
and writes the results to MongoDB.

``Worker`` is the composition root: it builds the parts (scheduler, claim flow, runs, result
sink, registration, cluster watch) from the clients ``run_worker`` opens, listens to the
cluster watch and hands each change to the part it concerns, and owns the lifecycle: start,
drain on SIGTERM, flush, revoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pymongo import AsyncMongoClient

from gdts.clock import now_ms
from gdts.config import WorkerConfig, parse_listen, parse_uid_range
from gdts.errors import GdtsError
from gdts.etcd import EtcdClient, open_etcd
from gdts.job import Job, digest_of, job_digest_part
from gdts.keys import KeyLayout, KillOrder, RunningKey, bucket_of
from gdts.livelog import LiveLog
from gdts.logs import event
from gdts.mongo import open_mongo
from gdts.routing import Candidate, matches
from gdts.runlog import RunLog
from gdts.runrecord import RunStatus
from gdts.worker.capacity import RunSlots
from gdts.worker.chainruns import ChainRuns, read_step_request
from gdts.worker.claimflow import ClaimFlow
from gdts.worker.clusterview import ClusterView
from gdts.worker.clusterwatch import YIELD_EVERY, ClusterWatch
from gdts.worker.deadruns import DeadRunFinder
from gdts.worker.egress import EgressPolicy
from gdts.worker.guardian import Guardian
from gdts.worker.journal import ResultJournal
from gdts.worker.leasefence import LeaseFence
from gdts.worker.limitwatch import LimitWatch
from gdts.worker.liveflush import LiveOutput
from gdts.worker.lock import TickClaimer
from gdts.worker.logsink import LogSink
from gdts.worker.lostruns import LostRun
from gdts.worker.mongocheck import MongoCheck
from gdts.worker.probes import create_probe_app
from gdts.worker.records import lost_record
from gdts.worker.registration import Registration
from gdts.worker.runas import JobUser, check_run_uids, job_user, no_new_privileges
from gdts.worker.runs import Runs
from gdts.worker.runuids import RunUids
from gdts.worker.scheduler import Scheduler
from gdts.worker.secretwatch import SecretWatch
from gdts.worker.spill import SpillDir
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick, TickTable, start_window_ms

log = logging.getLogger(__name__)

# Results per journal file: a file goes once all of its results are stored.
JOURNAL_FILE_RESULTS = 1000


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker(config: WorkerConfig, stop: asyncio.Event) -> None:
    """Open the clients, run a worker until ``stop`` is set, drain, and close them."""
    # Before touching etcd: a worker that may not run jobs must never claim one.
    user, run_uids = _job_identity(config)
    # Read once, not per run: the worker's own GDTS_* settings (etcd password, MongoDB URI)
    # are not the job's.
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GDTS_")}
    async with contextlib.AsyncExitStack() as stack:
        etcd = open_etcd(config)
        stack.push_async_callback(etcd.close)
        mongo = open_mongo(config.mongodb_uri, config.mongodb_connect_timeout)
        stack.push_async_callback(mongo.close)
        # One session for every HTTP job: connection pooling, closed after the drain.
        http = EgressPolicy(config.http_job_allow).session()
        stack.push_async_callback(http.close)
        worker = Worker(
            config, etcd, mongo, http, job_user=user, run_uids=run_uids, base_env=base_env
        )
        await worker.run(stop)


def _job_identity(config: WorkerConfig) -> tuple[JobUser | None, RunUids | None]:
    """Who runs jobs: a uid of its own for each run (runUidRange), or one user for all
    (runAs), or this process (allowRoot, or a worker that is not root). Raises ConfigError
    when the worker must not start."""
    euid = os.geteuid()
    if config.run_uid_range:
        first, last = parse_uid_range(config.run_uid_range)
        check_run_uids(first, last, euid)
        no_new_privileges()
        log.info("each run gets a uid of its own from %d-%d", first, last)
        return None, RunUids(first, last, Path(config.run_dir).resolve())
    user = job_user(config.run_as, config.allow_root, euid)
    if user is not None and user.switch:
        no_new_privileges()  # a job cannot become root through a setuid binary
    return user, None


class Worker:
    """``await Worker(...).run(stop)`` runs until ``stop`` is set, then drains and returns."""

    def __init__(
        self,
        config: WorkerConfig,
        etcd: EtcdClient,
        mongo: AsyncMongoClient[dict[str, Any]],
        http: aiohttp.ClientSession,
        *,
        job_user: JobUser | None,
        base_env: Mapping[str, str],
        run_uids: RunUids | None = None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id = config.worker_id or default_worker_id()
        keys = KeyLayout(config.etcd_prefix)
        self._stopping = asyncio.Event()  # set on SIGTERM: claim nothing new
        self._view = ClusterView(worker_id, claim_memory_ms=2 * config.start_window)
        # The jobs of the buckets this worker looks after (as owner or backup) are scheduled, and
        # the routed jobs whose host group it is in.
        self._table = TickTable(in_scope=self._schedules)
        self._least_busy_jobs: set[str] = set()  # while there are some, say how busy we are
        self._table_version = 0  # bumped on every change, so readiness hashes only when needed
        self._digest: tuple[int, str] = (-1, "")  # (table version, digest of its jobs)
        self._digest_lock = asyncio.Lock()  # one digest at a time, shared by the askers
        self._buckets = self._view.partition.mine  # the buckets the table schedules
        # Buckets that came to this worker when another left: their jobs' ticks since then are
        # caught up on once the tick claims are read (the other handler may have died too).
        self._buckets_to_catch_up: set[int] = set()
        self._catch_up_since: int | None = None
        self._runlog = RunLog(mongo, config.mongodb_database)
        self._live_output = LiveOutput(
            LiveLog(mongo, config.mongodb_database),
            worker_id,
            going_on=lambda: self._runs.going_on(),
            interval_s=config.live_output_interval / 1000,
            after_s=config.live_output_after / 1000,
        )
        self._sink = LogSink(
            self._runlog,
            batch_size=config.job_log_batch_size,
            commit_timeout_s=config.job_log_commit_timeout / 1000,
            limit=config.job_log_buffer_limit,
            limit_bytes=config.job_log_buffer_bytes,
            spill_limit_bytes=config.spill_limit_bytes,
            spill=SpillDir(Path(config.spill_dir)),
            journal=ResultJournal(Path(config.spill_dir), rotate_every=JOURNAL_FILE_RESULTS),
            on_stored=self._live_output.stored,
        )
        self._registration = Registration(
            etcd,
            keys,
            worker_id,
            {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(),
             "startedAt": self.now_ms(), "maxConcurrentRuns": config.run_slots(),
             "atCapacity": False, "labels": config.labels, "weight": config.weight, "busy": 0},
            config.worker_lease_ttl,
        )  # fmt: skip
        self._claimer = TickClaimer(etcd, keys, worker_id, config.start_window / 1000)
        self._watch = ClusterWatch(etcd, keys, self)
        self._dead_runs = DeadRunFinder(
            etcd, keys, self._record_lost, partial_output=self._live_output.partial_output
        )
        self._slots = RunSlots(config.run_slots(), on_change=self._capacity_changed)
        self._capacity_said = asyncio.Event()  # the cap was reached or left: say so in etcd
        self.stats = WorkerStats(
            jobs=lambda: len(self._table),
            running=lambda: len(self._runs),
            buffered=lambda: len(self._sink),
            buffer_limit=lambda: config.job_log_buffer_limit,
            spilled_segments=lambda: self._sink.spilled_segments,
            result_write_errors=lambda: self._sink.write_errors,
            results_dropped=lambda: self._sink.dropped,
            watch_restarts=lambda: self._watch.interruptions + max(0, self._watch.full_reads - 1),
            lease_alive=lambda: 1.0 if self._registration.can_claim() else 0.0,
            run_slots=lambda: self._slots.cap,
            at_capacity=lambda: 1.0 if self._slots.full() else 0.0,
        )
        self._mongo_check = MongoCheck(
            mongo, self.now_ms, self.stats.clock_offset, config.clock_skew_warning
        )
        self._uids = run_uids
        self._guardian = None if run_uids is None else Guardian(run_uids.first, run_uids.last)
        self._limit_watch = None if run_uids is None else LimitWatch(run_uids.signal_run)
        self._secrets = SecretWatch(etcd, keys, config.secret_key_ring())
        self._runs = Runs(
            config,
            worker_id,
            self.now_ms,
            job_user=job_user,
            base_env=base_env,
            http=http,
            sink=self._sink,
            stats=self.stats,
            stopping=self._stopping,
            still_scheduled=self._table.__contains__,
            lease_alive=self._registration.can_claim,
            run_uids=run_uids,
            limit_watch=self._limit_watch,
            live_output=self._live_output,
            secrets=self._secrets,
        )
        self._lease_fence = LeaseFence(self._registration, self._runs, self._guardian)
        self._claims = ClaimFlow(
            config,
            self._claimer,
            self._registration,
            self.stats,
            self.now_ms,
            self._stopping,
            on_missed=self._tick_missed,
        )
        self._chain_runs = ChainRuns(
            etcd, keys, worker_id, self.now_ms, jobs=self._table.get, sink=self._sink
        )
        self._scheduler = Scheduler(
            config,
            worker_id,
            self.now_ms,
            table=self._table,
            view=self._view,
            claims=self._claims,
            chains=self._chain_runs,
            runs=self._runs,
            slots=self._slots,
            sink=self._sink,
            runlog=self._runlog,
            stats=self.stats,
            stopping=self._stopping,
        )

    def now_ms(self) -> int:
        """This worker's clock; ``clockOffset`` shifts it for fault tests."""
        return now_ms() + self.config.clock_offset

    def _schedules(self, job: Job) -> bool:
        """Whether this worker schedules the job: its bucket's owner or backup does (and speaks
        for a routed job's ticks when its host group has no live member); a routed job's
        members do, wherever its bucket is."""
        return self._view.handles(job.name) or (job.routed and self._member_of(job))

    def _member_of(self, job: Job) -> bool:
        return matches(job.host_group, self.config.labels)

    def _capacity_changed(self) -> None:
        self._capacity_said.set()

    async def _say_capacity(self) -> None:
        """Keep atCapacity in our registration true to the run slots, and, while a leastBusy
        job exists, busy true to the runs going on: at most once a second (a worker hovering
        at its cap, or running 200 jobs a second, must not write etcd on every run)."""
        said: dict[str, Any] = {"atCapacity": False, "busy": 0}
        while True:
            await self._capacity_said.wait()
            self._capacity_said.clear()
            now = {"atCapacity": self._slots.full()}
            if self._least_busy_jobs:
                now["busy"] = len(self._runs)
            changes = {key: value for key, value in now.items() if said[key] != value}
            if changes:
                try:
                    await self._registration.update(**changes)
                    said.update(changes)
                except GdtsError as exc:
                    log.warning("cannot say %s in etcd: %s", changes, exc)
                    self._capacity_said.set()  # try again
            await asyncio.sleep(1.0)

    def _tick_missed(self, tick: DueTick) -> None:
        self._scheduler.tick_missed(tick)

    # -- ClusterListener: called by ClusterWatch for every change in etcd -------------------------

    async def jobs_reset(self, jobs: list[Job]) -> None:
        self._least_busy_jobs = {job.name for job in jobs if job.routing == "leastBusy"}
        wanted = {job.name for job in jobs}
        for job in self._table.jobs():
            if job.name not in wanted:
                self._table.remove(job.name)
        now = self.now_ms()
        for index, job in enumerate(jobs):
            self._table.put(job, now)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # computing next ticks for 100,000 jobs takes seconds
        self._table_changed()

    def job_saved(self, job: Job) -> None:
        if job.routing == "leastBusy":
            self._least_busy_jobs.add(job.name)
            self._capacity_said.set()
        else:
            self._least_busy_jobs.discard(job.name)
        if self._table.put(job, self.now_ms()):
            self._table_changed()

    def job_deleted(self, name: str) -> None:
        self._least_busy_jobs.discard(name)
        self._runs.forget(name)
        self._view.job_deleted(name)
        if self._table.remove(name):
            self._table_changed()

    def _table_changed(self) -> None:
        self._table_version += 1
        self._scheduler.wake()

    def kill_requested(self, name: str, order: KillOrder) -> None:
        self._runs.kill(name, order)

    def workers_reset(self, workers: dict[str, int], cards: dict[str, Candidate]) -> None:
        self._view.workers_reset(workers, cards)
        self._rescope()

    def worker_registered(self, worker_id: str, lease: int, card: Candidate) -> None:
        self._view.worker_registered(worker_id, lease, card)
        self._rescope()

    def worker_gone(self, worker_id: str, lease: int, revision: int) -> None:
        self._view.worker_gone(worker_id, lease)
        if self._view.speaks_for_the_dead():
            self._dead_runs.worker_died(worker_id, lease, revision)
        self._rescope()

    def buckets(self) -> frozenset[int]:
        return self._buckets

    def _rescope(self) -> None:
        """The live workers changed: schedule the jobs of this worker's buckets alone, and have
        the watch follow their running markers."""
        buckets = self._view.partition.mine
        if buckets == self._buckets:
            return
        dropped = self._buckets - buckets
        gained = buckets - self._buckets
        self._buckets_to_catch_up = (self._buckets_to_catch_up | gained) - dropped
        if gained:
            # Since the last instant the dead worker may still have renewed its lease: ticks
            # planned after it had no live handler if the bucket's other one died as well.
            config = self.config
            since = self.now_ms() - config.worker_lease_ttl * 1000 - config.takeover_delay
            if self._catch_up_since is None or since < self._catch_up_since:
                self._catch_up_since = since
        self._buckets = buckets
        if dropped:
            for job in self._table.jobs():
                if bucket_of(job.name) in dropped and not self._schedules(job):
                    self._table.unschedule(job.name)
        self._watch.rescope()
        self._table_changed()

    async def running_reset(
        self, markers: list[tuple[RunningKey, bytes]], claims: list[tuple[str, int, int]]
    ) -> None:
        now = self.now_ms()
        self._view.running_reset(markers, now)
        self._view.note_claimed(claims, now)
        gained, self._buckets_to_catch_up = self._buckets_to_catch_up, set()
        since, self._catch_up_since = self._catch_up_since, None
        if not gained or since is None:
            return
        self._scheduler.catching_up(now)
        window = self.config.start_window
        for index, job in enumerate(self._table.jobs()):
            if bucket_of(job.name) in gained and not (job.routed and self._member_of(job)):
                # Ticks planned while both of the bucket's handlers were dead are late, not
                # lost (while they may still start); those seen claimed are skipped. (A routed
                # job's members schedule it wherever its bucket goes.)
                oldest = now - start_window_ms(job, window)
                self._table.schedule_from(job.name, max(since, oldest) - 1)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a first start gains every bucket: a million jobs
        self._table_changed()

    def running_marker_put(self, marker: RunningKey, value: bytes) -> None:
        self._view.marker_put(marker, value, self.now_ms())

    def running_marker_gone(self, marker: RunningKey) -> None:
        self._view.marker_gone(marker)

    def run_requests_reset(self, requests: list[tuple[str, int, bytes, bytes]]) -> None:
        self._view.run_requests.clear()
        for name, requested_ms, key, value in requests:
            self.run_requested(name, requested_ms, key, value)

    def run_requested(self, job_name: str, requested_ms: int, key: bytes, value: bytes) -> None:
        """POST /job/run asked for a run, or a chain run for one of its steps (``value``
        says which, see chainruns)."""
        job = self._table.get(job_name)
        if job is None or key in self._view.run_requests or self._stopping.is_set():
            return
        self._view.run_requests.add(key)
        chain = read_step_request(value)
        self._scheduler.run_requested(DueTick(job, requested_ms, run_request=key, chain=chain))

    def run_request_gone(self, key: bytes) -> None:
        self._view.run_requests.discard(key)

    def _record_lost(self, run: LostRun) -> None:
        log.warning(
            "run lost: worker %s died while running it", run.worker,
            extra=event(job=run.job_name, tick=run.plan_ms),
        )  # fmt: skip
        self.stats.lost_runs.inc()
        self.stats.run(RunStatus.LOST.value)
        job = self._table.get(run.job_name)
        self._sink.add(lost_record(run, job, now_ms=self.now_ms()))
        if run.chain is not None:
            self._chain_runs.tell(run.chain, str(RunStatus.LOST), f"worker {run.worker} died")

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._claimer.close)
            if self._uids is not None and self._guardian is not None:
                # Before the first claim: what an earlier life of this worker left is killed,
                # and from now on nothing of a run outlives this process.
                await self._uids.prepare()
                self._guardian.start()
                stack.push_async_callback(self._end_runs_for_good)
            if not await self._registration.register_when_reachable(stop):
                return
            stack.push_async_callback(self._registration.revoke)
            if config.http_listen:
                await self._start_probes(stack)
            stack.push_async_callback(self._abandon_runs)
            async with asyncio.TaskGroup() as group:
                side_tasks = [
                    group.create_task(self._registration.keep_alive(), name="keepalive"),
                    group.create_task(self._lease_fence.run(), name="lease-fence"),
                    group.create_task(self._watch.run(), name="watch"),
                    group.create_task(self._dead_runs.run(), name="dead-runs"),
                    group.create_task(self._sink.run(), name="results"),
                    group.create_task(self._live_output.run(), name="live-output"),
                    group.create_task(self._mongo_check.run(), name="mongo-check"),
                    group.create_task(self._claims.restore_markers(), name="marker-restore"),
                    group.create_task(self._note_outage_misses(), name="outage-check"),
                ]
                side_tasks.append(group.create_task(self._say_capacity(), name="capacity"))
                if self._uids is not None:
                    side_tasks.append(group.create_task(self._uids.run(), name="run-sweeper"))
                if self._limit_watch is not None:
                    side_tasks.append(group.create_task(self._limit_watch.run(), name="limits"))
                if self._secrets.can_open:  # without a key no run could use a secret
                    side_tasks.append(group.create_task(self._secrets.run(), name="secrets"))
                scheduler = group.create_task(self._schedule(), name="scheduler")
                log.info("worker %s started", self.worker_id)
                await stop.wait()
                log.info("worker %s stopping", self.worker_id)
                self._stopping.set()
                self._slots.close()  # ticks waiting for a run slot give up
                await _cancel(scheduler)
                await self._drain()
                await self._chain_runs.close()
                await self._claims.close()
                # The lease is kept alive through the flush: revoked, not expired, at the end.
                await _cancel(*side_tasks[1:])
                saved = await self._sink.flush(
                    timeout_s=max(5.0, config.mongodb_connect_timeout / 1000)
                )
                log.info(
                    "results flushed (%s; %d written in all)",
                    "all saved" if saved else "SOME LOST", self._sink.written,
                )  # fmt: skip
                await self._live_output.close(timeout_s=2.0)
                await _cancel(side_tasks[0])
        log.info("worker %s stopped", self.worker_id)

    async def _abandon_runs(self) -> None:
        """What still goes on when the worker leaves because a part of it failed: cancelled
        (which kills its process group) before the lease is revoked, so no run outlives it.
        After a drain there is nothing left."""
        await _cancel(*self._scheduler.fires)
        await self._chain_runs.close()
        await self._claims.close()

    async def _end_runs_for_good(self) -> None:
        """The last step: no process of any run is left, and the guardian ends."""
        assert self._uids is not None and self._guardian is not None
        await self._uids.close()
        await self._guardian.stop()

    async def _schedule(self) -> None:
        await self._watch.synced.wait()  # the first full read of the cluster is applied
        await self._scheduler.run()

    async def _note_outage_misses(self) -> None:
        await self._watch.synced.wait()
        await self._scheduler.note_outage_misses()

    async def _start_probes(self, stack: contextlib.AsyncExitStack) -> None:
        host, port = parse_listen(self.config.http_listen)
        # No access log: a scrape every few seconds would drown the worker's own events.
        runner = web.AppRunner(
            create_probe_app(self._readiness, self.stats.registry, self._held_jobs), access_log=None
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, host, port).start()
        log.info("probes and metrics on http://%s:%d", host, port)

    def _readiness(self) -> dict[str, Any]:
        etcd_ok = self._registration.can_claim() and self._watch.synced.is_set()
        mongo_ok = self._mongo_check.answering()
        return {
            "ready": etcd_ok and mongo_ok,
            "etcd": etcd_ok,
            "mongodb": mongo_ok,
            "worker": self.worker_id,
            "jobs": len(self._table),
            "running": len(self._runs),
            "maxConcurrentRuns": self._slots.cap,
            "atCapacity": self._slots.full(),
        }

    async def _held_jobs(self) -> dict[str, Any]:
        """GET /health/jobs: the jobs held and a digest of them, which two workers that hold
        the same jobs share (how a test or an operator sees that the workers converged). Not
        part of /health/ready, which probes call often: a million jobs take seconds to digest.
        Taken a thousand jobs at a time, so the loop goes on meanwhile."""
        async with self._digest_lock:
            for _ in range(3):  # the jobs may change while they are digested: try again
                if self._digest[0] == self._table_version:
                    break
                version, total = self._table_version, 0
                for index, job in enumerate(self._table.jobs()):
                    total += job_digest_part(job)
                    if index % YIELD_EVERY == YIELD_EVERY - 1:
                        await asyncio.sleep(0)
                if version == self._table_version:
                    self._digest = (version, digest_of(total))
        current = self._digest[0] == self._table_version
        return {
            "worker": self.worker_id,
            "jobs": len(self._table),
            "jobsDigest": self._digest[1] if current else None,  # None: changing all along
        }

    async def _drain(self) -> None:
        """Let running jobs finish within the drain timeout; kill the rest and wait for them."""
        fires = self._scheduler.fires
        if not fires:
            return
        log.info(
            "waiting up to %.0fs for %d running job(s)",
            self.config.drain_timeout / 1000, len(fires),
        )  # fmt: skip
        _, pending = await asyncio.wait(fires, timeout=self.config.drain_timeout / 1000)
        if pending:
            log.warning("killing %d job(s) still running after the drain timeout", len(pending))
            self._runs.kill_all()
            _, pending = await asyncio.wait(
                pending, timeout=self.config.kill_grace_period / 1000 + 5
            )
        # Whatever is left waits on etcd (a claim or a release); results are already in the
        # sink, and revoking the lease removes the markers.
        await _cancel(*pending)


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
