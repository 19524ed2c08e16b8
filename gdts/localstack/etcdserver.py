"""etcd as a local child process (see process): one member of its own, or one of a cluster."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from gdts.localstack.process import LocalStackError, ServerProcess, ServerTls, find_etcd, free_port


class EtcdProcess(ServerProcess):
    """A single-member etcd cluster; restartable on the same data dir and ports."""

    what = "etcd"

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

    async def request(self, method: str, path: str, timeout: float) -> tuple[int, str]:  # noqa: ASYNC109
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
        status, text = await self.request(method, path, timeout)
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

    async def probe(self, remaining: float) -> bool:
        try:
            status, body = await self._http_json("GET", "/health", min(1.0, remaining))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"
