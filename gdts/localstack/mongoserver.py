"""mongod as a local child process (see process): standalone, or one member of a replica set."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from gdts.localstack.process import LocalStackError, ServerProcess, ServerTls, find_mongod

_MONGO_OPLOG_MB = 64
_MONGO_QUIESCE_MS = 500


class MongoProcess(ServerProcess):
    """A standalone mongod (no replica set: no transactions or change streams), or with
    repl_set one member of that replica set (MongoReplicaSet initiates it).

    With tls the server takes TLS connections only (see ServerTls); `uri` then carries the
    CA and, with client_cert_auth, the server's own certificate as its client certificate.
    """

    what = "mongod"

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        log_path: Path | None = None,
        repl_set: str | None = None,
        tls: ServerTls | None = None,
        auth: bool = False,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        """With ``auth``, mongod refuses every command but a few (ping, hello) without a user
        (see storeauth for making the first ones). ``parameters``: more of mongod's
        ``--setParameter name=value``."""
        super().__init__(data_dir, host, client_port, log_path)
        self.repl_set = repl_set
        self.tls = tls
        self.auth = auth
        self.parameters = dict(parameters or {})

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

    def uri_for(self, user: str, password: str) -> str:
        """``uri`` for a user defined in the admin database."""
        credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return self.uri.replace("mongodb://", "mongodb://" + credentials, 1) + "&authSource=admin"

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
        for name, value in self.parameters.items():
            argv += ["--setParameter", f"{name}={value}"]
        if self.auth:
            argv.append("--auth")
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

    async def probe(self, remaining: float) -> bool:
        # Cheap TCP check first: against a closed port a ping would sit out its whole server
        # selection timeout instead of failing fast.
        if not await self._port_open(min(1.0, remaining)):
            return False
        # With directConnection a ping is answered in any replica-set state (no primary needed).
        return await self._command({"ping": 1}, min(1.0, remaining)) is not None
