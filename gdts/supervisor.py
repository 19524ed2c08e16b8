"""GDTS processes (managers and workers) as children of this one, with the local stores they
use: one config file and one log each, a stop in order, and, when asked, a restart of a child
that died, as the shipped systemd units do. The one supervisor of `gdts dev`, the benchmark and
the tests.

Stop order: workers first (they drain their runs and flush results while the manager and the
stores are still up), then managers, then the stores. Children run in sessions of their own, so
a Ctrl-C at the terminal reaches only us, and die with us if we are killed outright
(parent-death signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdts.localstack.process import LocalStackError, ServerProcess, pdeathsig_preexec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
# A child gets this long to stop on SIGTERM before it is killed. A worker's own bound is
# drainTimeout (30 s by default) + killGracePeriod (5 s) + 5 s + the result flush (5 s).
STOP_TIMEOUT_S = 60.0
# Restarts back off from the first to the last, doubling while a child keeps dying young.
RESTART_BACKOFF_S = (1.0, 30.0)
_YOUNG_S = 10.0  # a child that dies sooner than this after its start died young
_CONFIG_ERROR = 2  # exit status of a bad config: restarting cannot help (as systemd's units)


@dataclass
class Child:
    """One GDTS process we started: ``python -m gdts <kind> -c <config>``."""

    name: str
    kind: str  # "manager" or "worker"
    config_path: Path
    log_path: Path | None  # None: it writes to our own stdout and stderr
    process: asyncio.subprocess.Process
    spawned_at: float = field(default_factory=time.monotonic)
    url: str | None = None  # where it answers HTTP (a manager's API, a worker's probes)
    restarts: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    async def terminate(self, grace: float = 30.0) -> int:
        """SIGTERM, then wait up to ``grace`` seconds (TimeoutError if it does not end)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), grace)

    async def kill(self) -> None:
        """SIGKILL: no drain, no flush, as a crash or the OOM killer would."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def stop(
        self, grace: float = STOP_TIMEOUT_S, on_stuck: Callable[[Child], None] | None = None
    ) -> None:
        """SIGTERM, and SIGKILL if it has not ended within ``grace`` seconds (after telling
        ``on_stuck``, which may look at what it is doing)."""
        try:
            await self.terminate(grace)
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", self.name, grace)
            if on_stuck is not None:
                on_stuck(self)
            await self.kill()


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read: configs hold passwords and tokens, and a job runs
    on the same host under another uid."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode on open: set it
    with os.fdopen(fd, "w") as file:
        file.write(text)


class Supervisor:
    """``async with Supervisor(workdir) as supervisor``: everything it started is stopped, in
    order, on the way out."""

    def __init__(
        self,
        workdir: Path,
        *,
        log_dir: Path | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        on_stuck: Callable[[Child], None] | None = None,
    ) -> None:
        """Configs go to ``workdir``; each child's log to ``log_dir/<name>.log`` (None: to our
        own output). ``on_stuck`` hears of a child that ignored SIGTERM, before it is killed."""
        self.workdir = Path(workdir)
        self.log_dir = log_dir
        self._stop_timeout_s = stop_timeout_s
        self._on_stuck = on_stuck
        self.children: list[Child] = []
        self._stores: list[ServerProcess] = []

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start_store(self, store: ServerProcess) -> None:
        """Start a local etcd or mongod, stopped after every GDTS process."""
        await store.start()
        self._stores.append(store)

    async def spawn(self, kind: str, name: str, config: dict[str, Any]) -> Child:
        """Write ``<name>.json`` and start ``python -m gdts <kind>`` on it."""
        config_path = self.workdir / f"{name}.json"
        write_private(config_path, json.dumps(config, indent=2) + "\n")
        log_path = None if self.log_dir is None else self.log_dir / f"{name}.log"
        process = await self._start(kind, config_path, log_path)
        child = Child(name, kind, config_path, log_path, process)
        self.children.append(child)
        return child

    async def _start(
        self, kind: str, config_path: Path, log_path: Path | None
    ) -> asyncio.subprocess.Process:
        # The children import gdts from this checkout wherever we were started.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with contextlib.ExitStack() as files:
            output = None
            if log_path is not None:
                # Appended: a restarted child's log follows its earlier life.
                output = files.enter_context(log_path.open("ab"))
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gdts", kind, "-c", str(config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT if output is not None else None,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )  # fmt: skip

    def crashed(self) -> list[str]:
        """The GDTS processes that exited on their own, each with its exit status."""
        return [
            f"{c.name} (exit {c.returncode})" for c in self.children if c.returncode is not None
        ]

    async def supervise(self, stop: asyncio.Event) -> int:
        """Until ``stop`` is set: restart a GDTS process that exits (after a backoff, longer
        while it keeps dying young; never one that exits with a config error). Returns 0, or 1
        when a store or a misconfigured child ended, which stops everything."""
        first = RESTART_BACKOFF_S[0]
        backoff: dict[str, float] = {}
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waits = {asyncio.ensure_future(c.process.wait()): c for c in self.children}
                stores = {asyncio.ensure_future(s.wait()): s for s in self._stores}
                try:
                    done, _ = await asyncio.wait(
                        [stopping, *waits, *stores], return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for future in [*waits, *stores]:
                        future.cancel()
                if stop.is_set():
                    return 0
                for future in done & stores.keys():
                    log.error("%s exited on its own; stopping everything", stores[future].what)
                    return 1
                for future in done & waits.keys():
                    child = waits[future]
                    if child.returncode == _CONFIG_ERROR:
                        log.error("%s cannot start (config error); stopping everything",
                                  child.name)  # fmt: skip
                        return 1
                    young = time.monotonic() - child.spawned_at < _YOUNG_S
                    delay = backoff.get(child.name, first) if young else first
                    backoff[child.name] = min(2 * delay, RESTART_BACKOFF_S[1])
                    log.warning("%s exited with status %s; restarting it in %.0fs",
                                child.name, child.returncode, delay)  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return 0
                    await self.restart(child)
            return 0
        finally:
            stopping.cancel()

    async def restart(self, child: Child) -> None:
        """Start a child that ended again, on the same config and log."""
        if child.returncode is None:
            raise LocalStackError(f"{child.name} is still running (pid {child.pid})")
        child.process = await self._start(child.kind, child.config_path, child.log_path)
        child.spawned_at = time.monotonic()
        child.restarts += 1
        log.info("%s restarted (pid %d)", child.name, child.pid)

    async def stop(self) -> None:
        """Workers (together), then managers, then the stores. Safe on a half-started set, and
        more than once."""
        try:
            for kind in ("worker", "manager"):
                await asyncio.gather(
                    *(
                        c.stop(self._stop_timeout_s, self._on_stuck)
                        for c in self.children
                        if c.kind == kind
                    )
                )
        finally:
            for store in reversed(self._stores):
                await store.stop()
