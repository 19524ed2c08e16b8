"""Running one command: ``bash -c`` in its own process group, output captured with a cap, and a
kill that reaches every process in the group (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
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
        if self.kill_requested:
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
        self, bash_path: str, command: str, env: Mapping[str, str], output_limit: int
    ) -> ExecResult:
        start_ms = now_ms()
        try:
            process = await asyncio.create_subprocess_exec(
                bash_path,
                "-c",
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # own session => own process group to signal as a whole
            )
        except OSError as exc:
            return ExecResult(
                start_ms, now_ms(), "", None, f"cannot start {bash_path}: {exc}", False
            )
        self._pgid = process.pid
        if self.kill_requested:  # killed while starting
            self._killer = asyncio.get_running_loop().create_task(self._terminate())
        assert process.stdout is not None
        capture = _Capture(output_limit)
        reader = asyncio.create_task(capture.read_all(process.stdout))
        try:
            returncode = await process.wait()
        except asyncio.CancelledError:
            # The worker is going down hard: do not leave the group running behind us.
            _signal_group(process.pid, signal.SIGKILL)
            reader.cancel()
            raise
        self._exited.set()
        end_ms = now_ms()
        if self._killer is not None:
            # The shell is gone; the killer now sends SIGKILL to whatever is left of the group.
            await self._killer
        try:
            await asyncio.wait_for(asyncio.shield(reader), _PIPE_DRAIN_S)
        except TimeoutError:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            capture.note("[output closed: a background process still held it open]")
        return ExecResult(
            start_ms=start_ms,
            end_ms=end_ms,
            output=capture.text(),
            exit_code=returncode if returncode >= 0 else None,
            err=_describe_exit(returncode, self.kill_requested),
            killed=self.kill_requested,
        )


class _Capture:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self._dropped = 0
        self._notes: list[str] = []

    async def read_all(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
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
        text = f"terminated by signal {signal.Signals(-returncode).name}"
    else:
        text = f"exit status {returncode}"
    return f"killed on request; {text}" if killed else text


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
