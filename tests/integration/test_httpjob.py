"""HTTP jobs against a real local server: transcript and cap, success rules, redirects left
alone, timeout, kill, the caller's cancellation, and failures to connect."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from gdts.worker.egress import EgressPolicy
from gdts.worker.httpjob import HttpRequestSpec, HttpResult, RunningRequest, http_succeeded

LIMIT = 1024 * 1024
HUGE = 50 * 1024 * 1024


@dataclass
class ServerState:
    """What the handlers saw, for tests to wait on instead of sleeping."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the handler was cancelled
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)
    stream_sent: int = 0
    stream_completed: bool = False
    hits: int = 0


def make_app(state: ServerState) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello body\n", headers={"X-Test": "yes"})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def echo(request: web.Request) -> web.Response:
        state.hits += 1
        payload = {
            "method": request.method,
            "body": await request.text(),
            "headers": {k: v for k, v in request.headers.items() if k.lower().startswith("x-")},
        }
        return web.json_response(payload)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=b"ok \xff\xfe end", content_type="application/octet-stream")

    async def slow(request: web.Request) -> web.Response:
        state.arrived.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state.gone.set()
            raise
        return web.Response(text="too late")

    async def stall_mid_body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"partial ")
        state.arrived.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state.gone.set()
            raise
        return resp

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: the client cannot know the size up front
        await resp.prepare(request)
        chunk = b"y" * (64 * 1024)
        try:
            while state.stream_sent < HUGE:
                await resp.write(chunk)
                state.stream_sent += len(chunk)
            await resp.write_eof()
            state.stream_completed = True
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away: what the test wants to see
        finally:
            state.stream_done.set()
        return resp

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/sized/{n}", sized)
    app.router.add_get("/binary", binary)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stall", stall_mid_body)
    app.router.add_get("/huge", huge)
    return app


@dataclass
class Env:
    server: TestServer
    session: aiohttp.ClientSession
    state: ServerState

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def run(self, path: str, method: str = "GET", **kw: object) -> HttpResult:
        spec_kw = {k: kw.pop(k) for k in ("headers", "body", "expected_status") if k in kw}
        spec = HttpRequestSpec(method, self.url(path), **spec_kw)  # type: ignore[arg-type]
        kw.setdefault("timeout_s", 10.0)
        kw.setdefault("output_limit", LIMIT)
        return await RunningRequest().run(self.session, spec, **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    state = ServerState()
    async with TestServer(make_app(state), host="127.0.0.1") as server:
        async with aiohttp.ClientSession() as session:
            yield Env(server, session, state)


def split_output(output: str) -> tuple[str, list[str], str]:
    head, body = output.split("\n\n", 1)
    status_line, *headers = head.split("\n")
    return status_line, headers, body


# -- success rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "succeeded"),
    [
        (200, None, True),
        (204, None, True),
        (299, None, True),
        (199, None, False),
        (301, None, False),
        (404, None, False),
        (500, None, False),
        (None, None, False),
        (404, 404, True),
        (200, 404, False),
        (302, 302, True),
        (None, 200, False),
    ],
)
def test_http_succeeded(status: int | None, expected: int | None, succeeded: bool) -> None:
    assert http_succeeded(status, expected) is succeeded


def test_result_with_an_error_or_a_stop_is_never_a_success() -> None:
    base = HttpResult(0, 1, 200, "", "", False, False)
    assert base.succeeded
    assert not HttpResult(0, 1, 200, "", "response body incomplete", False, False).succeeded
    assert not HttpResult(0, 1, 200, "", "killed", True, False).succeeded
    assert not HttpResult(0, 1, 200, "", "timed out after 1 s", False, True).succeeded


# -- responses ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_200_is_a_success_with_status_headers_and_body_in_the_output(env: Env) -> None:
    result = await env.run("/ok")
    assert result.status == 200 and result.succeeded
    assert result.err == "" and not result.killed and not result.timed_out
    assert result.start_ms <= result.end_ms
    status_line, headers, body = split_output(result.output)
    assert status_line == "HTTP/1.1 200 OK"
    assert "X-Test: yes" in headers
    assert "Content-Type: text/plain; charset=utf-8" in headers
    assert body == "hello body\n"


@pytest.mark.asyncio
async def test_404_is_a_failure_without_an_error(env: Env) -> None:
    result = await env.run("/status/404")
    assert result.status == 404 and result.err == ""
    assert not result.succeeded
    assert result.output.startswith("HTTP/1.1 404 Not Found\n")
    assert result.output.endswith("\n\nstatus page")


@pytest.mark.asyncio
async def test_expected_status_replaces_the_2xx_rule(env: Env) -> None:
    assert (await env.run("/status/404", expected_status=404)).succeeded
    assert not (await env.run("/ok", expected_status=404)).succeeded


