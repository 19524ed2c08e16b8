"""One run of a job, as stored in MongoDB. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

NOTIFY_PENDING = "notifyPending"  # a run's mark until the notifier has taken its events


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    TIMEOUT = "timeout"  # stopped by the job's timeout
    LIMIT = "limit"  # stopped for going over one of its limits (err names which)
    MISSED = "missed"  # not started within the job's misfire grace; never run
    LOST = "lost"  # the worker running it died; what the command did is unknown
    SKIPPED = "skipped"  # a chain step never run: an earlier step of its chain run failed


@dataclass(frozen=True, slots=True)
class ChainStep:
    """Which step of which chain run a run is (see gdts.chains)."""

    chain_id: str  # "<head job>@<its generation>/<the chain run's planned ms>"
    step: int  # its index in the chain run's plan, from 0
    steps: int  # how many steps the plan has


@dataclass(frozen=True)
class RunRecord:
    """Times are epoch milliseconds, as the original GDTS stored them."""

    job_name: str
    command: str
    worker: str
    plan_time: int
    schedule_time: int
    start_time: int | None
    end_time: int
    output: str
    err: str
    exit_code: int | None
    status: RunStatus
    attempt: int = 1
    # or "manual" (POST /job/run), "catchup" (after an outage), "chain" (a step of a chain run)
    trigger: str = "schedule"
    # The job's notification rules, on a run one of them may concern (see gdts.notify.rules):
    # the notifier finds such runs by their notifyPending mark and removes it.
    notify: dict[str, Any] | None = None
    # A chain run's step: the chain run's id, the step's index in its plan, how many it has.
    chain: ChainStep | None = None

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "jobName": self.job_name,
            "command": self.command,
            "err": self.err,
            "output": self.output,
            "planTime": self.plan_time,
            "scheduleTime": self.schedule_time,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "exitCode": self.exit_code,
            "status": str(self.status),
            "worker": self.worker,
            "attempt": self.attempt,
            "trigger": self.trigger,
        }
        if self.chain is not None:
            document["chainId"] = self.chain.chain_id
            document["chainStep"] = self.chain.step
            document["chainSteps"] = self.chain.steps
        if self.notify is not None:
            document["notify"] = self.notify
            document[NOTIFY_PENDING] = True
        return document
