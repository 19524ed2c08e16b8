"""The run records a worker writes: a run it made, a tick nobody started, a run whose worker
died. Pure: what happened in, a RunRecord out."""

from __future__ import annotations

from typing import Any

from gdts.job import Job
from gdts.notify.rules import worth_flagging
from gdts.runrecord import RunRecord, RunStatus
from gdts.worker.executor import ExecResult
from gdts.worker.lostruns import LostRun
from gdts.worker.outcome import decide


def command_of(job: Job) -> str:
    """What the run log shows as the job's command: an HTTP job's method and URL."""
    return job.command if job.http is None else f"{job.http.method} {job.http.url}"


def notify_mark(job: Job | None, status: RunStatus) -> dict[str, Any] | None:
    """What a run's record carries for the notifier: the job's rules, if one may concern it
    (nothing for the jobs without rules: no cost on their runs)."""
    if job is None or not job.notify or not worth_flagging(job.notify, status.value):
        return None
    return {"rules": [rule.to_api() for rule in job.notify],
            "minInterval": job.notify_min_interval_s}  # fmt: skip


def finished_record(
    job: Job,
    result: ExecResult,
    *,
    worker: str,
    plan_ms: int,
    schedule_ms: int,
    http_status: int | None,
    timed_out: bool,
    trigger: str,
    attempt: int,
    clock_offset_ms: int,
    over_limit: str | None = None,
    kill_reason: str | None = None,
) -> RunRecord:
    """A run this worker made; its status from the job's success rules (see outcome)."""
    outcome = decide(
        job,
        output=result.output,
        exit_code=result.exit_code,
        http_status=http_status,
        killed=result.killed,
        timed_out=timed_out,
        over_limit=over_limit,
        kill_reason=kill_reason,
    )
    err = result.err
    if over_limit is not None:
        err = outcome.err  # the limit; "terminated by signal SIGKILL" was the watch's doing
    elif timed_out or (result.killed and kill_reason is not None):
        # Why it was killed comes first; what the kill did to a shell (its signal) is worth
        # keeping; "killed on request" is not.
        detail = "" if http_status is None and job.kind == "http" else err
        detail = detail.removeprefix("killed on request; ").removeprefix("killed")
        err = "; ".join(filter(None, [outcome.err, detail]))
    elif outcome.err and outcome.err not in err:
        err = "; ".join(filter(None, [err, outcome.err]))
    return RunRecord(
        job_name=job.name,
        command=command_of(job),
        worker=worker,
        plan_time=plan_ms,
        schedule_time=schedule_ms,
        start_time=result.start_ms + clock_offset_ms,
        end_time=result.end_ms + clock_offset_ms,
        output=result.output,
        err=err,
        exit_code=result.exit_code,
        status=outcome.status,
        trigger=trigger,
        attempt=attempt,
        notify=notify_mark(job, outcome.status),
    )


NO_WORKER_COULD = "no worker could start it: stopped, stalled, or cut off from etcd"
ALL_AT_CAPACITY = "every eligible worker at capacity (maxConcurrentRuns)"
OWNER_AT_CAPACITY = "its owner was at capacity (maxConcurrentRuns) and no other worker took it"


def missed_record(
    job: Job, plan_ms: int, *, worker: str, now_ms: int, window_ms: int,
    why: str = NO_WORKER_COULD,
) -> RunRecord:  # fmt: skip
    """A tick that could not start within its window, so was not run late."""
    err = f"not started within {window_ms / 1000:g} s of its planned time, so not run late ({why})"
    mark = notify_mark(job, RunStatus.MISSED)
    return unrun_record(job.name, job.command, plan_ms, RunStatus.MISSED, err, worker=worker,
                        now_ms=now_ms, notify=mark)  # fmt: skip


def unrun_record(
    job_name: str, command: str, plan_ms: int, status: RunStatus, err: str, *, worker: str,
    now_ms: int, **more: Any,
) -> RunRecord:  # fmt: skip
    """The record of a run that never started (missed, skipped, refused): ``err`` says why;
    ``more``: other RunRecord fields (trigger, chain, notify)."""
    return RunRecord(
        job_name=job_name,
        command=command,
        worker=worker,
        plan_time=plan_ms,
        schedule_time=now_ms,
        start_time=None,
        end_time=now_ms,
        output="",
        err=err,
        exit_code=None,
        status=status,
        **more,
    )


def lost_record(run: LostRun, job: Job | None, *, now_ms: int) -> RunRecord:
    """A run whose worker lost its lease while running it (``job``: None if since deleted)."""
    return RunRecord(
        job_name=run.job_name,
        command=job.command if job is not None else "",
        worker=run.worker,
        plan_time=run.plan_ms,
        schedule_time=run.claimed_ms or run.plan_ms,
        start_time=run.claimed_ms,
        end_time=now_ms,
        output=run.output,
        err=f"worker {run.worker} lost its lease while running this job; "
        "what the command did is unknown",
        exit_code=None,
        status=RunStatus.LOST,
        attempt=run.attempt,
        trigger="schedule" if run.chain is None else "chain",
        notify=notify_mark(job, RunStatus.LOST),
        chain=run.chain,
    )
