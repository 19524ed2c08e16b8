"""The manager's aiohttp application: the API plus the console in ``webroot/``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from gdts.config import ManagerConfig
from gdts.errors import GdtsError
from gdts.etcd import open_etcd
from gdts.keys import KeyLayout
from gdts.livelog import LiveLog
from gdts.manager.accounts import Accounts
from gdts.manager.api import (
    CHANNEL_CHECK,
    DEFAULT_ZONE,
    JOB_LISTING,
    JOB_STORE,
    RETENTION,
    RUN_LOG,
    SECRET_CHECK,
    add_routes,
    error_middleware,
    failure,
)
from gdts.manager.audit import AuditTrail
from gdts.manager.auth import SECURITY, Security, authenticate
from gdts.manager.auth_api import add_auth_routes
from gdts.manager.bootstrap import adopt_owner_ids_until_done, prepare, prepare_until_done
from gdts.manager.credentials import Credentials
from gdts.manager.dashboard_api import RUN_MINUTES, add_dashboard_routes
from gdts.manager.endpoints import MAX_URL_BYTES
from gdts.manager.headers import add_security_headers
from gdts.manager.health import STATS, add_health_routes, count_requests
from gdts.manager.jobstore import JobStore
from gdts.manager.listing import JobListing
from gdts.manager.notify_api import NOTIFIER, NOTIFY_STORE, add_notify_routes, check_channels
from gdts.manager.openapi import add_openapi_route
from gdts.manager.output_api import LIVE_LOG, add_output_routes
from gdts.manager.registry import read_live_workers
from gdts.manager.retention import Retention
from gdts.manager.rollups import RollupLoop
from gdts.manager.runminutes import RunMinutes
from gdts.manager.secrets_api import SECRET_STORE, add_secret_routes, check_secret_refs
from gdts.manager.secretstore import SecretStore
from gdts.manager.team_api import add_team_routes
from gdts.manager.teams import Teams
from gdts.manager.throttle import LoginThrottle
from gdts.mongo import open_mongo
from gdts.notify.notifier import Notifier, NotifierStats
from gdts.notify.store import NotifyStore
from gdts.runlog import RunLog

CONFIG = web.AppKey("config", ManagerConfig)
_WARM_UP_STOP_S = 10.0
_PREPARE_AT_START_S = 10.0
_NOTIFY_STOP_MARGIN_S = 5.0
log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024  # a command is at most 64 KiB; anything near 1 MiB is not a job
# The HTTP parser takes request lines and headers up to the body's cap, so that what is too long
# reaches refuse_long_urls (a JSON answer naming the field) instead of the parser's plain text.
SERVER_ARGS = {"max_line_size": MAX_BODY_BYTES, "max_field_size": MAX_BODY_BYTES}


@web.middleware
async def refuse_long_urls(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.raw_path) > MAX_URL_BYTES:
        return failure(
            414, f"url: must be at most {MAX_URL_BYTES} bytes (got {len(request.raw_path)})", "url"
        )
    return await handler(request)


def create_app(config: ManagerConfig) -> web.Application:
    app = web.Application(
        middlewares=[count_requests, refuse_long_urls, error_middleware, authenticate],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(_stores)
    app.on_response_prepare.append(add_security_headers)
    add_routes(app)
    add_output_routes(app)
    add_auth_routes(app)
    add_team_routes(app)
    add_notify_routes(app)
    add_secret_routes(app)
    add_dashboard_routes(app)
    add_openapi_route(app)
    add_health_routes(app)
    _add_console(app, Path(config.webroot))
    return app


def _add_console(app: web.Application, webroot: Path) -> None:
    """Serve what webroot holds, each entry under its own path: a static route on "/" would
    swallow every unknown URL, and API mistakes must get JSON errors, not file-not-found."""
    if not webroot.is_dir():
        return
    for entry in sorted(webroot.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            app.router.add_static(f"/{entry.name}", entry, follow_symlinks=False)
        elif entry.is_file():
            app.router.add_get(f"/{entry.name}", _file_handler(entry))
    index = webroot / "index.html"
    if index.is_file():
        app.router.add_get("/", _file_handler(index))


def _file_handler(path: Path) -> web.Handler:
    async def serve(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    return serve


def _notifier_ended(task: asyncio.Task[None]) -> None:
    """The notifier ends only when stopped: anything else is said loudly (nobody would hear
    of a failure any more)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the notifier stopped: %r; this manager sends no notifications until it is "
                  "restarted", task.exception(), exc_info=task.exception())  # fmt: skip


async def _end_loop(task: asyncio.Task[None], stop: Callable[[], None]) -> None:
    """Let a pass under way end (a MongoDB call cut off could leave its socket behind);
    cancelled if it hangs."""
    stop()
    done, _ = await asyncio.wait([task], timeout=_WARM_UP_STOP_S)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _cleanup_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the log clean-up stopped: %r; keepRuns and purges wait for another manager "
                  "or a restart", task.exception(), exc_info=task.exception())  # fmt: skip


