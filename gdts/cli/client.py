"""The manager's HTTP API as the command-line client calls it: form-encoded requests, the
``{"errno", "msg", "data"}`` envelope unwrapped, an error turned into an ApiError that keeps
the API's message and field, and a run's output followed as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gdts.cli.config import CliError, Target

# No call of the client waits long for an answer; following a stream has no total limit.
REQUEST_TIMEOUT_S = 60


class ApiError(CliError):
    """The API refused a request: its HTTP status, its message (which starts with the field's
    name) and the field, when it names one."""

    def __init__(self, status: int, message: str, field: str | None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)


class Client:
    """One manager, one token; an async context manager owning its aiohttp session (which also
    keeps the session cookie of ``/auth/login``)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.csrf_token: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"Accept": "application/json"}
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(sock_connect=10),
            # unsafe: keep the session cookie of a manager addressed by its IP address too
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Client as an async context manager"
        return self._session

    async def get(self, path: str, **params: Any) -> Any:
        return await self._call("GET", path, params=_form(params))

    async def post(self, path: str, **form: Any) -> Any:
        headers = {"X-CSRF-Token": self.csrf_token} if self.csrf_token else {}
        return await self._call("POST", path, data=_form(form), headers=headers)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.target.url + path
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        try:
            async with self.session.request(method, url, timeout=timeout, **kwargs) as response:
                text = await response.text(errors="replace")
                return _unwrap(response.status, text, url)
        except aiohttp.ClientError as exc:
            raise CliError(f"cannot reach the manager at {self.target.url}: {exc}") from None
        except TimeoutError:
            raise CliError(f"{url}: no answer within {REQUEST_TIMEOUT_S} s") from None

    async def events(self, path: str, **params: Any) -> AsyncIterator[tuple[str, Any]]:
        """A Server-Sent Events stream as (event, data) pairs: event "message" unless the
        stream names another, data parsed from JSON."""
        url = self.target.url + path
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        try:
            async with self.session.get(url, params=_form(params), timeout=timeout) as response:
                if response.content_type != "text/event-stream":
                    _unwrap(response.status, await response.text(errors="replace"), url)
                    raise CliError(f"{url}: answered {response.content_type}, not a stream")
                event, data = "message", ""
                async for raw in response.content:
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        data += line.removeprefix("data:").strip()
                    elif not line and data:
                        yield event, json.loads(data)
                        event, data = "message", ""
        except aiohttp.ClientError as exc:
            raise CliError(f"the manager at {self.target.url} broke off: {exc}") from None


def _form(values: dict[str, Any]) -> dict[str, str]:
    """Form fields as the API reads them: booleans as true/false, None left out."""
    form = {}
    for key, value in values.items():
        if value is None:
            continue
        form[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return form


def _unwrap(status: int, text: str, url: str) -> Any:
    """The ``data`` of a successful answer, or an ApiError with the API's message."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "errno" not in body:
        # Not the API's JSON: a proxy's page, or not a GDTS manager at all.
        raise ApiError(status, f"{url}: HTTP {status}, not an answer of the GDTS API", None)
    if body["errno"] != 0 or status >= 400:
        field = body.get("field") if isinstance(body.get("field"), str) else None
        raise ApiError(status, str(body.get("msg") or f"HTTP {status}"), field)
    return body.get("data")
