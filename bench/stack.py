"""The system under test, started from scratch by gdts.supervisor: etcd and mongod, one manager
and N workers as child processes, each with its own generated config and log file."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gdts.dev import STORE_USER, DevCredentials, start_secured_stores
from gdts.localstack import EtcdProcess, MongoProcess, free_port
from gdts.supervisor import REPO_ROOT, Child, Supervisor

ETCD_PREFIX = "/gdts-bench/"
IDENTITIES = ("root", "user", "uids")
_UIDS_PER_WORKER = 200
MONGO_DB = "gdts_bench"


@dataclass
class Stack:
    workdir: Path
    etcd: EtcdProcess | None = None
    mongo: MongoProcess | None = None
    manager: Child | None = None
    workers: list[Child] = field(default_factory=list)
    log_level: str = "WARNING"
    identity: str = "root"  # one of IDENTITIES: who the workers run jobs as
    auth: bool = False  # etcd and mongod with authentication, started as `make run` starts them
    # The admin token this stack's manager accepts: the benchmark calls the API as admin.
    admin_token: str = field(default_factory=lambda: "gdts_bench_" + secrets.token_urlsafe(24))
    supervisor: Supervisor = field(init=False)
    _store_keys: dict[str, Any] = field(init=False, default_factory=dict)
    _credentials: DevCredentials = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.workdir, log_dir=self.workdir, on_stuck=_print_stuck)
        made_up = {name: secrets.token_urlsafe(24) for name in DevCredentials.__annotations__}
        self._credentials = DevCredentials(**made_up)

    @property
    def mongo_uri(self) -> str:
        """What GDTS connects to MongoDB with (the user's, with ``auth``)."""
        return str(self._store_keys["mongodbUri"])

    async def etcd_gateway_headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """Headers for etcd's JSON gateway: with ``auth``, the GDTS user's token."""
        if not self.auth:
            return {}
        body = {"name": STORE_USER, "password": self._credentials.etcd_password}
        async with session.post(f"{self.etcd_url}/v3/auth/authenticate", json=body) as resp:
            resp.raise_for_status()
            return {"Authorization": (await resp.json(content_type=None))["token"]}

    @property
    def manager_url(self) -> str:
        assert self.manager is not None and self.manager.url is not None
        return self.manager.url

    @property
    def etcd_url(self) -> str:
        assert self.etcd is not None
        return f"http://{self.etcd.endpoint}"

    async def start_stores(self) -> None:
        if self.auth:
            stores = await start_secured_stores(
                self.supervisor, self.workdir, self._credentials, ETCD_PREFIX, MONGO_DB
            )
            self.etcd, self.mongo, self._store_keys = stores.etcd, stores.mongo, stores.config
            return
        self.etcd = EtcdProcess(self.workdir / "etcd", log_path=self.workdir / "etcd.log")
        await self.supervisor.start_store(self.etcd)
        self.mongo = MongoProcess(self.workdir / "mongo", log_path=self.workdir / "mongod.log")
        await self.supervisor.start_store(self.mongo)
        self._store_keys = {
            "etcdEndpoints": [self.etcd.endpoint],
            "etcdPrefix": ETCD_PREFIX,
            "mongodbUri": self.mongo.uri,
            "mongodbDatabase": MONGO_DB,
        }

    def _stores_config(self) -> dict[str, Any]:
        assert self._store_keys, "the stores are not started"
        return {
            **self._store_keys,
            "logLevel": self.log_level,
            # JSON lines, so the log summary at the end can group messages reliably.
            "logFormat": "json",
        }

    async def start_manager(self, **overrides: Any) -> Child:
        """``overrides``: more manager config keys (JSON names)."""
        port = free_port()
        config = {
            **self._stores_config(),
            "apiHost": "127.0.0.1",
            "apiPort": port,
            "webroot": str(REPO_ROOT / "webroot"),
            "adminToken": self.admin_token,
            # Set, so the manager does not print a generated one into the report's log lines.
            "adminPassword": secrets.token_urlsafe(16),
            **overrides,
        }
        self.manager = await self.supervisor.spawn("manager", "manager", config)
        self.manager.url = f"http://127.0.0.1:{port}"
        return self.manager

    async def start_worker(self, worker_id: str) -> Child:
        port = free_port()
        config = {
            **self._stores_config(),
            "workerId": worker_id,
            "httpListen": f"127.0.0.1:{port}",
            "spillDir": str(self.workdir / f"spill-{worker_id}"),
            **self._identity(len(self.workers)),
        }
        child = await self.supervisor.spawn("worker", f"worker-{worker_id}", config)
        child.url = f"http://127.0.0.1:{port}"
        self.workers.append(child)
        return child

    def _identity(self, index: int) -> dict[str, Any]:
        if self.identity == "user":
            return {"runAs": "nobody"}
        if self.identity == "uids":
            first = 62000 + index * _UIDS_PER_WORKER
            return {
                "runUidRange": f"{first}-{first + _UIDS_PER_WORKER - 1}",
                "runDir": str(self.workdir / f"runs-{index}"),
            }
        # Its jobs append to a file in this root-owned work dir, and CI runs as root.
        return {"allowRoot": True}

    def crashed(self) -> list[str]:
        """Names of GDTS processes that exited on their own."""
        return self.supervisor.crashed()

    async def stop(self) -> None:
        """Workers first (they drain and flush), then the manager, then the stores. Safe to
        call on a half-started stack, and more than once."""
        await self.supervisor.stop()


def _print_stuck(child: Child) -> None:
    """What a process that ignores SIGTERM is doing: its threads' states, its children, and the
    end of its log."""
    print(f"!! {child.name} did not stop; SIGKILL", flush=True)
    task_dir = Path(f"/proc/{child.pid}/task")
    with contextlib.suppress(OSError):
        states = Counter(
            (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in task_dir.iterdir()
        )
        print(f"   threads by state: {dict(states)}", flush=True)
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == child.pid:
                    kids.append(f"{entry.name} {(entry / 'cmdline').read_bytes()[:80]!r}")
    print(f"   children: {kids or 'none'}", flush=True)
    with contextlib.suppress(OSError):
        for line in child.log_text().splitlines()[-10:]:
            print(f"   log: {line[:300]}", flush=True)


_NUMBERS = re.compile(r"\d+(\.\d+)?")


def summarize_log(path: Path, top: int = 5) -> dict[str, Any]:
    """Count WARNING/ERROR lines of one GDTS log, grouped by message with numbers blanked.

    Only a hint for the reader of the report; every figure comes from side effects."""
    counts: Counter[str] = Counter()
    other = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            other += 1  # a traceback or a line printed before logging was set up
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            msg = _NUMBERS.sub("N", str(entry.get("msg", "")))[:160]
            counts[f"{entry['level']} {entry.get('logger', '')}: {msg}"] += 1
    summary: dict[str, Any] = {"warnings_errors": sum(counts.values())}
    if counts:
        summary["top"] = [{"count": n, "msg": m} for m, n in counts.most_common(top)]
    if other:
        summary["non_json_lines"] = other
    return summary