async def _stores(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    etcd = open_etcd(config)
    mongo = open_mongo(config.mongodb_uri, config.mongodb_connect_timeout)
    app[JOB_STORE] = JobStore(etcd, KeyLayout(config.etcd_prefix), config.kill_marker_ttl)
    app[RUN_LOG] = RunLog(mongo, config.mongodb_database)
    app[LIVE_LOG] = LiveLog(mongo, config.mongodb_database)
    app[JOB_LISTING] = JobListing(etcd, KeyLayout(config.etcd_prefix), app[RUN_LOG])
    app[DEFAULT_ZONE] = config.default_timezone
    run_minutes = app[RUN_MINUTES] = RunMinutes(mongo, config.mongodb_database)
    keys = KeyLayout(config.etcd_prefix)

    async def count_workers() -> int:
        return len(await read_live_workers(etcd, keys))

    rollup_loop = RollupLoop(run_minutes, count_workers, app[JOB_LISTING].teams_of)
    retention = app[RETENTION] = Retention(
        mongo, config.mongodb_database, etcd, keys, interval_s=config.retention_interval
    )
    notify_store = app[NOTIFY_STORE] = NotifyStore(
        mongo, config.mongodb_database, config.notify_outbox_retention * 24 * 3600
    )
    app[CHANNEL_CHECK] = functools.partial(check_channels, notify_store, "notify")
    secret_store = app[SECRET_STORE] = SecretStore(etcd, keys, config.secret_key_ring())
    app[SECRET_CHECK] = functools.partial(check_secret_refs, secret_store)
    notifier = app[NOTIFIER] = Notifier(
        notify_store, etcd, KeyLayout(config.etcd_prefix), config,
        NotifierStats(app[STATS].registry),
    )  # fmt: skip
    security = app[SECURITY] = Security(
        enabled=config.auth_enabled,
        accounts=Accounts(mongo, config.mongodb_database),
        teams=Teams(mongo, config.mongodb_database),
        credentials=Credentials(mongo, config.mongodb_database),
        throttle=LoginThrottle(mongo, config.mongodb_database),
        audit=AuditTrail(mongo, config.mongodb_database),
        session_ttl_s=config.session_ttl,
        trusted_proxies=frozenset(config.trusted_proxies),
        secure_cookies=bool(config.tls_cert_file),
    )
    if not config.auth_enabled:
        log.warning(
            "AUTHENTICATION IS OFF (authEnabled: false): anyone who can reach this manager can "
            "run any command on every worker. Use this only in a lab."
        )
    # Accounts and the admin token are ready before the first request when MongoDB answers;
    # otherwise the manager starts anyway (answering 503) and keeps trying in the background.
    preparing: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(prepare(security, config, app[RUN_LOG]), _PREPARE_AT_START_S)
    except (TimeoutError, GdtsError) as exc:
        log.warning("accounts not ready at start (%s); retrying in the background", exc)
        preparing = asyncio.get_running_loop().create_task(
            prepare_until_done(security, config, app[RUN_LOG])
        )
    adopting = asyncio.get_running_loop().create_task(
        adopt_owner_ids_until_done(security, app[JOB_STORE])
    )
    # The first full listing decodes every job (3 s at 100,000): do it now, not for the first
    # operator who opens the console.
    warm_up = asyncio.get_running_loop().create_task(app[JOB_LISTING].warm_up())
    stop_notifying = asyncio.Event()
    notifying = None
    if config.notify_enabled:
        notifying = asyncio.get_running_loop().create_task(notifier.run(stop_notifying))
        notifying.add_done_callback(_notifier_ended)
    rolling_up = asyncio.get_running_loop().create_task(rollup_loop.run())
    cleaning = asyncio.get_running_loop().create_task(retention.run())
    cleaning.add_done_callback(_cleanup_ended)
    try:
        yield
    finally:
        await _end_loop(rolling_up, rollup_loop.stop)
        await _end_loop(cleaning, retention.stop)
        if notifying is not None:
            # A delivery under way gets its whole timeout: cut off, it could be sent again.
            stop_notifying.set()
            grace_s = config.notify_timeout / 1000 + _NOTIFY_STOP_MARGIN_S
            done, _ = await asyncio.wait([notifying], timeout=grace_s)
            if not done:
                notifying.cancel()
                await asyncio.wait([notifying], timeout=_WARM_UP_STOP_S)
        # Let it finish rather than cancel it: a MongoDB read cancelled halfway can leave its
        # socket to the garbage collector.
        if preparing is not None:
            preparing.cancel()
            await asyncio.wait([preparing], timeout=_WARM_UP_STOP_S)
        adopting.cancel()
        await asyncio.wait([adopting], timeout=_WARM_UP_STOP_S)
        done, _ = await asyncio.wait([warm_up], timeout=_WARM_UP_STOP_S)
        if not done:
            warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm_up
        await mongo.close()
        await etcd.close()
