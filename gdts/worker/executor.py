"""Running one command: ``bash -c`` in its own process group (as the ``runAs`` user when one is
set), output captured with a cap, and a kill that reaches every process in the group (SIGTERM,
then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gdts.worker.runas import JobUser

log = logging.getLogger(__name__)

# After the shell exits, a background child may still hold the output pipe open; we stop
# reading after this long instead of tying the run to that child's lifetime.
_PIPE_DRAIN_S = 1.0


@dataclass(frozen=True)
class ExecResult:
    start_ms: int
    end_ms: int
    output: str
    exit_code: int | None  # None when the process died from a signal or never started
    err: str
    killed: bool


def watch_children_with_pidfds() -> None:
    """Learn of job exits through pidfds on the running loop. Python 3.11's default child watcher
    starts a thread per process to block in waitpid(); under load that thread churn cost the
    worker about a tenth of its CPU. 3.12 picks pidfds by itself (and deprecates this API)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel before 5.3, or pidfd_open blocked by a seccomp policy
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RunningCommand:
    """One started process group; ``kill()`` may be called from anywhere, any number of times."""

    def __init__(self, kill_grace_s: float) -> None:
        self._kill_grace_s = kill_grace_s
        self._pgid: int | None = None
        self._exited = asyncio.Event()
        self.kill_requested = False
        self._killer: asyncio.Task[None] | None = None

    def kill(self) -> None:
        # After the shell exited there is nothing to kill: the run already has its outcome.
        if self.kill_requested or self._exited.is_set():
            return
        self.kill_requested = True
        if self._pgid is not None and not self._exited.is_set():
            self._killer = asyncio.get_running_loop().create_task(self._terminate())

    async def _terminate(self) -> None:
        assert self._pgid is not None
        _signal_group(self._pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), self._kill_grace_s)
        # Children that ignored SIGTERM (or outlived the shell) get SIGKILL.
        _signal_group(self._pgid, signal.SIGKILL)

    async def run(
        self,
        bash_path: str,
        command: str,
        env: Mapping[str, str],
        output_limit: int,
        *,
        user: JobUser | None = None,
    ) -> ExecResult:
        """``user``: who the whole group runs as (see gdts.worker.runas); None: the worker."""
        start_ms = now_ms()
        loop = asyncio.get_running_loop()
        protocol = _CaptureProtocol(_Capture(output_limit))
        # The child drops to the user between fork and exec: the worker keeps its own identity,
        # and with it the right to signal the group.
        as_user = {} if user is None else user.spawn_options()
        if user is not None:
            env = user.env(env)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                bash_path,
                "-c",
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # own session => own process group to signal as a whole
                **as_user,
            )
        except OSError as exc:
            return ExecResult(
                start_ms, now_ms(), "", None, f"cannot start {bash_path}: {exc}", False
            )
        self._pgid = transport.get_pid()
        try:
            if self.kill_requested:  # killed while starting
                self._killer = loop.create_task(self._terminate())
            try:
                await protocol.exited.wait()
            except asyncio.CancelledError:
                # The worker is going down hard: do not leave the group running behind us.
                _signal_group(self._pgid, signal.SIGKILL)
                raise
            self._exited.set()
            end_ms = now_ms()
            if self._killer is not None:
                # The shell is gone; the killer now sends SIGKILL to whatever is left of the group.
                await self._killer
            try:
                await asyncio.wait_for(protocol.output_closed.wait(), _PIPE_DRAIN_S)
            except TimeoutError:
                protocol.capture.note("[output closed: a background process still held it open]")
            returncode = transport.get_returncode()
            assert returncode is not None
        finally:
            transport.close()
        return ExecResult(
            start_ms=start_ms,
            end_ms=end_ms,
            output=protocol.capture.text(),
            exit_code=returncode if returncode >= 0 else None,
            err=_describe_exit(returncode, self.kill_requested),
            killed=self.kill_requested,
        )


class _CaptureProtocol(asyncio.SubprocessProtocol):
    """Learns of the shell's exit as soon as it happens. asyncio's Process.wait() also waits for
    the pipes to close, which ties a run to any background child that inherited them."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture
        self.exited = asyncio.Event()
        self.output_closed = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.capture.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.output_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


class _Capture:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self._dropped = 0
        self._notes: list[str] = []

    def feed(self, chunk: bytes) -> None:
        # Past the limit only a count is kept, so a chatty job cannot grow the worker's memory.
        room = self._limit - self._kept
        if room > 0:
            self._chunks.append(chunk[:room])
            self._kept += min(room, len(chunk))
        self._dropped += max(0, len(chunk) - max(room, 0))

    def note(self, text: str) -> None:
        self._notes.append(text)

    def text(self) -> str:
        out = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self._dropped:
            out += f"\n[output truncated: {self._dropped} more bytes not kept]"
        for note in self._notes:
            out += "\n" + note
        return out


def _describe_exit(returncode: int, killed: bool) -> str:
    if returncode == 0 and not killed:
        return ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # real-time signals have no name
            name = f"{-returncode}"
        text = f"terminated by signal {name}"
    else:
        text = f"exit status {returncode}"
    return f"killed on request; {text}" if killed else text


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
