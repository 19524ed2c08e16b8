"""How the client prints jobs, runs and workers: tables, times, a run's status line, the exit
status ``job run --wait`` ends with. Pure: values in, text or numbers out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# ``job run --wait`` exits with the run's exit code when its command ended by itself; a run
# that has none, or failed with 0 (an output rule, another expectedExitCode), exits with these.
RUN_EXIT_CODES = {
    "succeeded": 0,
    "failed": 1,
    "timeout": 124,  # as timeout(1) does
    "limit": 125,
    "killed": 137,  # as a shell reports a command killed with SIGKILL
    "lost": 3,
    "missed": 4,
    "skipped": 4,
}
NO_RECORD_EXIT = 5  # the run vanished without a record, or never started


def run_exit_code(record: dict[str, Any] | None) -> int:
    """What ``job run --wait`` exits with for the run's (last attempt's) record."""
    if record is None:
        return NO_RECORD_EXIT
    status = record.get("status")
    code = record.get("exitCode")
    if status in ("succeeded", "failed") and isinstance(code, int) and 0 <= code <= 255:
        return 1 if status == "failed" and code == 0 else code
    return RUN_EXIT_CODES.get(str(status), NO_RECORD_EXIT)


def when(epoch_ms: int | None) -> str:
    """An epoch-ms time as UTC to the second, ``-`` for none."""
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, two spaces apart, the last one unpadded."""
    cells = [[str(c) for c in header], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def job_rows(jobs: list[dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    header = ["NAME", "SCHEDULE", "STATE", "NEXT RUN", "LAST RUN", "OWNER"]
    rows: list[list[object]] = []
    for job in jobs:
        schedule = job.get("cronExpr") or (f"at {job['runAt']}" if job.get("runAt") else "-")
        if job.get("running"):
            state = "running"
        else:
            state = "enabled" if job.get("enabled", True) else "paused"
        last = job.get("lastRun")
        last_text = f"{last['status']} {when(last.get('planTime'))}" if last else None
        rows.append(
            [job["name"], schedule, state, when(job.get("nextRunTime")), last_text,
             job.get("owner") or None]
        )  # fmt: skip
    return header, rows


def worker_rows(workers: list[dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    header = ["ID", "HOST", "PID", "STARTED", "RUNNING", "LABELS"]
    rows: list[list[object]] = []
    for worker in workers:
        labels = ",".join(f"{k}={v}" for k, v in sorted((worker.get("labels") or {}).items()))
        rows.append(
            [worker.get("id"), worker.get("host"), worker.get("pid"),
             when(worker.get("startedAt")), len(worker.get("running") or []), labels or None]
        )  # fmt: skip
    return header, rows


def run_title(run: dict[str, Any]) -> str:
    """A run's header line: when it was planned, which attempt, why, where."""
    parts = [f"=== {when(run.get('planTime'))}", f"attempt {run.get('attempt', 1)}"]
    if run.get("trigger"):
        parts.append(str(run["trigger"]))
    if run.get("worker"):
        parts.append(f"on {run['worker']}")
    return "  ".join(parts)


def run_outcome(run: dict[str, Any]) -> str:
    """A stored run's outcome: status, exit code, how long it took, its error."""
    text = str(run.get("status"))
    if run.get("exitCode") is not None:
        text += f" (exit {run['exitCode']})"
    start, end = run.get("startTime"), run.get("endTime")
    if isinstance(start, int) and isinstance(end, int):
        text += f" in {(end - start) / 1000:.1f} s"
    if run.get("err"):
        text += f": {run['err']}"
    return text
