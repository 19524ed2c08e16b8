"""Helpers shared by the integration and end-to-end tests: real processes, real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from gdts.clock import now_ms as now_ms  # the tests read the clock through here
from gdts.keys import bucket_of
from gdts.localstack import free_port
from gdts.supervisor import REPO_ROOT as REPO_ROOT
from gdts.supervisor import Child, Supervisor
from gdts.worker.partition import Partition

T = TypeVar("T")
EVERY_SECOND = "* * * * * *"
# Every test manager starts with this admin account and token; api_call sends the token.
ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password"
ADMIN_TOKEN = "gdts_test-admin-token-0123456789abcdef"


async def wait_until(
    check: Callable[[], Awaitable[T]], seconds: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + seconds
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


@dataclass
class Stack:
    """Where this test's etcd keys and Mongo documents live; unique per test."""

    etcd_endpoint: str
    mongo_uri: str
    prefix: str
    database: str
    tmp: Path

    def store_config(self) -> dict[str, Any]:
        return {
            "etcdEndpoints": [self.etcd_endpoint],
            "etcdPrefix": self.prefix,
            "etcdDialTimeout": 3000,
            "mongodbUri": self.mongo_uri,
            "mongodbDatabase": self.database,
            "mongodbConnectTimeout": 3000,
        }

    def worker_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            **self.store_config(),
            "workerLeaseTtl": 3,
            "jobLogCommitTimeout": 100,
            "killGracePeriod": 1000,
            "drainTimeout": 5000,
            # The tests run as root in CI, and their jobs write to the test's own directory.
            "allowRoot": True,
            # The tests' HTTP receivers listen on loopback, which http jobs may not reach unless
            # listed (tests of that refusal override this).
            "httpJobAllow": ["127.0.0.0/8"],
            **overrides,
        }

    def manager_config(self, port: int, **overrides: Any) -> dict[str, Any]:
        return {
            **self.store_config(),
            "apiHost": "127.0.0.1",
            "apiPort": port,
            "webroot": str(REPO_ROOT / "webroot"),
            "adminPassword": ADMIN_PASSWORD,
            "adminToken": ADMIN_TOKEN,
            **overrides,
        }


class Cluster:
    """The manager and workers of one test (gdts.supervisor); stops them all at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.supervisor = Supervisor(stack.tmp, log_dir=stack.tmp, stop_timeout_s=20)
        self.api = ""

    @property
    def processes(self) -> list[Child]:
        return self.supervisor.children

    async def spawn(self, kind: str, name: str, config: dict[str, Any]) -> Child:
        return await self.supervisor.spawn(kind, name, config)

    async def start_manager(self, **overrides: Any) -> Child:
        port = free_port()
        manager = await self.spawn(
            "manager", "manager", self.stack.manager_config(port, **overrides)
        )
        self.api = f"http://127.0.0.1:{port}"

        async def answers() -> bool:
            if manager.process.returncode is not None:
                raise AssertionError(f"manager exited:\n{manager.log_text()}")
            try:
                await api_get(self.api, "/job/list")
                return True
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(answers, 30, "the manager to answer")
        return manager

    async def start_worker(self, worker_id: str, **overrides: Any) -> Child:
        overrides.setdefault("spillDir", str(self.stack.tmp / f"spill-{worker_id}"))
        worker = await self.spawn(
            "worker", worker_id, self.stack.worker_config(workerId=worker_id, **overrides)
        )

        async def registered() -> bool:
            if worker.process.returncode is not None:
                raise AssertionError(f"worker {worker_id} exited:\n{worker.log_text()}")
            return "started" in worker.log_text() and "loaded" in worker.log_text()

        await wait_until(registered, 30, f"worker {worker_id} to start")
        return worker

    async def start_together(self, *starts: Coroutine[Any, Any, Child]) -> list[Child]:
        """Await start_manager and start_worker calls side by side rather than one after
        another (each process spends most of its start importing and connecting, so a manager
        and three workers are up in about half the time); the first that fails cancels the
        others."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(start) for start in starts]
        return [task.result() for task in tasks]

    async def stop_all(self) -> None:
        await self.supervisor.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log_text()[-4000:]}" for p in self.processes)


