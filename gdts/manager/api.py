"""The HTTP API, wire-compatible with the original GDTS: form-encoded (or JSON) requests and
``{"errno", "msg", "data"}`` answers."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gdts.clock import now_ms
from gdts.errors import (
    GdtsError,
    InvalidFieldError,
    TooManyAttemptsError,
    UnauthorizedError,
)
from gdts.job import Job, validate_name
from gdts.manager.auth import SECURITY, audit, guard_of
from gdts.manager.endpoints import (
    MAX_LIST_LIMIT,
    MAX_LOG_LIMIT,
    MAX_PREVIEW,
    is_api_path,
)
from gdts.manager.jobfilter import parse_filter
from gdts.manager.jobstore import JobStore
from gdts.manager.listing import JobListing
from gdts.manager.params import (
    bool_param,
    chain_id_param,
    int_param,
    loads_strict,
    read_params,
)
from gdts.manager.retention import Retention
from gdts.plans import upcoming_runs
from gdts.runlog import RunLog

log = logging.getLogger(__name__)

JOB_STORE = web.AppKey("job_store", JobStore)
RUN_LOG = web.AppKey("run_log", RunLog)
DEFAULT_ZONE = web.AppKey("default_zone", str)
JOB_LISTING = web.AppKey("job_listing", JobListing)
RETENTION = web.AppKey("retention", Retention)
# Refuses a job whose notify rules name a channel that does not exist (see notify_api).
CHANNEL_CHECK = web.AppKey("channel_check", Callable[[list[str]], Awaitable[None]])
# Refuses a job naming a secret its team lacks: (team, [(field, secret)]) (see secrets_api).
SECRET_CHECK = web.AppKey("secret_check", Callable[[str, list[tuple[str, str]]], Awaitable[None]])

DEFAULT_LOG_LIMIT = 20
# Characters of output one page of /job/log carries in all, and at least per run: what bounds a
# page's memory, whatever the runs printed (1 MiB each, 1,000 of them: about 1 GB whole).
PAGE_OUTPUT_CHARS = 1024 * 1024
MIN_OUTPUT_CHARS = 1024
ERRNO_FAILED = -1  # what the original GDTS answered for every failure


def ok(data: Any) -> web.Response:
    return web.json_response({"errno": 0, "msg": "success", "data": data})


def failure(
    status: int, msg: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"errno": ERRNO_FAILED, "msg": msg, "data": None}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place failures become HTTP answers; never a traceback on the wire."""
    try:
        return await handler(request)
    except InvalidFieldError as exc:
        return failure(exc.http_status, str(exc), exc.field)
    except UnauthorizedError as exc:
        return failure(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="gdts"'})
    except TooManyAttemptsError as exc:
        return failure(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})
    except GdtsError as exc:
        if exc.http_status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, exc)
        return failure(exc.http_status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400 or not is_api_path(request.path):
            raise
        # Keep what the exception says beyond its status (Allow on a 405).
        kept = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        return failure(exc.status, exc.reason, headers=kept)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return failure(500, "internal error; see the manager's log")


def required_name(params: Mapping[str, Any]) -> str:
    if "name" not in params:
        raise InvalidFieldError("name", "is required")
    return validate_name(params["name"])


async def save_job(request: web.Request) -> web.Response:
    params = await read_params(request)
    if "job" not in params:
        raise InvalidFieldError("job", "is required")
    raw = params["job"]
    if isinstance(raw, str):
        raw = loads_strict(raw, "job")
    job = Job.from_api(raw, default_zone=request.app[DEFAULT_ZONE], now_ms=now_ms())
    if job.notify:
        await request.app[CHANNEL_CHECK]([rule.channel for rule in job.notify])
    team = job.team if isinstance(raw, dict) and raw.get("team") is not None else None
    if team is not None:
        await request.app[SECURITY].teams.require(team)
    refs = list(job.secret_refs())

    async def check_secrets(in_team: str) -> None:
        # Checked before the write, in the team the job goes to: a secret deleted right after
        # fails its runs, clearly.
        await request.app[SECRET_CHECK](in_team, refs)

    before, after = await request.app[JOB_STORE].save(
        job, guard_of(request), team, check_secrets if refs else None
    )
    await audit(request, "job.save", job=job.name, before=before, after=after)
    return ok(before)


async def run_job(request: web.Request) -> web.Response:
    """Run a job once now on one worker, whatever its schedule; logged with trigger "manual"
    and the returned planTime."""
    name = required_name(await read_params(request))
    requested = await request.app[JOB_STORE].request_run(name, now_ms(), guard_of(request))
    await audit(request, "job.run", job=name, detail={"planTime": requested["planTime"]})
    return ok(requested)


async def enable_job(request: web.Request) -> web.Response:
    """Resume a paused job: workers schedule it again from its next tick."""
    return await _set_enabled(request, True)


async def disable_job(request: web.Request) -> web.Response:
    """Pause a job: its definition and history stay, no worker starts it (a run going on goes
    on; /job/kill stops it)."""
    return await _set_enabled(request, False)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    name = required_name(await read_params(request))
    after = await request.app[JOB_STORE].update(name, guard_of(request), enabled=enabled)
    await audit(request, "job.enable" if enabled else "job.disable", job=name, after=after)
    return ok(after)


async def clone_job(request: web.Request) -> web.Response:
    params = await read_params(request)
    name = required_name(params)
    if "newName" not in params:
        raise InvalidFieldError("newName", "is required")
    new_name = validate_name(params["newName"], "newName")
    copy = await request.app[JOB_STORE].clone(name, new_name, guard_of(request))
    await audit(request, "job.clone", job=new_name, after=copy, detail={"from": name})
    return ok(copy)


async def delete_job(request: web.Request) -> web.Response:
    """Delete a job; its runs stay in the log unless ``purgeLogs``: then those planned before
    now are removed in the background by the managers' clean-up (``purge`` in the answer)."""
    params = await read_params(request)
    name = required_name(params)
    keep_running = bool_param(params, "keepRunning")
    purge_logs = bool_param(params, "purgeLogs")
    guard = guard_of(request)
    before = await request.app[JOB_STORE].delete(name, guard, keep_running)
    if not purge_logs:
        await audit(request, "job.delete", job=name, before=before, detail={"purgeLogs": False})
        return ok(before)
    # Taken after the delete: a job saved again under the name from now on keeps its runs.
    purge = await request.app[RETENTION].start_purge(name, now_ms(), guard.username)
    await audit(request, "job.delete", job=name, before=before,
                detail={"purgeLogs": True, "purgeBefore": purge["before"]})  # fmt: skip
    return web.json_response({"errno": 0, "msg": "success", "data": before, "purge": purge})


async def kill_job(request: web.Request) -> web.Response:
    name = required_name(await read_params(request))
    await request.app[JOB_STORE].kill(name, guard_of(request))
    await audit(request, "job.kill", job=name)
    return ok(None)


async def list_jobs(request: web.Request) -> web.Response:
    """All jobs, as the original answered; ``limit`` and ``after`` (the last name of the previous
    page) page through them in name order, keeping the same response shape; ``name``, ``tag``,
    ``owner``, ``status`` and ``host`` keep only the jobs that match (see jobfilter)."""
    params = await read_params(request)
    after = params.get("after")
    if after is not None and after != "":
        after = validate_name(after, "after")
    else:
        after = None
    limit = int_param(params, "limit", 0, 0, MAX_LIST_LIMIT) or None
    wanted = dataclasses.replace(parse_filter(params), visible=guard_of(request).visible_teams())
    jobs = await request.app[JOB_LISTING].json(after, limit, now_ms(), wanted)
    return web.Response(
        body=b'{"errno":0,"msg":"success","data":' + jobs + b"}",
        content_type="application/json",
    )


async def job_log(request: web.Request) -> web.Response:
    """A job's runs, newest first; or, with ``chainId``, one chain run's step runs in plan
    order (each step's attempts in order), whatever their jobs."""
    params = await read_params(request)
    chain_id = chain_id_param(params)
    if chain_id is None:
        if params.get("name") in (None, ""):
            raise InvalidFieldError("name", "is required (or chainId, for a chain run's steps)")
        name = required_name(params)
    elif params.get("name") not in (None, ""):
        raise InvalidFieldError("chainId", "lists a chain run's steps, whatever their jobs: "
                                "give name or chainId, not both")  # fmt: skip
    skip = int_param(params, "skip", 0, 0, 10**9)
    limit = int_param(params, "limit", DEFAULT_LOG_LIMIT, 1, MAX_LOG_LIMIT)
    # A page's outputs share one budget: 20 runs show 52 KiB each, 1,000 runs 1 KiB each.
    output_chars = max(MIN_OUTPUT_CHARS, PAGE_OUTPUT_CHARS // limit)
    if chain_id is not None:
        await see_job(request, chain_head(chain_id), "chainId")
        return ok(await request.app[RUN_LOG].find_chain(chain_id, skip, limit, output_chars))
    await see_job(request, name)
    return ok(await request.app[RUN_LOG].find(name, skip, limit, output_chars))


async def see_job(request: web.Request, name: str, field_name: str = "name") -> None:
    """404 unless the caller may see the job (see JobGuard.check_visible): the same read and
    the same answer whether the job is another team's or does not exist."""
    guard = guard_of(request)
    if guard.visible_teams() is None:
        return  # an admin: no read needed (it also reads the runs a deleted job left)
    guard.check_visible(name, await request.app[JOB_STORE].view(name), field_name)


def chain_head(chain_id: str) -> str:
    """The head job of a chain run's id, "<head job>@<generation>/<planned ms>"."""
    return chain_id.rsplit("@", 1)[0]


async def preview_cron(request: web.Request) -> web.Response:
    """What the console shows under the cron field as it is typed: the next runs, or the
    error, from the same parser the workers use."""
    params = await read_params(request)
    if not params.get("cronExpr"):
        raise InvalidFieldError("cronExpr", "is required")
    zone = params.get("timezone") or request.app[DEFAULT_ZONE]
    count = int_param(params, "count", 5, 1, MAX_PREVIEW)
    job = Job.from_api(
        {"name": "preview", "command": "true", "cronExpr": params["cronExpr"], "timezone": zone}
    )
    assert job.schedule is not None  # a cronExpr was given, so it is a cron job
    runs = upcoming_runs(job.schedule, now_ms(), count)
    return ok({"cronExpr": job.cron_expr, "timezone": job.timezone, "next": runs})


async def list_workers(request: web.Request) -> web.Response:
    await read_params(request)  # refuses fields it does not take, like every endpoint
    workers = await request.app[JOB_STORE].workers()
    guard = guard_of(request)
    if guard.visible_teams() is not None:  # the jobs of other teams are not named
        guard.shown_running(workers, await request.app[JOB_LISTING].teams_of())
    return ok(workers)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/job/save", save_job)
    app.router.add_post("/job/delete", delete_job)
    app.router.add_post("/job/kill", kill_job)
    app.router.add_post("/job/run", run_job)
    app.router.add_post("/job/enable", enable_job)
    app.router.add_post("/job/disable", disable_job)
    app.router.add_post("/job/clone", clone_job)
    app.router.add_get("/job/list", list_jobs)
    app.router.add_get("/job/log", job_log)
    app.router.add_get("/worker/list", list_workers)
    app.router.add_get("/cron/preview", preview_cron)