@pytest.mark.asyncio
async def test_post_sends_body_and_headers(env: Env) -> None:
    result = await env.run(
        "/echo",
        "POST",
        body='{"name": "ümlaut"}',
        headers=(("X-Custom", "one"), ("X-Other", "two")),
    )
    assert result.succeeded
    _, _, body = split_output(result.output)
    seen = json.loads(body)
    assert seen["method"] == "POST"
    assert seen["body"] == '{"name": "ümlaut"}'
    assert seen["headers"] == {"X-Custom": "one", "X-Other": "two"}


@pytest.mark.asyncio
async def test_env_headers_are_sent_and_win_over_the_jobs_own(env: Env) -> None:
    result = await env.run(
        "/echo",
        headers=(("X-GDTS-Job", "spoofed"), ("X-Mine", "kept")),
        env_headers={"X-GDTS-Job": "nightly", "X-GDTS-Plan-Time": "1700000000000"},
    )
    _, _, body = split_output(result.output)
    assert json.loads(body)["headers"] == {
        "X-GDTS-Job": "nightly",
        "X-Mine": "kept",
        "X-GDTS-Plan-Time": "1700000000000",
    }


@pytest.mark.asyncio
async def test_a_redirect_is_reported_not_followed(env: Env) -> None:
    result = await env.run("/redirect")
    assert result.status == 302 and result.err == ""
    assert not result.succeeded
    _, headers, _ = split_output(result.output)
    assert "Location: /ok" in headers
    assert (await env.run("/redirect", expected_status=302)).succeeded


@pytest.mark.asyncio
async def test_head_has_no_body(env: Env) -> None:
    result = await env.run("/ok", "HEAD")
    assert result.succeeded
    assert result.output.startswith("HTTP/1.1 200 OK\n") and result.output.endswith("\n\n")


@pytest.mark.asyncio
async def test_a_body_that_is_not_utf8_is_kept_with_replacement_characters(env: Env) -> None:
    result = await env.run("/binary")
    assert split_output(result.output)[2] == "ok \ufffd\ufffd end"


# -- the cap ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_output_over_the_cap_is_cut_with_the_count_of_bytes_not_kept(env: Env) -> None:
    result = await env.run("/sized/5000", output_limit=1000)
    assert result.succeeded
    kept, marker = result.output.rsplit("\n", 1)
    assert len(kept.encode()) == 1000
    head_len = len(kept.split("\n\n", 1)[0].encode()) + 2
    # The body arrives with its length, so the whole size is known even though it was cut.
    assert marker == f"[output truncated: {head_len + 5000 - 1000} more bytes not kept]"


@pytest.mark.asyncio
async def test_output_exactly_at_the_cap_has_no_marker(env: Env) -> None:
    full = (await env.run("/sized/300")).output
    result = await env.run("/sized/300", output_limit=len(full.encode()))
    assert result.output == full


@pytest.mark.asyncio
async def test_a_huge_body_is_not_read_past_the_cap(env: Env) -> None:
    limit = 64 * 1024
    result = await env.run("/huge", output_limit=limit)
    assert result.status == 200 and result.err == ""
    kept, marker = result.output.rsplit("\n", 1)
    assert len(kept.encode()) == limit
    assert kept.endswith("yyyy")
    assert marker == f"[output truncated at {limit} bytes]"
    # The client dropped the connection: the server could not push the 50 MB through.
    await asyncio.wait_for(env.state.stream_done.wait(), 10)
    assert not env.state.stream_completed
    assert env.state.stream_sent < HUGE


# -- stopping -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_slow_endpoint_times_out(env: Env) -> None:
    result = await env.run("/slow", timeout_s=0.2)
    assert result.timed_out and not result.killed and not result.succeeded
    assert result.err == "timed out after 0.2 s"
    assert result.status is None and result.output == ""
    await asyncio.wait_for(env.state.gone.wait(), 10)


@pytest.mark.asyncio
async def test_a_timeout_mid_body_keeps_what_arrived(env: Env) -> None:
    result = await env.run("/stall", timeout_s=0.5)
    assert result.timed_out and result.status == 200
    assert result.output.startswith("HTTP/1.1 200 OK\n")
    assert result.output.endswith("\n\npartial ")


@pytest.mark.asyncio
async def test_kill_cancels_the_request_promptly(env: Env) -> None:
    runner = RunningRequest()
    spec = HttpRequestSpec("GET", env.url("/slow"))
    task = asyncio.create_task(runner.run(env.session, spec, timeout_s=None, output_limit=LIMIT))
    await asyncio.wait_for(env.state.arrived.wait(), 10)
    killed_at = time.monotonic()
    runner.kill()
    runner.kill()  # idempotent
    result = await asyncio.wait_for(task, 10)
    assert time.monotonic() - killed_at < 5  # not the handler's 30 s
    assert result.killed and result.err == "killed"
    assert not result.timed_out and not result.succeeded and result.status is None
    await asyncio.wait_for(env.state.gone.wait(), 10)  # the server saw the request dropped
    runner.kill()  # after the run: a no-op


