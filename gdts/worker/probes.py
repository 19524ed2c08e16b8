"""The worker's small HTTP listener: liveness, readiness and Prometheus metrics, for probes and
scrapes. Managers never call it: managers and workers meet only in etcd and MongoDB."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from gdts.metrics import CONTENT_TYPE, render


def create_probe_app(
    readiness: Callable[[], dict[str, Any]],
    registry: CollectorRegistry,
    jobs: Callable[[], Awaitable[dict[str, Any]]],
) -> web.Application:
    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def ready(_: web.Request) -> web.Response:
        checks = readiness()
        return web.json_response(checks, status=200 if checks["ready"] else 503)

    async def held_jobs(_: web.Request) -> web.Response:
        return web.json_response(await jobs())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/health/alive", alive)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/jobs", held_jobs)
    app.router.add_get("/metrics", metrics)
    return app
