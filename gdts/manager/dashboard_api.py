"""GET /dashboard/summary: the console's first view. The closed minutes come from the rollups
(gdts.manager.runminutes), the minutes since from the run log at request time, the running
runs per worker from etcd as /worker/list reads them."""

from __future__ import annotations

import asyncio
from typing import Any

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
    Window,
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
    visible = guard_of(request).visible_teams()
    if visible is not None:
        return ok(await _teams_summary(request, window, now, visible))
    # Read where the rollups stand first: the minutes before it from them, the rest live, so
    # a pass that moves on meanwhile counts no minute twice.
    rolled_up_to = await store.rolled_up_to()
    split = min(end, max(start, rolled_up_to or start))
    # The day's whole quarters from their rollups, the minutes after them from theirs.
    coarse = split - split % QUARTER_MS if window.bucket_minutes > 1 else start
    quarters, stored, live, online, workers = await asyncio.gather(
        store.read(start, coarse, quarters=True),
        store.read(coarse, split),
        store.compute(split, end),
        store.workers_online(start, end),
        request.app[JOB_STORE].workers(),
    )
    summary = summarize(window, now, {**quarters, **stored, **live}, online)
    summary["runningPerWorker"] = running_per_worker(workers)
    summary["rolledUpTo"] = rolled_up_to
    return ok(summary)


async def _teams_summary(
    request: web.Request, window: Window, now: int, visible: frozenset[str]
) -> dict[str, Any]:
    """The summary of the jobs of the caller's teams only, from the run log at request time
    (the rollups count every team's runs together)."""
    store = request.app[RUN_MINUTES]
    teams = await request.app[JOB_LISTING].teams_of()
    jobs = sorted(name for name, team in teams.items() if team in visible)
    start, end = window_start(window, now), minute_of(now) + MINUTE_MS
    minutes, online, workers = await asyncio.gather(
        store.compute(start, end, jobs),
        store.workers_online(start, end),
        request.app[JOB_STORE].workers(),
    )
    summary = summarize(window, now, minutes, online)
    shown = set(jobs)
    for worker in workers:
        worker["running"] = [name for name in worker["running"] if name in shown]
    summary["runningPerWorker"] = running_per_worker(workers)
    summary["rolledUpTo"] = None
    return summary


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard/summary", dashboard_summary)