@pytest.mark.asyncio
async def test_kill_before_run_sends_nothing(env: Env) -> None:
    runner = RunningRequest()
    runner.kill()
    spec = HttpRequestSpec("GET", env.url("/echo"))
    result = await runner.run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    assert result.killed and result.err == "killed" and result.status is None
    assert env.state.hits == 0


@pytest.mark.asyncio
async def test_kill_after_the_run_changes_nothing(env: Env) -> None:
    runner = RunningRequest()
    spec = HttpRequestSpec("GET", env.url("/ok"))
    result = await runner.run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    runner.kill()
    assert result.succeeded and not runner.kill_requested


@pytest.mark.asyncio
async def test_cancelling_the_caller_propagates_and_drops_the_request(env: Env) -> None:
    spec = HttpRequestSpec("GET", env.url("/slow"))
    task = asyncio.create_task(
        RunningRequest().run(env.session, spec, timeout_s=None, output_limit=LIMIT)
    )
    await asyncio.wait_for(env.state.arrived.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await asyncio.wait_for(env.state.gone.wait(), 10)


# -- failures -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_refused_is_an_error_line(env: Env) -> None:
    # Bound but not listening: a connect is refused, and no other test can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        spec = HttpRequestSpec("GET", f"http://127.0.0.1:{port}/")
        result = await RunningRequest().run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    assert result.status is None and not result.succeeded
    assert result.err == f"cannot connect to 127.0.0.1:{port}: Connection refused"


@pytest.mark.asyncio
async def test_an_invalid_url_is_an_error_line(env: Env) -> None:
    spec = HttpRequestSpec("GET", "http://")
    result = await RunningRequest().run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    assert result.status is None and result.err == "invalid URL: http://"


@pytest.mark.asyncio
async def test_a_server_that_hangs_up_is_an_error_line(env: Env) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        spec = HttpRequestSpec("GET", f"http://127.0.0.1:{port}/")
        result = await RunningRequest().run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    assert result.status is None and not result.succeeded
    assert result.err == "server disconnected before the response was complete"
    assert "\n" not in result.err


@pytest.mark.asyncio
async def test_a_malformed_response_is_an_error_line(env: Env) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        spec = HttpRequestSpec("GET", f"http://127.0.0.1:{port}/")
        result = await RunningRequest().run(env.session, spec, timeout_s=5, output_limit=LIMIT)
    assert result.status is None
    assert re.fullmatch(r"invalid HTTP response: .+", result.err), result.err


# -- where a request may go (gdts.worker.egress) --------------------------------------------


@pytest.mark.asyncio
async def test_a_loopback_target_is_refused_by_the_workers_session(env: Env) -> None:
    spec = HttpRequestSpec("GET", env.url("/echo"))
    async with EgressPolicy().session() as session:
        result = await RunningRequest().run(session, spec, timeout_s=10, output_limit=LIMIT)
    assert result.status is None and not result.succeeded
    assert result.err.startswith("refused: 127.0.0.1 is loopback")
    assert "httpJobAllow" in result.err
    assert env.state.hits == 0  # nothing reached the server


@pytest.mark.asyncio
async def test_a_name_that_resolves_to_loopback_is_refused_too(env: Env) -> None:
    spec = HttpRequestSpec("GET", env.url("/echo").replace("127.0.0.1", "localhost"))
    async with EgressPolicy().session() as session:
        result = await RunningRequest().run(session, spec, timeout_s=10, output_limit=LIMIT)
    assert "refused:" in result.err and "loopback" in result.err
    assert env.state.hits == 0


@pytest.mark.asyncio
async def test_the_metadata_address_is_refused_without_a_connection_attempt() -> None:
    spec = HttpRequestSpec("GET", "http://169.254.169.254/latest/meta-data/")
    async with EgressPolicy().session() as session:
        result = await RunningRequest().run(session, spec, timeout_s=10, output_limit=LIMIT)
    assert result.err.startswith("refused: 169.254.169.254 is link-local")


@pytest.mark.asyncio
async def test_a_listed_address_is_reached(env: Env) -> None:
    spec = HttpRequestSpec("GET", env.url("/echo"))
    async with EgressPolicy(["127.0.0.0/8"]).session() as session:
        result = await RunningRequest().run(session, spec, timeout_s=10, output_limit=LIMIT)
    assert result.succeeded and result.status == 200
