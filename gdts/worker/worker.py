"""The worker process: schedules every job locally, claims each tick in etcd, runs what it wins,
and writes the results to MongoDB. Owns every background task it starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import defaultdict

from gdts.config import WorkerConfig
from gdts.errors import GdtsError
from gdts.etcd import ETCD_ERRORS, EtcdClient, etcd_errors
from gdts.job import Job
from gdts.keys import KeyLayout
from gdts.runlog import RunLog, open_mongo
from gdts.runrecord import RunRecord, RunStatus
from gdts.worker.executor import RunningCommand, now_ms
from gdts.worker.jobsync import JobSync
from gdts.worker.lock import ClaimOutcome, TickClaimer
from gdts.worker.logsink import LogSink
from gdts.worker.registration import Registration
from gdts.worker.ticktable import DueTick, TickTable

log = logging.getLogger(__name__)

_RELEASE_RETRY_MAX_S = 5.0


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
        self._running: defaultdict[str, set[RunningCommand]] = defaultdict(set)
        self._fires: set[asyncio.Task[None]] = set()
        self._start_window_ms = config.start_window
        self.jobs_with_missed_ticks = 0

    # -- JobListener: called by JobSync for every change in etcd --------------------------------

    def jobs_reset(self, jobs: list[Job]) -> None:
        self._table.replace_all(jobs, now_ms())
        self._table_changed.set()

    def job_saved(self, job: Job) -> None:
        if self._table.put(job, now_ms()):
            self._table_changed.set()

    def job_deleted(self, name: str) -> None:
        if self._table.remove(name):
            self._table_changed.set()

    def kill_requested(self, name: str) -> None:
        commands = self._running.get(name)
        if commands:
            log.info("killing %d running process group(s) of job %r", len(commands), name)
            for command in commands:
                command.kill()

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        async with contextlib.AsyncExitStack() as stack:
            etcd = EtcdClient(
                config.etcd_endpoints,
                timeout=config.etcd_dial_timeout / 1000,
                username=config.etcd_username,
                password=config.etcd_password,
            )
            stack.push_async_callback(etcd.close)
            mongo = open_mongo(config.mongodb_uri, config.mongodb_connect_timeout)
            stack.push_async_callback(mongo.close)
            self._sink = LogSink(
                RunLog(mongo, config.mongodb_database),
                batch_size=config.job_log_batch_size,
                commit_timeout_s=config.job_log_commit_timeout / 1000,
                limit=config.job_log_buffer_limit,
            )
            self._registration = Registration(
                etcd,
                self._keys,
                self.worker_id,
                {
                    "id": self.worker_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "startedAt": now_ms(),
                },
                config.worker_lease_ttl,
            )
            self._claimer = TickClaimer(
                etcd, self._keys, self.worker_id, config.start_window / 1000
            )
            await self._registration.register()
            stack.push_async_callback(self._registration.revoke)
            sync = JobSync(etcd, self._keys, self)
            async with asyncio.TaskGroup() as group:
                self._group = group
                side_tasks = [
                    group.create_task(self._registration.keep_alive(), name="keepalive"),
                    group.create_task(sync.run(), name="jobsync"),
                    group.create_task(self._sink.run(), name="logsink"),
                ]
                scheduler = group.create_task(self._schedule(sync), name="scheduler")
                log.info("worker %s started", self.worker_id)
                await stop.wait()
                log.info("worker %s stopping", self.worker_id)
                await _cancel(scheduler)
                await self._drain()
                await _cancel(side_tasks[0], side_tasks[1], side_tasks[2])
                flushed = await self._sink.flush(
                    timeout_s=max(5.0, config.etcd_dial_timeout / 1000)
                )
                log.info(
                    "flushed results (%s, %d written in all)",
                    "all" if flushed else "NOT all",
                    self._sink.written,
                )
        log.info("worker %s stopped", self.worker_id)

    async def _drain(self) -> None:
        """Let running jobs finish within the drain timeout; kill the rest and wait for them."""
        if not self._fires:
            return
        log.info(
            "waiting up to %.0fs for %d running job(s)",
            self.config.drain_timeout / 1000,
            len(self._fires),
        )
        _, pending = await asyncio.wait(self._fires, timeout=self.config.drain_timeout / 1000)
        if pending:
            log.warning("killing %d job(s) still running after the drain timeout", len(pending))
            for commands in self._running.values():
                for command in commands:
                    command.kill()
            await asyncio.wait(pending, timeout=self.config.kill_grace_period / 1000 + 5)

    # -- scheduling -----------------------------------------------------------------------------

    async def _schedule(self, sync: JobSync) -> None:
        await sync.synced.wait()
        while True:
            now = now_ms()
            due, missed = self._table.pop_due(now, now - self._start_window_ms)
            if missed:
                self.jobs_with_missed_ticks += missed
                log.warning("%d job(s) skipped ticks older than the start window", missed)
            for tick in due:
                self._start_fire(tick)
            next_ms = self._table.next_ms()
            delay = None if next_ms is None else max(0.0, (next_ms - now_ms()) / 1000)
            self._table_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._table_changed.wait(), delay)

    def _start_fire(self, tick: DueTick) -> None:
        task = self._group.create_task(self._fire(tick, now_ms()))
        self._fires.add(task)
        task.add_done_callback(self._fires.discard)

    async def _fire(self, tick: DueTick, schedule_ms: int) -> None:
        job = tick.job
        if not self._registration.can_claim():
            log.warning("not claiming %s@%d: lease not confirmed alive", job.name, tick.plan_ms)
            return
        try:
            with etcd_errors():
                outcome = await self._claimer.claim(
                    job.name, tick.plan_ms, self._registration.lease_id
                )
        except GdtsError as exc:
            log.warning("cannot claim %s@%d: %s", job.name, tick.plan_ms, exc)
            return
        if outcome is not ClaimOutcome.WON:
            log.debug("tick %s@%d %s", job.name, tick.plan_ms, outcome.value)
            return
        try:
            record = await self._execute(job, tick.plan_ms, schedule_ms)
        finally:
            # Shielded: even on cancellation the marker must go, or the job never runs again.
            await asyncio.shield(self._release(job.name, tick.plan_ms))
        self._sink.add(record)

    async def _execute(self, job: Job, plan_ms: int, schedule_ms: int) -> RunRecord:
        command = RunningCommand(self.config.kill_grace_period / 1000)
        self._running[job.name].add(command)
        env = dict(os.environ)
        env.update(
            GDTS_JOB_NAME=job.name, GDTS_PLAN_TIME=str(plan_ms), GDTS_WORKER_ID=self.worker_id
        )
        try:
            result = await command.run(
                self.config.bash_path, job.command, env, self.config.output_limit
            )
        finally:
            self._running[job.name].discard(command)
            if not self._running[job.name]:
                del self._running[job.name]
        if result.killed:
            status = RunStatus.KILLED
        elif result.exit_code == 0:
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        return RunRecord(
            job_name=job.name,
            command=job.command,
            worker=self.worker_id,
            plan_time=plan_ms,
            schedule_time=schedule_ms,
            start_time=result.start_ms,
            end_time=result.end_ms,
            output=result.output,
            err=result.err,
            exit_code=result.exit_code,
            status=status,
        )

    async def _release(self, job_name: str, plan_ms: int) -> None:
        delay = 0.2
        while True:
            try:
                await self._claimer.release(job_name, plan_ms)
                return
            except ETCD_ERRORS as exc:
                if not self._registration.lease_id:
                    return  # lease gone: the marker went with it
                log.warning("cannot release running marker of %s (%s); retrying", job_name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RELEASE_RETRY_MAX_S)


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
