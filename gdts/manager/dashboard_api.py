"""GET /dashboard/summary: the console's first view. The closed minutes come from the rollups
(gdts.manager.runminutes), the minutes since from the run log at request time, the running
runs per worker from etcd as /worker/list reads them."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gdts.clock import now_ms
from gdts.errors import InvalidFieldError
from gdts.manager.api import JOB_LISTING, JOB_STORE, ok
from gdts.manager.auth import guard_of
from gdts.manager.params import read_params
from gdts.manager.runminutes import RunMinutes
from gdts.runstats import (
    MINUTE_MS,
    QUARTER_MS,
    WINDOWS,
    minute_of,
    running_per_worker,
    summarize,
    window_start,
)

RUN_MINUTES = web.AppKey("run_minutes", RunMinutes)
DEFAULT_WINDOW = "hour"


async def dashboard_summary(request: web.Request) -> web.Response:
    params = await read_params(request)
    name = params.get("window") or DEFAULT_WINDOW
    if name not in WINDOWS:
        raise InvalidFieldError("window", f"must be one of {', '.join(WINDOWS)}, got {name!r}")
    window = WINDOWS[name]
    now = now_ms()
    start = window_start(window, now)
    end = minute_of(now) + MINUTE_MS
    store = request.app[RUN_MINUTES]
    # A non-admin sees its teams' jobs only: the rollups' parts of those teams, and the live
    # minutes' runs of their jobs.
    guard = guard_of(request)
    visible = guard.visible_teams()
    teams: dict[str, str] = {}
    jobs = None
    if visible is not None:
        teams = await request.app[JOB_LISTING].teams_of()
        jobs = sorted(job for job, team in teams.items() if team in visible)
    # Read where the rollups stand first: the minutes before it from them, the rest live, so
    # a pass that moves on meanwhile counts no minute twice.
    rolled_up_to = await store.rolled_up_to()
    split = min(end, max(start, rolled_up_to or start))
    # The day's whole quarters from their rollups, the minutes after them from theirs.
    coarse = split - split % QUARTER_MS if window.bucket_minutes > 1 else start
    quarters, stored, live, online, workers = await asyncio.gather(
        store.read(start, coarse, quarters=True),
        store.read(coarse, split),
        store.compute(split, end, jobs),
        store.workers_online(start, end),
        request.app[JOB_STORE].workers(),
    )
    rolled = {**quarters, **stored}
    if visible is not None:
        rolled = {minute: rollup.of_teams(visible) for minute, rollup in rolled.items()}
        guard.shown_running(workers, teams)
    summary = summarize(window, now, {**rolled, **live}, online)
    summary["runningPerWorker"] = running_per_worker(workers)
    summary["rolledUpTo"] = rolled_up_to
    return ok(summary)


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard/summary", dashboard_summary)
