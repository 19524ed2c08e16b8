"""The manager's probes and metrics: /health/alive, /health/ready (etcd and MongoDB answer)
and /metrics. Health checks bypass the API's error envelope: probes read the status code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from gdts.errors import GdtsError
from gdts.manager.api import JOB_STORE, RUN_LOG
from gdts.metrics import CONTENT_TYPE, new_registry, render

_CHECK_TIMEOUT_S = 2.0


class ManagerStats:
    def __init__(self) -> None:
        self.registry = registry = new_registry()
        self.requests = Counter(
            "gdts_http_requests_total",
            "API requests by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gdts_http_request_seconds",
            "API request latency.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.store_errors = Counter(
            "gdts_store_errors_total",
            "etcd or MongoDB failures seen by the API.",
            ["store"],
            registry=registry,
        )


STATS = web.AppKey("stats", ManagerStats)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # e.g. a missing static file
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        # Label by route, never by raw path: unknown URLs must not grow the label set.
        name = route.canonical if route is not None else "other"
        stats = request.app[STATS]
        stats.requests.labels(route=name, status=str(status)).inc()
        stats.latency.observe(time.perf_counter() - started)


async def _check(probe: Callable[[], Awaitable[None]]) -> str | None:
    # asyncio.wait, not wait_for: wait_for waits for the cancelled probe to end, and a store
    # client that does not end when cancelled would hold the probe's answer for ever (a CI run
    # once hung in the readiness test with both stores down). A probe must answer within its
    # deadline whatever the store does.
    task = asyncio.ensure_future(probe())
    done, _ = await asyncio.wait([task], timeout=_CHECK_TIMEOUT_S)
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        return "no answer within 2 s"
    try:
        task.result()
        return None
    except GdtsError as exc:
        return str(exc)


def _forget(task: asyncio.Future[None]) -> None:
    # The probe's answer was given without it; only keep asyncio from warning about it.
    if not task.cancelled():
        task.exception()


async def alive(_: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def ready(request: web.Request) -> web.Response:
    etcd_error, mongo_error = await asyncio.gather(
        _check(request.app[JOB_STORE].ping), _check(request.app[RUN_LOG].ping)
    )
    stats = request.app[STATS]
    if etcd_error:
        stats.store_errors.labels(store="etcd").inc()
    if mongo_error:
        stats.store_errors.labels(store="mongodb").inc()
    body = {
        "ready": not etcd_error and not mongo_error,
        "etcd": etcd_error or "ok",
        "mongodb": mongo_error or "ok",
    }
    return web.json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    body = render(request.app[STATS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_health_routes(app: web.Application) -> None:
    app[STATS] = ManagerStats()
    app.router.add_get("/health/alive", alive)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
