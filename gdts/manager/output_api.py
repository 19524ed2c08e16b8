"""One run's output, finished or still going on: ``/job/output`` (what there is from an offset,
and the offset to go on from), ``/job/output/stream`` (the same as Server-Sent Events until the
run ends) and ``/job/running`` (a job's runs going on now).

Where a run's output is: its record once stored (the run is over); before that, the chunks its
worker writes while it goes on (see gdts.livelog; only runs going on for liveOutputAfter have
any); a run with neither is going on if its running marker in etcd says so. A lost run's record
holds no output: its chunks, if its worker wrote any before it died, are its partial output.
Offsets count bytes of the output's UTF-8."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gdts.errors import InvalidFieldError, NotFoundError
from gdts.jobfields import MAX_RETRIES
from gdts.livelog import LiveLog, RunId
from gdts.manager.api import JOB_STORE, RUN_LOG, ok, required_name, see_job
from gdts.manager.endpoints import MAX_EPOCH_MS, MAX_OUTPUT_OFFSET
from gdts.manager.params import int_param, read_params
from gdts.runrecord import RunStatus

LIVE_LOG = web.AppKey("live_log", LiveLog)

# How often a stream looks for new output: what "live" means, and a MongoDB read or two each.
STREAM_POLL_S = 0.5
# A run with no record, no chunks and no running marker for this long is not coming back (its
# lost record is written within a few lease TTLs): its stream ends saying so.
STREAM_GIVE_UP_S = 60.0


@dataclass(frozen=True)
class OutputPart:
    output: str
    offset: int  # where the next read goes on from
    running: bool
    status: str | None  # the record's, once there is one

    def to_api(self, run: RunId) -> dict[str, Any]:
        name, plan_ms, attempt = run
        answer: dict[str, Any] = {"jobName": name, "planTime": plan_ms, "attempt": attempt}
        answer.update(output=self.output, offset=self.offset, running=self.running)
        if self.status is not None:
            answer["status"] = self.status
        return answer


class OutputStreams:
    """The streams open now, ended together when the manager shuts down (a stream would
    otherwise hold the drain until its run ended)."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.open = 0

    async def on_shutdown(self, _: web.Application) -> None:
        self.closing.set()

    async def closed_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True if the manager began shutting down meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)
        return self.closing.is_set()


OUTPUT_STREAMS = web.AppKey("output_streams", OutputStreams)


def whole_chars(data: bytes) -> int:
    """How much of ``data`` ends on a whole UTF-8 character: a chunk may end inside one, whose
    rest comes with the next read. Pure."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        if byte < 0x80:
            return len(data)
        needs = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) - back if needs > back else len(data)
    return len(data)


async def read_output(app: web.Application, run: RunId, offset: int) -> OutputPart | None:
    """What ``run`` printed from ``offset``; None: no such run (not stored, not going on)."""
    record = await app[RUN_LOG].output_of(*run)
    if record is not None and (record.output or record.status != RunStatus.LOST.value):
        data = record.output.encode()
        text = data[offset:].decode(errors="replace")
        return OutputPart(text, max(offset, len(data)), False, record.status)
    chunks = await app[LIVE_LOG].read(run, offset)
    if chunks is not None:
        data, _ = chunks
        whole = whole_chars(data) if record is None else len(data)
        text = data[:whole].decode(errors="replace")
        status = None if record is None else record.status
        return OutputPart(text, offset + whole, record is None, status)
    if record is not None:  # lost, and its worker wrote nothing before it died
        return OutputPart("", offset, False, record.status)
    name, plan_ms, attempt = run
    going_on = await app[JOB_STORE].running_runs(name)
    if any(r["planTime"] == plan_ms and r["attempt"] == attempt for r in going_on):
        return OutputPart("", offset, True, None)
    return None


async def _run_asked(request: web.Request) -> tuple[RunId, int]:
    params = await read_params(request)
    name = required_name(params)
    if params.get("planTime") in (None, ""):
        raise InvalidFieldError("planTime", "is required")
    plan_time = int_param(params, "planTime", 0, 0, MAX_EPOCH_MS)
    attempt = int_param(params, "attempt", 1, 1, MAX_RETRIES + 1)
    offset = int_param(params, "offset", 0, 0, MAX_OUTPUT_OFFSET)
    await see_job(request, name)
    return (name, plan_time, attempt), offset


def _no_such_run(run: RunId) -> NotFoundError:
    name, plan_ms, attempt = run
    return NotFoundError("planTime", f"no run of {name!r} planned at {plan_ms} (attempt "
                         f"{attempt}) is stored or going on")  # fmt: skip


async def job_output(request: web.Request) -> web.Response:
    """One run's output from ``offset``: the whole of a finished one (which a page of /job/log
    may show cut), or what a run going on printed so far."""
    run, offset = await _run_asked(request)
    part = await read_output(request.app, run, offset)
    if part is None:
        raise _no_such_run(run)
    return ok(part.to_api(run))


async def job_output_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``data: {"output", "offset"}`` as the run prints, then ``event:
    end`` with ``{"status", "offset"}`` once its record is stored."""
    run, offset = await _run_asked(request)
    part = await read_output(request.app, run, offset)
    if part is None:
        raise _no_such_run(run)
    streams = request.app[OUTPUT_STREAMS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }  # fmt: skip
    )
    await response.prepare(request)
    streams.open += 1
    missing_since: float | None = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            if part is None:
                missing_since = missing_since or loop.time()
                if loop.time() - missing_since > STREAM_GIVE_UP_S:
                    await _send(response, {"status": None, "offset": offset}, "end")
                    break
            else:
                missing_since = None
                if part.output:
                    await _send(response, {"output": part.output, "offset": part.offset})
                offset = part.offset
                if not part.running:
                    await _send(response, {"status": part.status, "offset": offset}, "end")
                    break
            transport = request.transport
            if transport is None or transport.is_closing():
                break  # the client went away
            if await streams.closed_within(STREAM_POLL_S):
                break
            part = await read_output(request.app, run, offset)
    except ConnectionResetError:
        pass  # the client went away while we wrote
    finally:
        streams.open -= 1
    return response


async def _send(response: web.StreamResponse, data: dict[str, Any], kind: str = "") -> None:
    event = f"event: {kind}\n" if kind else ""
    await response.write(f"{event}data: {json.dumps(data)}\n\n".encode())


async def job_running(request: web.Request) -> web.Response:
    """The job's runs going on now (from the running markers), oldest planned first."""
    name = required_name(await read_params(request))
    await see_job(request, name)
    return ok(await request.app[JOB_STORE].running_runs(name))


def add_output_routes(app: web.Application) -> None:
    streams = app[OUTPUT_STREAMS] = OutputStreams()
    app.on_shutdown.append(streams.on_shutdown)
    app.router.add_get("/job/output", job_output)
    app.router.add_get("/job/output/stream", job_output_stream)
    app.router.add_get("/job/running", job_running)
