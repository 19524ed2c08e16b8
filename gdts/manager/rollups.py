"""The managers' rollup loop: every pass computes the minutes closed since the last one (from
where the rollups stand in MongoDB, so several managers share the work and write the same
thing), computes again the minutes late results were noted in, and counts the workers online.
The minutes not yet closed are computed at request time (see dashboard_api)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gdts.cancellation import end_if_cancelling
from gdts.clock import now_ms
from gdts.errors import GdtsError
from gdts.manager.runminutes import KEEP_S, RunMinutes
from gdts.runstats import (
    MINUTE_MS,
    QUARTER_MS,
    MinuteRollup,
    closed_before,
    merge_spans,
    minute_of,
)

log = logging.getLogger(__name__)

PASS_S = 10.0
# A first pass (or a manager back after a long stop) computes at most the day's window.
CATCH_UP_MS = 86_400_000
# Minutes computed in one aggregation: its result (one document) stays small whatever the rate.
CHUNK_MINUTES = 60


class RollupLoop:
    """``count_workers``: how many workers are online now (read from etcd); ``teams_of_jobs``:
    every job's team (job -> team, from etcd), by which each minute is also split."""

    def __init__(
        self,
        minutes: RunMinutes,
        count_workers: Callable[[], Awaitable[int]],
        teams_of_jobs: Callable[[], Awaitable[dict[str, str]]] | None = None,
        pass_s: float = PASS_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._minutes = minutes
        self._count_workers = count_workers
        self._teams_of_jobs = teams_of_jobs
        self._pass_s = pass_s
        self._clock = clock
        self._stop = asyncio.Event()
        self._indexed = False
        # The jobs' teams as last read: etcd away, a pass splits its minutes by these.
        self._teams: dict[str, str] = {}
        self._teams_read = False  # in this pass

    async def run(self) -> None:
        """Pass after pass until stop(); a failing pass (MongoDB or etcd away) is logged and
        tried again at the next."""
        while not self._stop.is_set():
            try:
                await self.run_pass()
            except GdtsError as exc:
                end_if_cancelling(exc)
                log.warning("dashboard rollup pass failed: %s", exc)
            except Exception as exc:
                end_if_cancelling(exc)
                # A bug costs a pass, loudly, not the dashboard's figures until a restart.
                log.exception("dashboard rollup pass failed")
            end_if_cancelling()  # an answer after a swallowed cancellation
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._pass_s)

    def stop(self) -> None:
        self._stop.set()

    async def run_pass(self) -> None:
        now = self._clock()
        if not self._indexed:
            await self._minutes.ensure_indexes()
            self._indexed = True
        closed = closed_before(now)
        self._teams_read = False
        up_to = await self._minutes.rolled_up_to()
        start = max(up_to or 0, minute_of(now - CATCH_UP_MS))
        if up_to is None:
            # The first pass ever starts at the quarter of the day's first run (none: there
            # is nothing to compute before now, and the rollups start here).
            first = await self._minutes.first_end(start)
            if first is None:
                await self._minutes.advance(closed)
            start = closed if first is None else max(start, first - first % QUARTER_MS)
        while start < closed and not self._stop.is_set():
            end = min(closed, start + CHUNK_MINUTES * MINUTE_MS)
            await self._minutes.store(start, end, await self._compute(start, end))
            # The quarters before the progress: a request reads quarters up to it.
            await self._roll_quarters(start, end)
            await self._minutes.advance(end)
            start = end
        await self._recompute_dirty(now, max(start, up_to or 0))
        try:
            await self._minutes.note_workers(minute_of(now), await self._count_workers())
        except GdtsError as exc:  # etcd away: the runs' figures are still worth having
            log.warning("dashboard: cannot count the workers online: %s", exc)

    async def _read_teams(self) -> None:
        if self._teams_of_jobs is None:
            return
        try:
            self._teams = await self._teams_of_jobs()
        except GdtsError as exc:  # the runs' figures are still worth having
            log.warning("dashboard: cannot read the jobs' teams (%s); using the last read", exc)

    async def _compute(self, start: int, end: int) -> dict[int, MinuteRollup]:
        if not self._teams_read:  # read once a pass, and only by a pass that computes
            await self._read_teams()
            self._teams_read = True
        # A job moved to another team later leaves its past runs in the team it was in.
        team_of = self._teams.get if self._teams_of_jobs is not None else None
        return await self._minutes.compute(start, end, team_of=team_of)

    async def _recompute_dirty(self, now: int, rolled_up_to: int) -> None:
        oldest_kept = now - KEEP_S * 1000
        dirty = await self._minutes.dirty()
        quarters = set()
        for minute, _ in dirty:
            if oldest_kept <= minute < rolled_up_to:
                end = minute + MINUTE_MS
                await self._minutes.store(minute, end, await self._compute(minute, end))
                quarter = minute - minute % QUARTER_MS
                if quarter + QUARTER_MS <= rolled_up_to:
                    quarters.add(quarter)
        # Each quarter merged again once, however many of its minutes were late.
        for quarter in sorted(quarters):
            await self._roll_quarters(quarter, quarter + QUARTER_MS)
        # Forgotten last: a pass that fails before here does it all again. A minute not rolled
        # up yet is computed in its turn (or live); one past the rollups' keeping is gone.
        for minute, marks in dirty:
            await self._minutes.clean(minute, marks)

    async def _roll_quarters(self, after: int, up_to: int) -> None:
        """Merge the quarters that end in (after, up_to] from their minutes, stored."""
        first = after - after % QUARTER_MS
        last_end = up_to - up_to % QUARTER_MS
        if last_end <= first:
            return
        minutes = await self._minutes.read(first, last_end)
        await self._minutes.store(first, last_end, merge_spans(minutes, QUARTER_MS), quarters=True)
