"""What a finished run counts as: succeeded, failed, killed, timed out or over a limit. Pure.

A job's success rules (Crocodile's return-code and return-content checks) apply to what the run
produced: its exit code (``expectedExitCode``, 0 by default) or, for an HTTP job, its status
(2xx or ``http.expectedStatus``), then ``outputContains`` and ``outputNotContains`` on its
output. A run stopped on request or by its timeout is that, whatever it printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gdts.job import Job
from gdts.runrecord import RunStatus
from gdts.worker.httpjob import http_succeeded


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    # Why it is not a success, when what the executor said does not already tell; "" if it is.
    err: str


def decide(
    job: Job,
    *,
    output: str,
    exit_code: int | None = None,
    http_status: int | None = None,
    killed: bool = False,
    timed_out: bool = False,
    over_limit: str | None = None,
    kill_reason: str | None = None,
) -> Outcome:
    """``over_limit``: the limit the worker stopped the run for, as runlimits.over said it;
    ``kill_reason``: why a killed run was killed, when it was not simply asked (a delete)."""
    if over_limit is not None:
        return Outcome(RunStatus.LIMIT, over_limit)
    if timed_out:
        return Outcome(RunStatus.TIMEOUT, f"timed out after {job.timeout_s:g} s")
    if killed:
        return Outcome(RunStatus.KILLED, "" if kill_reason is None else f"killed: {kill_reason}")
    if job.kind == "http":
        expected = job.http.expected_status if job.http is not None else None
        if not http_succeeded(http_status, expected):
            wanted = "2xx" if expected is None else str(expected)
            got = "no response" if http_status is None else f"HTTP status {http_status}"
            return Outcome(RunStatus.FAILED, f"{got}, expected {wanted}")
    elif exit_code != job.expected_exit_code:
        if job.expected_exit_code == 0:
            return Outcome(RunStatus.FAILED, "")  # the executor's "exit status 3" says it all
        got = "no exit status" if exit_code is None else f"exit status {exit_code}"
        return Outcome(RunStatus.FAILED, f"{got}, expected {job.expected_exit_code}")
    if job.output_contains and job.output_contains not in output:
        return Outcome(RunStatus.FAILED, f"output does not contain {job.output_contains!r}")
    if job.output_not_contains and job.output_not_contains in output:
        return Outcome(RunStatus.FAILED, f"output contains {job.output_not_contains!r}")
    return Outcome(RunStatus.SUCCEEDED, "")