async def api_call(
    base: str,
    method: str,
    path: str,
    data: dict[str, str] | None = None,
    token: str | None = ADMIN_TOKEN,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """One API request, as the test admin unless ``token`` says otherwise (None: no token)."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, base + path, data=data, headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()


async def api_get(base: str, path: str, **params: Any) -> Any:
    status, body = await api_call(base, "GET", path, params={k: str(v) for k, v in params.items()})
    assert status == 200 and body["errno"] == 0, (status, body)
    return body["data"]


async def api_post(base: str, path: str, **form: str) -> Any:
    status, body = await api_call(base, "POST", path, data=form)
    assert status == 200 and body["errno"] == 0, (status, body)
    return body["data"]


async def save_job(base: str, name: str, command: str, cron_expr: str) -> Any:
    job = json.dumps({"name": name, "command": command, "cronExpr": cron_expr})
    return await api_post(base, "/job/save", job=job)


async def job_runs(cluster: Cluster, name: str, limit: int = 1000) -> list[dict[str, Any]]:
    """A job's runs from /job/log, newest first."""
    return await api_get(cluster.api, "/job/log", name=name, limit=limit)


def holds(predicate: Callable[[], object]) -> Callable[[], Awaitable[bool]]:
    """A synchronous check in the shape wait_until takes."""

    async def check() -> bool:
        return bool(predicate())

    return check


async def save_job_fields(base: str, **fields: Any) -> Any:
    """Save a job with any of its fields (the JSON form of /job/save)."""
    return await api_post(base, "/job/save", job=json.dumps(fields))


def cron_at(epoch_s: float) -> str:
    """A 7-field expression that fires once, at the whole second ``epoch_s`` (UTC)."""
    t = time.gmtime(epoch_s)
    return f"{t.tm_sec} {t.tm_min} {t.tm_hour} {t.tm_mday} {t.tm_mon} * {t.tm_year}"


def read_ticks(path: Path) -> list[tuple[int, str]]:
    """Lines "<planTime> <worker>" appended by the jobs under test."""
    if not path.exists():
        return []
    ticks = []
    for line in path.read_text().splitlines():
        plan, worker = line.split()
        ticks.append((int(plan), worker))
    return ticks


def record_command(path: Path, extra: str = "") -> str:
    """A job command that appends its planned tick and worker to ``path`` (O_APPEND: atomic)."""
    return f'echo "$GDTS_PLAN_TIME $GDTS_WORKER_ID" >> {path}{extra}'


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie awaiting its reaper counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TcpProxy:
    """A loopback TCP proxy in front of a server, which a test can cut (connections dropped),
    stall (connections kept, nothing moves) and heal to simulate a network partition between
    one client and that server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.cut_off = False
        self._closed = False
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off or self._closed:
            writer.close()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        # Cut or closed while the upstream connection was opening: nothing may flow, and a
        # connection piped after close() would outlive the test's event loop unclosed.
        if self.cut_off or self._closed:
            writer.close()
            up_writer.close()
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self.cut_off = False
        self._flowing.set()

    async def close(self) -> None:
        self._closed = True
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def tick_report(path: Path, after_ms: int, before_ms: int) -> tuple[dict[int, int], list[int]]:
    """(duplicates, misses) of a job that fires every second, between two instants."""
    plans = [plan for plan, _ in read_ticks(path)]
    counts: dict[int, int] = {}
    for plan in plans:
        counts[plan] = counts.get(plan, 0) + 1
    duplicates = {plan: n for plan, n in counts.items() if n > 1}
    if not plans:
        return duplicates, []
    # Never earlier than the first recorded tick: "after 0" must not mean "since 1970".
    first = max((after_ms // 1000 + 1) * 1000, min(plans))
    misses = [t for t in range(first, before_ms - 999, 1000) if t not in counts]
    return duplicates, misses


async def probe(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            if path == "/metrics":
                return response.status, await response.text()
            return response.status, await response.json()


async def count_at_least(path: Path, at_least: int) -> bool:
    return len(read_ticks(path)) >= at_least


async def count_after(path: Path, after_ms: int, at_least: int) -> bool:
    return sum(1 for plan, _ in read_ticks(path) if plan > after_ms) >= at_least


@contextlib.contextmanager
def passable_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory that other uids may pass through (but not list), removed at the end:
    a run with a uid of its own must reach its working directory below it, which pytest's
    own temporary directories (0700, root's) would not let it do."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def job_owned_by(owner: str, workers: list[str], prefix: str = "job") -> str:
    """A job name whose ticks ``owner`` claims first among ``workers`` (see partition): with
    fewer jobs than workers, which worker runs which job is otherwise left to the hash."""
    return next(
        name
        for name in (f"{prefix}-{n}" for n in range(10_000))
        if Partition(owner, workers).owns(bucket_of(name))
    )
