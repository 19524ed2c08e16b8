"""Running a claimed tick on this worker: each attempt with its environment and its runner (a
shell command or an HTTP request), its timeout, retries while the job allows, and the kills that
reach it from etcd."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import resource
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from gdts.clock import now_ms
from gdts.config import WorkerConfig
from gdts.job import Job
from gdts.keys import KillOrder
from gdts.logs import event
from gdts.runlimits import RunLimits, effective, per_process_only, shell_line, tighter
from gdts.runrecord import RunRecord, RunStatus
from gdts.secretbox import SecretError
from gdts.worker.executor import ExecResult, RunningCommand
from gdts.worker.httpjob import RunningRequest
from gdts.worker.limitwatch import LimitWatch
from gdts.worker.liveflush import GoingOn, LiveOutput
from gdts.worker.logsink import LogSink
from gdts.worker.records import finished_record
from gdts.worker.redact import Redactor
from gdts.worker.runas import JobUser
from gdts.worker.runner import Runner
from gdts.worker.runuids import RunUids
from gdts.worker.secretwatch import SecretWatch
from gdts.worker.spawn import Spawner
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick, next_plan

log = logging.getLogger(__name__)

_RETRIED = frozenset((RunStatus.FAILED, RunStatus.TIMEOUT))
LEASE_MAY_BE_GONE = "the worker's etcd lease may be gone"


class Runs:
    def __init__(
        self,
        config: WorkerConfig,
        worker_id: str,
        clock: Callable[[], int],
        *,
        job_user: JobUser | None,
        base_env: Mapping[str, str],
        http: aiohttp.ClientSession,
        sink: LogSink,
        stats: WorkerStats,
        stopping: asyncio.Event,
        still_scheduled: Callable[[str], bool],
        lease_alive: Callable[[], bool] = lambda: True,
        run_uids: RunUids | None = None,
        limit_watch: LimitWatch | None = None,
        live_output: LiveOutput | None = None,
        secrets: SecretWatch | None = None,
    ) -> None:
        """``job_user``: who command jobs run as (None: this process); ``base_env``: the
        environment they start from; ``still_scheduled(name)``: whether the job still exists
        (no retry of a deleted job); ``lease_alive()``: whether the worker's lease is surely
        alive (no attempt starts otherwise: another worker may be running the job by then, see
        leasefence); ``run_uids``: a uid of its own for each command run;
        ``limit_watch``: holds those runs to their limits (without it, only the kernel's
        per-process limits apply); ``live_output``: hears of each run's end (see liveflush);
        ``secrets``: the teams' secrets, for the runs of jobs that name some (none: such a
        run fails, not started)."""
        self._config = config
        self._worker_id = worker_id
        self._now_ms = clock
        self._job_user = job_user
        self._base_env = dict(base_env)
        self._http = http
        self._sink = sink
        self._stats = stats
        self._stopping = stopping
        self._still_scheduled = still_scheduled
        self._lease_alive = lease_alive
        self._uids = run_uids
        self._limit_watch = limit_watch
        self._live_output = live_output
        self._secrets = secrets
        self._spawner = Spawner()
        self._limit_defaults = config.run_limit_defaults()
        # Never above what this process may hand on (its own hard limits), or the run's shell
        # could not set them.
        self._limit_ceilings = tighter(config.run_limit_ceilings(), _inherited_ceilings())
        self._limit_lines: dict[RunLimits, tuple[RunLimits, str]] = {}
        # job -> its runs going on here, each with its planned time, its job's generation, its
        # attempt and when it started (monotonic s)
        self._running: defaultdict[str, dict[Runner, tuple[int, int, int, float]]] = defaultdict(
            dict
        )
        # job -> when its last kill marker arrived, and what it kills
        self._killed_at: dict[str, tuple[int, KillOrder]] = {}
        self._killing_all = False  # set when the drain timed out: kill whatever starts now
        self._kill_reasons: dict[Runner, str] = {}  # runs killed for a reason of their own

    def __len__(self) -> int:
        """Runs going on now."""
        return sum(len(runs) for runs in self._running.values())

    # -- kills ----------------------------------------------------------------------------------

    def kill(self, name: str, order: KillOrder) -> None:
        """A kill marker arrived: kill the runs it names (of the job's generation it names,
        planned before the time it names). Remembered, so a run whose claim was in flight when
        the kill came is killed at spawn. A deleted job's runs are logged saying so."""
        self._killed_at[name] = (self._now_ms(), order)
        if self._uids is not None and order.before_plan_ms is None:
            self._uids.kill_job(name)  # what its ended runs left running (keepBackground)
        runs = self._running.get(name, {})
        doomed = [r for r, (plan, gen, _, _) in runs.items() if _kills(order, plan, gen)]
        if doomed:
            log.info("killing %d running process group(s)", len(doomed), extra=event(job=name))
            for runner in doomed:
                if order.deleted:
                    self._kill_reasons[runner] = "the job was deleted"
                runner.kill()

    def kill_all(self) -> None:
        """The drain timed out: kill every run, and any that starts from now on."""
        self._killing_all = True
        for runners in self._running.values():
            for runner in runners:
                runner.kill()

    def kill_now(self, reason: str) -> int:
        """Kill every run going on at once (SIGKILL, no grace), logged with ``reason``;
        returns how many."""
        killed = 0
        for runners in self._running.values():
            for runner in runners:
                self._kill_reasons.setdefault(runner, reason)
                runner.kill(now=True)
                killed += 1
        return killed

    def going_on(self) -> list[GoingOn]:
        """The runs going on now (for the live output flusher)."""
        return [
            GoingOn(runner, (name, plan, attempt), started, runner.capture)
            for name, runners in self._running.items()
            for runner, (plan, _, attempt, started) in runners.items()
        ]

    def forget(self, name: str) -> None:
        """The job was deleted: its kills no longer concern a job of that name."""
        self._killed_at.pop(name, None)

    def _kill_pending(self, job: Job, plan_ms: int, since_ms: int) -> bool:
        """Whether a kill that arrived at or after ``since_ms`` applies to the run of plan_ms."""
        killed = self._killed_at.get(job.name)
        if killed is None:
            return False
        at, order = killed
        return at >= since_ms and _kills(order, plan_ms, job.generation)

    # -- running --------------------------------------------------------------------------------

    async def run(
        self,
        tick: DueTick,
        schedule_ms: int,
        on_retry: Callable[[int], Awaitable[None]] | None = None,
    ) -> tuple[RunRecord, RunRecord]:
        """Run the claimed tick, and again while it fails and the job's ``retries`` allow:
        after ``retryBackoff`` seconds, doubling, never when the retry would start at or after
        the job's next planned tick. Every attempt is logged; the claim holds throughout
        (``on_retry(attempt)`` hears of each retry before it starts). Returns the first
        attempt's record and the last's."""
        job, plan_ms = tick.job, tick.plan_ms
        tags = event(job=job.name, tick=plan_ms)
        trigger = "manual" if tick.run_request else "catchup" if tick.catch_up else "schedule"
        if tick.chain is not None:
            trigger = "chain"
        first: RunRecord | None = None
        attempt = 1
        while True:
            started_ms = self._now_ms()
            record = await self._attempt(job, plan_ms, schedule_ms, trigger, attempt)
            if tick.chain is not None:
                record = dataclasses.replace(record, chain=tick.chain)
            # Into the sink before the release: if etcd is down at shutdown, the release may be
            # abandoned, but the result is flushed.
            self._sink.add(record)
            self._stats.run(record.status.value)
            first = first or record
            if record.status not in _RETRIED or attempt > job.retries:
                return first, record
            delay_s = job.retry_backoff_s * 2 ** (attempt - 1)
            next_tick = next_plan(job, plan_ms) if tick.run_request is None else None
            if next_tick is not None and self._now_ms() + delay_s * 1000 >= next_tick:
                log.info("no retry: it would reach the next tick", extra=tags)
                return first, record
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)
            killed = self._kill_pending(job, plan_ms, started_ms)
            if self._stopping.is_set() or killed or not self._still_scheduled(job.name):
                return first, record  # stopping, killed during the backoff, or deleted
            if not self._lease_alive():
                log.warning("no retry: %s", LEASE_MAY_BE_GONE, extra=tags)
                return first, record
            attempt += 1
            log.info("retrying (attempt %d of %d)", attempt, job.retries + 1, extra=tags)
            if on_retry is not None:
                await on_retry(attempt)

    async def _attempt(
        self, job: Job, plan_ms: int, schedule_ms: int, trigger: str, attempt: int
    ) -> RunRecord:
        secrets: dict[str, str] | None = None
        redactor: Redactor | None = None
        if job.needs_secrets:
            try:
                secrets = await self._open_secrets(job)
            except SecretError as exc:  # names the secret, never a value
                return self._not_started(f"{exc}", job, plan_ms, schedule_ms, trigger, attempt)
            redactor = Redactor(secrets.values())
        user = self._job_user
        if job.kind != "http" and self._uids is not None:
            user = await self._uids.acquire_within(job.name, self._config.start_window / 1000)
            if user is None:
                size = self._uids.last - self._uids.first + 1
                why = f"all {size} uids of this worker's runUidRange are in use"
                return self._not_started(why, job, plan_ms, schedule_ms, trigger, attempt)
        if not self._lease_alive():
            # A frozen or cut-off worker coming back to a retry or a uid it waited for.
            if self._uids is not None and user is not None and job.kind != "http":
                self._uids.ended(user.uid, False)
            return self._not_started(LEASE_MAY_BE_GONE, job, plan_ms, schedule_ms, trigger,
                                     attempt)  # fmt: skip
        runner = self._runner(job, user)
        command = job.command
        watched_uid = None
        if isinstance(runner, RunningCommand):
            limits, line = self._limits_of(job.limits)
            if self._limit_watch is not None and user is not None:  # a uid of its own
                watched_uid = user.uid
                self._limit_watch.watch(user.uid, limits)
            command = line + command
        loop = asyncio.get_running_loop()
        self._running[job.name][runner] = (plan_ms, job.generation, attempt, loop.time())
        if self._killing_all or self._kill_pending(job, plan_ms, schedule_ms):
            runner.kill()  # the kill came while this run was being claimed
        timed_out = False

        def time_out() -> None:
            nonlocal timed_out
            timed_out = True
            runner.kill()

        timer = loop.call_later(job.timeout_s, time_out) if job.timeout_s else None
        http_status: int | None = None
        try:
            if isinstance(runner, RunningRequest):
                result, http_status = await self._request(runner, job, plan_ms, secrets, redactor)
            else:
                result = await runner.run(
                    self._config.bash_path, command, self._job_env(job, plan_ms, user, secrets),
                    self._config.output_limit, user=user, redactor=redactor,
                )  # fmt: skip
        except Exception as exc:  # a bug of ours: record the run as failed, keep the worker
            log.exception("cannot run the job", extra=event(job=job.name, tick=plan_ms))
            at = now_ms()
            result = ExecResult(at, at, "", None, f"worker error: {exc!r}", False)
        finally:
            if timer is not None:
                timer.cancel()
            self._running[job.name].pop(runner, None)
            if not self._running[job.name]:
                del self._running[job.name]
            if self._live_output is not None:
                self._live_output.ended(runner, job.name, plan_ms, attempt)
            killed_because = self._kill_reasons.pop(runner, None)
            over_limit = None
            if watched_uid is not None and self._limit_watch is not None:
                over_limit = self._limit_watch.unwatch(watched_uid)
            if self._uids is not None and user is not None and isinstance(runner, RunningCommand):
                self._uids.ended(user.uid, job.keep_background)
        if _died_at_the_fence(result, self._lease_alive):
            # The guardian (a process of its own) sweeps the run's uids at the very instant
            # the lease fence here kills the run, and may get there first; the fence's own kill
            # then finds the shell gone (kill_now's reason is noted, its kill does nothing).
            killed_because = killed_because or LEASE_MAY_BE_GONE
            result = dataclasses.replace(result, killed=True)
        if redactor is not None and result.err:
            result = dataclasses.replace(result, err=redactor.text(result.err))
        return self._record(
            job, result, plan_ms, schedule_ms, trigger, attempt, http_status, timed_out,
            over_limit, killed_because,
        )  # fmt: skip

    def _not_started(
        self, why: str, job: Job, plan_ms: int, schedule_ms: int, trigger: str, attempt: int
    ) -> RunRecord:
        at = now_ms()
        result = ExecResult(at, at, "", None, f"not started: {why}", False)
        return self._record(job, result, plan_ms, schedule_ms, trigger, attempt)

    def _limits_of(self, asked: RunLimits) -> tuple[RunLimits, str]:
        """What applies to a run of a job asking ``asked``, and the shell line that sets it;
        worked out once per distinct ask (most jobs ask nothing)."""
        known = self._limit_lines.get(asked)
        if known is None:
            limits = effective(asked, self._limit_defaults, self._limit_ceilings)
            watched = self._limit_watch is not None
            if not watched:
                limits = per_process_only(limits)
            known = self._limit_lines[asked] = (limits, shell_line(limits, watched=watched))
        return known

    def _runner(self, job: Job, user: JobUser | None) -> RunningCommand | RunningRequest:
        if job.kind == "http":
            return RunningRequest()
        grace_s = self._config.kill_grace_period / 1000
        if self._uids is None or user is None:
            return RunningCommand(grace_s, spawner=self._spawner)
        return RunningCommand(
            grace_s,
            signal_run=functools.partial(self._uids.signal_run, user.uid),
            spawner=self._spawner,
        )

    def _record(
        self,
        job: Job,
        result: ExecResult,
        plan_ms: int,
        schedule_ms: int,
        trigger: str,
        attempt: int,
        http_status: int | None = None,
        timed_out: bool = False,
        over_limit: str | None = None,
        kill_reason: str | None = None,
    ) -> RunRecord:
        return finished_record(
            job, result, worker=self._worker_id, plan_ms=plan_ms, schedule_ms=schedule_ms,
            http_status=http_status, timed_out=timed_out, trigger=trigger, attempt=attempt,
            clock_offset_ms=self._config.clock_offset, over_limit=over_limit,
            kill_reason=kill_reason,
        )  # fmt: skip

    async def _open_secrets(self, job: Job) -> dict[str, str]:
        """The values of the secrets the job names (see secretwatch); SecretError if not."""
        if self._secrets is None:
            raise SecretError("this worker holds no secrets")
        return await self._secrets.open_for(job, self._config.start_window / 1000)

    async def _request(
        self,
        runner: RunningRequest,
        job: Job,
        plan_ms: int,
        secrets: dict[str, str] | None,
        redactor: Redactor | None,
    ) -> tuple[ExecResult, int | None]:
        """An HTTP job's run, told as a command's would be, and the status it got."""
        assert job.http is not None
        headers = {
            "X-GDTS-Job": job.name,
            "X-GDTS-Plan-Time": str(plan_ms),
            "X-GDTS-Worker": self._worker_id,
        }
        if secrets:  # filled at send time; the worker's own headers above still win
            headers = {
                **{header: secrets[name] for header, name in job.http.secret_headers},
                **headers,
            }
        result = await runner.run(
            self._http,
            job.http,
            timeout_s=None,  # the timer in _attempt, as for commands
            output_limit=self._config.output_limit,
            env_headers=headers,
            redactor=redactor,
        )
        told = ExecResult(result.start_ms, result.end_ms, result.output, None, result.err,
                          result.killed)  # fmt: skip
        return told, result.status

    def _job_env(
        self, job: Job, plan_ms: int, user: JobUser | None, secrets: dict[str, str] | None
    ) -> dict[str, str]:
        env = dict(self._base_env)
        if job.env:
            env.update(job.env)
        if secrets:  # in the environment only: never on a command line
            env.update((var, secrets[name]) for var, name in job.secret_env)
        env.update(
            GDTS_JOB_NAME=job.name, GDTS_PLAN_TIME=str(plan_ms), GDTS_WORKER_ID=self._worker_id
        )
        if self._uids is not None and user is not None:
            env["TMPDIR"] = user.home  # the run's own directory, removed after it
        return env


def _inherited_ceilings() -> RunLimits:
    """This process's hard limits, one below (a watched run's shell sets one above its limit)."""

    def hard(kind: int) -> int | None:
        limit = resource.getrlimit(kind)[1]
        return None if limit == resource.RLIM_INFINITY else max(1, limit - 1)

    return RunLimits(
        processes=hard(resource.RLIMIT_NPROC),
        cpu_seconds=hard(resource.RLIMIT_CPU),
        open_files=hard(resource.RLIMIT_NOFILE),
    )


def _died_at_the_fence(result: ExecResult, lease_alive: Callable[[], bool]) -> bool:
    """Whether a run that nothing here killed died of a signal once its lease was in doubt."""
    died_of_signal = result.exit_code is None and result.err.startswith("terminated by signal")
    return died_of_signal and not result.killed and not lease_alive()


def _kills(order: KillOrder, plan_ms: int, generation: int) -> bool:
    """Whether a kill order reaches a run of the job's ``generation`` planned at ``plan_ms``."""
    if order.generation is not None and order.generation != generation:
        return False  # another job of the same name (deleted and saved again)
    return order.before_plan_ms is None or plan_ms < order.before_plan_ms
