"""Kill latency: from POST /job/kill until the job's process is gone (or a zombie, i.e. dead
and only waiting for its worker to reap it)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.analysis import distribution
from bench.api import ManagerClient
from bench.procfs import process_state
from gdts.cron import parse_cron

# The one-shot tick is this far ahead (plus up to one second): enough for every worker to see
# the new job through its watch, on a quiet system.
_LEAD_S = 2
_PIDFILE_TIMEOUT_S = 15.0
_GONE_TIMEOUT_S = 30.0  # GDTS sends SIGKILL after killGracePeriod (5 s); this is far beyond
_POLL_S = 0.001


def one_shot_cron(epoch_s: int) -> str:
    """A 7-field expression that fires once, at epoch_s (UTC)."""
    t = datetime.fromtimestamp(epoch_s, UTC)
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} * {t.year}"


def _try_pid(path: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        text = path.read_text().strip()
        if text:  # the shell may not have finished writing it yet
            return int(text)
    return None


async def _read_pid(path: Path, deadline: float) -> int | None:
    while time.time() < deadline:
        if (pid := _try_pid(path)) is not None:
            return pid
        await asyncio.sleep(0.005)
    return None


async def _wait_gone(pid: int, timeout_s: float) -> float | None:
    """perf_counter() when the pid is gone or a zombie; None on timeout."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        state = process_state(pid)
        if state is None or state == "Z":
            return time.perf_counter()
        await asyncio.sleep(_POLL_S)
    return None


async def run_kills(
    api: ManagerClient, workdir: Path, count: int, name_prefix: str
) -> dict[str, Any]:
    latencies: list[float] = []
    post_latencies: list[float] = []
    failures: list[str] = []
    print(f"-- kill latency: {count} one-shot jobs, one at a time", flush=True)
    for i in range(count):
        name = f"{name_prefix}-kill-{i:03d}"
        pidfile = workdir / f"kill-{i:03d}.pid"
        pidfile.touch()
        pidfile.chmod(0o666)  # whatever uid the job runs as writes its pid into it
        fire_s = math.ceil(time.time()) + _LEAD_S
        cron = one_shot_cron(fire_s)
        parse_cron(cron)  # fail here, clearly, rather than as an API error
        command = f"echo $$ > {shlex.quote(str(pidfile))}; exec sleep 600"
        await api.save(name, command, cron)
        pid: int | None = None
        try:
            pid = await _read_pid(pidfile, fire_s + _PIDFILE_TIMEOUT_S)
            if pid is None:
                failures.append(f"{name}: never started (no pid file)")
                continue
            sent = time.perf_counter()
            # Poll from before the request: the process may be gone before the answer arrives.
            gone = asyncio.ensure_future(_wait_gone(pid, _GONE_TIMEOUT_S))
            try:
                await api.kill(name)
            except BaseException:
                gone.cancel()
                raise
            post_latencies.append(time.perf_counter() - sent)
            gone_at = await gone
            if gone_at is None:
                failures.append(f"{name}: pid {pid} still alive {_GONE_TIMEOUT_S:.0f}s after kill")
            else:
                latencies.append(gone_at - sent)
        finally:
            await api.delete(name)
            if pid is not None and process_state(pid) not in (None, "Z"):
                # GDTS did not kill it: do not leave our sleep 600 behind.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    return {
        "count": count,
        "latency_s": distribution(latencies),
        "api_latency_s": distribution(post_latencies),
        "failures": failures,
    }
