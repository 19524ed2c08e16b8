"""``python -m gdts dev``: the whole system on one machine, for trying GDTS out.

Starts etcd and mongod (data under ``--data-dir``, free loopback ports), one manager on ``--port``
and N workers as child processes (see gdts.supervisor), restarts one that dies, and stops all of
them, in order, on Ctrl-C or SIGTERM: workers first (they drain and flush), then the manager, then
the stores. Children also die with us if this process is killed outright (parent-death signal),
so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pwd
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from gdts.localstack import EtcdProcess, LocalStackError, MongoProcess, free_port
from gdts.supervisor import REPO_ROOT, Supervisor

log = logging.getLogger("gdts.dev")

WEBROOT = REPO_ROOT / "webroot"
_DEV_JOB_USER = "nobody"


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


@dataclass(frozen=True)
class DevCredentials:
    username: str
    password: str
    token: str


def dev_credentials(data_dir: Path, admin_token: str | None) -> DevCredentials:
    """The admin account dev uses: made up the first time and kept in the data directory
    (readable by its owner only), so a second ``make run`` logs in with the same password;
    ``admin_token`` replaces the kept token."""
    path = data_dir / "credentials.json"
    try:
        kept = json.loads(path.read_text())
        credentials = DevCredentials(kept["username"], kept["password"], kept["token"])
    except (OSError, ValueError, KeyError, TypeError):
        credentials = DevCredentials(
            "admin", secrets.token_urlsafe(12), "gdts_" + secrets.token_urlsafe(32)
        )
        _keep(path, credentials)
    if admin_token and admin_token != credentials.token:
        # The manager accepts one config token: the file must name the one that works now.
        credentials = dataclasses.replace(credentials, token=admin_token)
        _keep(path, credentials)
    return credentials


def _keep(path: Path, credentials: DevCredentials) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(dataclasses.asdict(credentials), file)


def job_user() -> str | None:
    """Dev started as root runs jobs as nobody: a try-out must not hand root to whatever
    command is typed into the console."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_DEV_JOB_USER)
    except KeyError:
        return None
    return _DEV_JOB_USER


async def run_dev(
    port: int, workers: int, data_dir: Path, credentials: DevCredentials | None = None
) -> int:
    """``data_dir`` must exist (see prepare_data_dir)."""
    credentials = credentials or dev_credentials(data_dir, None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Supervisor(data_dir) as supervisor:
            etcd = EtcdProcess(data_dir / "etcd", log_path=data_dir / "etcd.log")
            mongo = MongoProcess(data_dir / "mongo", log_path=data_dir / "mongod.log")
            await supervisor.start_store(etcd)
            await supervisor.start_store(mongo)
            log.info("etcd at %s, mongod at %s (logs in %s)", etcd.endpoint, mongo.uri, data_dir)
            stores = {
                "etcdEndpoints": [etcd.endpoint],
                "mongodbUri": mongo.uri,
                "mongodbDatabase": "gdts",
            }
            await _start_gdts(supervisor, stores, port, workers, data_dir, credentials)
            # A process that dies is started again, as systemd would; only Ctrl-C or SIGTERM
            # (or a store that dies) stops everything.
            return await supervisor.supervise(stop)
    except LocalStackError as exc:
        log.error("%s", exc)
        return 1


async def _start_gdts(
    supervisor: Supervisor,
    stores: dict[str, object],
    port: int,
    workers: int,
    data_dir: Path,
    credentials: DevCredentials,
) -> None:
    await supervisor.spawn(
        "manager",
        "manager",
        {
            **stores,
            "apiPort": port,
            "webroot": str(WEBROOT),
            "adminUsername": credentials.username,
            "adminPassword": credentials.password,
            "adminToken": credentials.token,
        },
    )
    run_as = job_user()
    job_identity: dict[str, object] = {"runAs": run_as} if run_as else {}
    for index in range(1, workers + 1):
        probe_port = free_port()
        await supervisor.spawn(
            "worker",
            f"worker-{index}",
            {
                **stores,
                "drainTimeout": 20_000,
                "spillDir": str(data_dir / f"spill-{index}"),
                "httpListen": f"127.0.0.1:{probe_port}",
                **job_identity,
            },
        )
        log.info("worker-%d: metrics at http://127.0.0.1:%d/metrics", index, probe_port)
    log.info("GDTS is up: open http://localhost:%d  (Ctrl-C stops everything)", port)
    log.info(
        "log in as %s with password %s; API token: %s (kept in %s)",
        credentials.username,
        credentials.password,
        credentials.token,
        data_dir / "credentials.json",
    )
    if run_as:
        log.info("jobs run as user %r (dev was started as root)", run_as)
