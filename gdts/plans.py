"""When a job runs next, in epoch milliseconds. Pure: "after" is always an argument.

Shared by the workers' tick table and the manager's job list, which must agree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gdts.cron import CronSchedule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    # Integer arithmetic: float timestamps lose the last millisecond for some instants.
    return (moment - _EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def next_run(
    enabled: bool, run_at_ms: int | None, schedule: CronSchedule | None, after_ms: int
) -> int | None:
    """The first planned run strictly after ``after_ms``, or None: a paused job has none, a
    one-shot job only its one instant, a cron job what its schedule says."""
    if not enabled:
        return None
    if run_at_ms is not None:
        return run_at_ms if run_at_ms > after_ms else None
    if schedule is None:
        return None
    upcoming = schedule.next_after(from_ms(after_ms))
    return None if upcoming is None else to_ms(upcoming)


def upcoming_runs(schedule: CronSchedule, after_ms: int, count: int) -> list[int]:
    """The next ``count`` planned runs after ``after_ms`` (fewer if the schedule ends)."""
    runs: list[int] = []
    while len(runs) < count:
        upcoming = next_run(True, None, schedule, runs[-1] if runs else after_ms)
        if upcoming is None:
            break
        runs.append(upcoming)
    return runs
