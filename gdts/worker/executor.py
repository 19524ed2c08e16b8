"""Running one command: ``bash -c`` in its own process group (as the ``runAs`` user when one is
set), output captured with a cap, and a kill that reaches every process in the group (SIGTERM,
then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gdts.clock import now_ms
from gdts.worker.outputcap import OutputCap
from gdts.worker.redact import Redactor, capture_for
from gdts.worker.runas import JobUser
from gdts.worker.spawn import Process, Spawner

log = logging.getLogger(__name__)

# After the shell exits, a background child may still hold the output pipe open; we stop
# reading after this long instead of tying the run to that child's lifetime.
_PIPE_DRAIN_S = 1.0
_READ_CHUNK = 65536


@dataclass(frozen=True)
class ExecResult:
    start_ms: int
    end_ms: int
    output: str
    exit_code: int | None  # None when the process died from a signal or never started
    err: str
    killed: bool


class RunningCommand:
    """One started process group; ``kill()`` may be called from anywhere, any number of times.

    ``signal_run`` reaches every process of the run (a run with a uid of its own: see
    runuids); without it a kill reaches the shell's process group, which a child that calls
    setsid leaves."""

    def __init__(
        self,
        kill_grace_s: float,
        signal_run: Callable[[signal.Signals], None] | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self._kill_grace_s = kill_grace_s
        self._spawner = spawner or Spawner()
        self._signal_run = signal_run
        self._pgid: int | None = None
        self._exited = asyncio.Event()
        self.kill_requested = False
        self._killer: asyncio.Task[None] | None = None
        self.capture: OutputCap | None = None

    def kill(self, now: bool = False) -> None:
        """SIGTERM, then SIGKILL after the grace period; ``now``: SIGKILL at once (the run
        must not live another second)."""
        # After the shell exited there is nothing to kill: the run already has its outcome.
        if self._exited.is_set() or (self.kill_requested and not now):
            return
        self.kill_requested = True
        if self._pgid is None:
            return  # not started: run() kills it as it starts
        if now:
            self._signal(signal.SIGKILL)
        elif self._killer is None:
            self._killer = asyncio.get_running_loop().create_task(self._terminate())

    def _signal(self, sig: signal.Signals) -> None:
        assert self._pgid is not None
        if self._signal_run is not None:
            self._signal_run(sig)
        _signal_group(self._pgid, sig)

    async def _terminate(self) -> None:
        self._signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), self._kill_grace_s)
        # Children that ignored SIGTERM (or outlived the shell) get SIGKILL.
        self._signal(signal.SIGKILL)

    async def run(
        self,
        bash_path: str,
        command: str,
        env: Mapping[str, str],
        output_limit: int,
        *,
        user: JobUser | None = None,
        redactor: Redactor | None = None,
    ) -> ExecResult:
        """``user``: who the whole group runs as (see gdts.worker.runas); None: the worker.
        ``redactor``: masks the secrets the run was given in its output."""
        start_ms = now_ms()
        capture = self.capture = capture_for(output_limit, redactor)
        try:
            child = _Child.start(self._spawner, bash_path, command, env, user, capture)
        except (OSError, subprocess.SubprocessError) as exc:  # SubprocessError: the Popen fallback
            return ExecResult(
                start_ms, now_ms(), "", None, f"cannot start {bash_path}: {exc}", False
            )
        self._pgid = child.pid
        try:
            if self.kill_requested:  # killed while starting
                self._killer = asyncio.get_running_loop().create_task(self._terminate())
            try:
                await child.exited.wait()
            except asyncio.CancelledError:
                # The worker is going down hard: do not leave the group running behind us.
                self._signal(signal.SIGKILL)
                raise
            self._exited.set()
            end_ms = now_ms()
            if self._killer is not None:
                # The shell is gone; the killer now sends SIGKILL to whatever is left of the group.
                await self._killer
            try:
                await asyncio.wait_for(child.output_closed.wait(), _PIPE_DRAIN_S)
            except TimeoutError:
                child.capture.note("[output closed: a background process still held it open]")
        finally:
            child.close()
        returncode = child.returncode
        assert returncode is not None
        return ExecResult(
            start_ms=start_ms,
            end_ms=end_ms,
            output=child.capture.text(),
            exit_code=returncode if returncode >= 0 else None,
            err=_describe_exit(returncode, self.kill_requested),
            killed=self.kill_requested,
        )


class _Child:
    """A started shell, watched from the event loop: its exit through a pidfd, its output through
    a plain pipe read when readable. asyncio's subprocess transports did the same with pipe
    transports, protocols and tasks around each process, at twice the worker's CPU per spawn,
    and their wait() also waits for the pipes to close, which ties a run to any background child
    that inherited them."""

    def __init__(self, process: Process, output_fd: int, capture: OutputCap):
        self._process = process
        self.pid = process.pid
        self.capture = capture
        self.exited = asyncio.Event()
        self.output_closed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._output_fd = output_fd
        self._loop.add_reader(output_fd, self._read_output)
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfds (kernel before 5.3, a seccomp policy)
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
        else:
            self._loop.add_reader(self._pidfd, self._reap)

    @classmethod
    def start(
        cls,
        spawner: Spawner,
        bash_path: str,
        command: str,
        env: Mapping[str, str],
        user: JobUser | None,
        capture: OutputCap,
    ) -> _Child:
        if user is not None:
            env = user.env(env)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)  # only our end: the job's writes block as usual
        try:
            process = spawner.start([bash_path, "-c", command], env, write_fd, user)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child has its copy; ours would keep the pipe from closing
        return cls(process, read_fd, capture)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def _read_output(self) -> None:
        try:
            data = os.read(self._output_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.capture.feed(data)
        else:
            self._close_output()

    def _close_output(self) -> None:
        if self._output_fd >= 0:
            self._loop.remove_reader(self._output_fd)
            os.close(self._output_fd)
            self._output_fd = -1
            self.output_closed.set()

    def _reap(self) -> None:
        # Readable pidfd: the process has exited, so poll() reaps it at once.
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._process.poll()
        self.exited.set()

    def _wait_in_thread(self) -> None:
        self._process.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed first
            self._loop.call_soon_threadsafe(self.exited.set)

    def close(self) -> None:
        """Stop reading the output (a background process may still hold the pipe). A process
        still running (the run was cancelled) stays watched, so it is reaped when it dies."""
        self._close_output()


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
