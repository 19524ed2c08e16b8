"""The manager's public HTTP API, as a benchmark client sees it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import aiohttp

_T = TypeVar("_T")
_RETRIES = 3
_RETRY_PAUSE_S = 0.5


class ApiError(RuntimeError):
    pass


class ManagerClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        """One API call; a 503 or a broken connection is retried (etcd may be busy under load),
        anything else that is not errno 0 raises at once."""
        url = self.base_url + path
        for attempt in range(_RETRIES):
            try:
                async with self.session.request(
                    method, url, data=form, headers=self.headers
                ) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt + 1 == _RETRIES:
                    raise ApiError(f"{method} {path}: {exc!r}") from exc
            else:
                if status == 200 and isinstance(body, dict) and body.get("errno") == 0:
                    return body.get("data")
                if status != 503 or attempt + 1 == _RETRIES:
                    raise ApiError(f"{method} {path} {form}: HTTP {status}: {body}")
            await asyncio.sleep(_RETRY_PAUSE_S)
        raise AssertionError("unreachable")

    async def save(self, name: str, command: str, cron: str) -> None:
        job = {"name": name, "command": command, "cronExpr": cron}
        await self._call("POST", "/job/save", {"job": json.dumps(job)})

    async def delete(self, name: str) -> None:
        await self._call("POST", "/job/delete", {"name": name})

    async def kill(self, name: str) -> None:
        await self._call("POST", "/job/kill", {"name": name})

    async def list_jobs(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/job/list")
        return list(data or [])

    async def list_workers(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/worker/list")
        return list(data or [])

    async def wait_ready(self, timeout_s: float) -> None:
        await wait_http_ok(self.session, self.base_url + "/health/ready", timeout_s)


async def wait_http_ok(session: aiohttp.ClientSession, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    raise ApiError(f"{url} not ready after {timeout_s:.0f}s: {last}")


async def bounded(
    items: Iterable[_T], call: Callable[[_T], Awaitable[None]], limit: int
) -> Sequence[float]:
    """Run ``call`` on every item with at most ``limit`` in flight; return each call's latency
    in seconds. The first failure cancels the rest and propagates."""
    semaphore = asyncio.Semaphore(limit)
    latencies: list[float] = []

    async def one(item: _T) -> None:
        async with semaphore:
            started = time.perf_counter()
            await call(item)
            latencies.append(time.perf_counter() - started)

    # A TaskGroup would create every task up front; with 100k items that is fine (a few
    # hundred bytes each) and keeps "first failure cancels the rest" simple.
    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
    return latencies
