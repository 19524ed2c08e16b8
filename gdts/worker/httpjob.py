"""Running one HTTP job: send a request, keep a capped transcript of the response, and report
an outcome shaped like a command's (start/end, output, error, killed) so the worker treats both
kinds of run alike.

Choices:

* Redirects are not followed. A job targets one endpoint; silently landing on another (a login
  page, another host) would turn a broken job into a green one. A 3xx is reported as it came, and
  a job that really expects it sets ``expected_status``.
* The transcript is capped in bytes, and the body is read in bounded chunks only until the cap is
  reached; the connection is then dropped. A job pointing at a large download must cost the
  worker ``output_limit`` bytes of memory, not the size of the download.
* Timeout and kill both cancel one inner task that owns the request, so aiohttp's own timeouts
  (and any default the shared session carries) are switched off: one clock, one way to stop.
* Every failure becomes an ``err`` line; only the caller's own cancellation leaves ``run()``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from gdts.clock import now_ms
from gdts.httptarget import HttpTarget
from gdts.worker.egress import EgressRefused
from gdts.worker.outputcap import OutputCap
from gdts.worker.redact import Redactor, capture_for

# How much of the body is asked for per read: bounds what a single read may add on top of the cap.
_CHUNK = 64 * 1024


# What to send: a job's own ``http`` field, as the job model checked it.
HttpRequestSpec = HttpTarget


def http_succeeded(status: int | None, expected_status: int | None) -> bool:
    """Whether a received status counts as success; ``None`` means no response arrived."""
    if status is None:
        return False
    if expected_status is not None:
        return status == expected_status
    return 200 <= status < 300


@dataclass(frozen=True)
class HttpResult:
    start_ms: int
    end_ms: int
    status: int | None  # None when no response head arrived
    output: str
    err: str
    killed: bool
    timed_out: bool
    # Carried from the spec so that ``succeeded`` can be read off the result alone.
    expected_status: int | None = None

    @property
    def succeeded(self) -> bool:
        if self.err or self.killed or self.timed_out:
            return False
        return http_succeeded(self.status, self.expected_status)


class RunningRequest:
    """One HTTP request; ``kill()`` may be called from anywhere, any number of times."""

    def __init__(self) -> None:
        self.kill_requested = False
        self._task: asyncio.Task[str] | None = None
        self._finished = False
        # Filled in by the inner task as the response arrives, so a kill or a timeout still
        # reports whatever had been received by then.
        self._status: int | None = None
        self.capture: OutputCap | None = None

    def kill(self, now: bool = False) -> None:
        """Cancel the request (at once, ``now`` or not)."""
        # Once the exchange is over the run already has its outcome: nothing to kill.
        if self.kill_requested or self._finished:
            return
        task = self._task
        if task is not None and task.done():
            return
        self.kill_requested = True
        if task is not None:
            task.cancel()

    async def run(
        self,
        session: aiohttp.ClientSession,
        spec: HttpRequestSpec,
        *,
        timeout_s: float | None,
        output_limit: int,
        env_headers: Mapping[str, str] = {},  # noqa: B006 - never mutated
        redactor: Redactor | None = None,
    ) -> HttpResult:
        """``redactor``: masks the secrets the request carries in what the response says."""
        start_ms = now_ms()
        capture = self.capture = capture_for(output_limit, redactor)
        if self.kill_requested:  # killed before it started: send nothing
            self._finished = True
            return self._result(start_ms, spec, "killed", killed=True, timed_out=False)
        task = asyncio.get_running_loop().create_task(
            self._exchange(session, spec, env_headers, capture)
        )
        self._task = task
        try:
            try:
                await asyncio.wait({task}, timeout=timeout_s)
            except asyncio.CancelledError:
                # The caller is going away: take the request down with us, then let it go.
                task.cancel()
                await asyncio.wait({task})
                raise
            # A kill that landed just before the deadline wins: its cancel is already on its way.
            timed_out = not task.done() and not self.kill_requested
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        finally:
            self._finished = True
        if timed_out:
            err = f"timed out after {timeout_s:g} s"
            return self._result(start_ms, spec, err, killed=False, timed_out=True)
        if task.cancelled():
            return self._result(start_ms, spec, "killed", killed=True, timed_out=False)
        return self._result(start_ms, spec, task.result(), killed=False, timed_out=False)

    def _result(
        self, start_ms: int, spec: HttpRequestSpec, err: str, *, killed: bool, timed_out: bool
    ) -> HttpResult:
        assert self.capture is not None
        return HttpResult(
            start_ms=start_ms,
            end_ms=now_ms(),
            status=self._status,
            output=self.capture.text(),
            err=err,
            killed=killed,
            timed_out=timed_out,
            expected_status=spec.expected_status,
        )

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        spec: HttpRequestSpec,
        env_headers: Mapping[str, str],
        capture: OutputCap,
    ) -> str:
        """Send the request and capture the response; returns the error text ("" if none)."""
        headers: CIMultiDict[str] = CIMultiDict(spec.headers)
        # The worker's headers replace a job's own of the same name: a job cannot pose as
        # another job or another plan time.
        for name, value in env_headers.items():
            headers[name] = value
        try:
            resp = await session.request(
                spec.method,
                spec.url,
                headers=headers,
                data=spec.body.encode("utf-8") if spec.body else None,
                allow_redirects=False,
                raise_for_status=False,
                timeout=aiohttp.ClientTimeout(),  # no limits: run() keeps the clock
            )
        except Exception as exc:  # every failure must become an err line, never an exception
            return _describe_error(exc, spec.url)
        try:
            self._status = resp.status
            capture.feed(_head(resp))
            content = resp.content
            while True:
                chunk = await content.read(_CHUNK)
                if not chunk:
                    return ""
                capture.feed(chunk)
                if capture.dropped:
                    # Full: stop reading. The size is exact only if this chunk was the last.
                    if not content.at_eof():
                        capture.more_unknown = True
                    return ""
        except Exception as exc:  # a body cut short is an err, with what came so far kept
            return _describe_error(exc, spec.url)
        finally:
            # After a complete body the connection is already back in the pool and this is a
            # no-op; otherwise it drops a connection that still has unread body on it.
            resp.close()


def _head(resp: aiohttp.ClientResponse) -> bytes:
    version = f"{resp.version.major}.{resp.version.minor}" if resp.version else "?"
    lines = [f"HTTP/{version} {resp.status} {resp.reason or ''}".rstrip().encode()]
    # Raw headers: names as the server spelled them, repeats kept, values not re-encoded.
    lines += [name + b": " + value for name, value in resp.raw_headers]
    return b"\n".join(lines) + b"\n\n"


def _describe_error(exc: BaseException, url: str) -> str:
    text = _error_text(exc, url)
    return " ".join(text.split())  # one line, whatever the library put in its message


def _error_text(exc: BaseException, url: str) -> str:
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return f"invalid URL: {url}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error from {exc.host}:{exc.port}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error with {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, EgressRefused):
        return f"refused: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected before the response was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"response body incomplete: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised for a malformed response (bad status line, oversized header, ...).
        return f"invalid HTTP response: {exc.message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {_os_reason(exc)}"
    if isinstance(exc, OSError):
        return f"connection error: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ClientError):
        return f"request failed: {exc}"
    return f"request failed: {type(exc).__name__}: {exc}"


def _os_reason(exc: OSError) -> str:
    # Checked before the errno: these carry library codes that os.strerror would misname.
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    # asyncio words a refused connection "Connect call failed ('127.0.0.1', 1)"; the errno
    # text ("Connection refused") is what a reader wants to see.
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__
