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
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from gdts.errors import GdtsError
from gdts.localstack import EtcdProcess, LocalStackError, MongoProcess, free_port
from gdts.localstack.storeauth import secure_etcd, secure_mongo
from gdts.secretbox import new_key_entry, parse_key_ring
from gdts.supervisor import REPO_ROOT, Supervisor, write_private

log = logging.getLogger("gdts.dev")

WEBROOT = REPO_ROOT / "webroot"
# Run uids no account uses (the worker checks), split among the workers.
_RUN_UIDS = (61000, 61999)
_UIDS_PER_WORKER = 250
STORE_USER = "gdts"  # etcd's and MongoDB's user for the manager and the workers
_ETCD_PREFIX = "/gdts/"
_DATABASE = "gdts"


def prepare_data_dir(data_dir: Path) -> Path:
    """The data directory, made if missing, that only its owner may list: it holds the stores'
    data, their passwords and every config (each 0600), and the runs' own directories, which
    the runs must reach (so others may pass through it)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711)
    return data_dir


@dataclass(frozen=True)
class DevCredentials:
    """The admin's login and API token, and the stores' passwords: made up the first time."""

    username: str
    password: str
    token: str
    etcd_root_password: str
    etcd_password: str  # the gdts user's: jobs/ and the rest under /gdts/, nothing else
    mongo_admin_password: str
    mongo_password: str  # the gdts user's: the gdts database, nothing else


def dev_credentials(data_dir: Path, admin_token: str | None) -> DevCredentials:
    """The credentials dev uses: made up the first time and kept in the data directory
    (readable by its owner only), so a second ``make run`` logs in with the same password and
    finds its stores' users; ``admin_token`` replaces the kept token."""
    path = data_dir / "credentials.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    made_up = {
        "username": "admin",
        "password": secrets.token_urlsafe(12),
        "token": "gdts_" + secrets.token_urlsafe(32),
        **{
            name: secrets.token_urlsafe(24)
            for name in ("etcd_root_password", "etcd_password", "mongo_admin_password",
                         "mongo_password")
        },
    }  # fmt: skip
    values = {
        name: kept[name] if isinstance(kept.get(name), str) else made_up[name] for name in made_up
    }
    if admin_token:
        # The manager accepts one config token: the file must name the one that works now.
        values["token"] = admin_token
    credentials = DevCredentials(**values)
    if values != kept:
        write_private(path, json.dumps(dataclasses.asdict(credentials)))
    return credentials


def dev_secret_keys(data_dir: Path) -> list[dict[str, str]]:
    """The key ring that seals the teams' secrets (see gdts.secretbox): made once and kept in
    the data directory (0600), so secrets saved by one ``make run`` open in the next."""
    path = data_dir / "secret-keys.json"
    try:
        kept = json.loads(path.read_text())
        parse_key_ring(kept)
        if isinstance(kept, list) and kept:
            return kept
    except (OSError, ValueError, GdtsError):
        pass
    made = [new_key_entry("dev1")]
    write_private(path, json.dumps(made))
    return made


def job_identity(index: int, data_dir: Path) -> dict[str, object]:
    """How worker ``index`` runs jobs. Started as root, each run gets a uid of its own from
    the worker's share of _RUN_UIDS (a try-out must not hand root, or one shared user, to
    whatever command is typed into the console); otherwise jobs run as whoever started dev."""
    if os.geteuid() != 0:
        return {}
    first = _RUN_UIDS[0] + (index - 1) * _UIDS_PER_WORKER
    last = first + _UIDS_PER_WORKER - 1
    return {"runUidRange": f"{first}-{last}", "runDir": str(data_dir / f"runs-{index}")}


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
            stores = (await start_secured_stores(supervisor, data_dir, credentials)).config
            await _start_gdts(supervisor, stores, port, workers, data_dir, credentials)
            # A process that dies is started again, as systemd would; only Ctrl-C or SIGTERM
            # (or a store that dies) stops everything.
            return await supervisor.supervise(stop)
    except LocalStackError as exc:
        log.error("%s", exc)
        return 1


@dataclass(frozen=True)
class SecuredStores:
    etcd: EtcdProcess
    mongo: MongoProcess
    config: dict[str, object]  # the store keys of every GDTS config


async def start_secured_stores(
    supervisor: Supervisor,
    data_dir: Path,
    credentials: DevCredentials,
    prefix: str = _ETCD_PREFIX,
    database: str = _DATABASE,
) -> SecuredStores:
    """etcd and mongod, each with authentication: a job on this host can reach their ports,
    and must not reach their data. The benchmark starts its stores here too, to measure what
    ``make run`` runs."""
    etcd = EtcdProcess(data_dir / "etcd", log_path=data_dir / "etcd.log")
    mongo = MongoProcess(data_dir / "mongo", log_path=data_dir / "mongod.log", auth=True)
    await supervisor.start_store(etcd)
    await secure_etcd(
        etcd,
        root_password=credentials.etcd_root_password,
        user=STORE_USER,
        password=credentials.etcd_password,
        prefix=prefix,
    )
    await supervisor.start_store(mongo)
    await secure_mongo(
        mongo,
        admin_password=credentials.mongo_admin_password,
        user=STORE_USER,
        password=credentials.mongo_password,
        database=database,
    )
    log.info("etcd at %s, mongod at %s (logs in %s)", etcd.endpoint, mongo.endpoint, data_dir)
    config: dict[str, object] = {
        "etcdEndpoints": [etcd.endpoint],
        "etcdPrefix": prefix,
        "etcdUsername": STORE_USER,
        "etcdPassword": credentials.etcd_password,
        "mongodbUri": mongo.uri_for(STORE_USER, credentials.mongo_password),
        "mongodbDatabase": database,
    }
    return SecuredStores(etcd, mongo, config)


async def _start_gdts(
    supervisor: Supervisor,
    stores: dict[str, object],
    port: int,
    workers: int,
    data_dir: Path,
    credentials: DevCredentials,
) -> None:
    # Both the manager (which seals) and the workers (which open) need the keys.
    stores = {**stores, "secretKeys": dev_secret_keys(data_dir)}
    await supervisor.spawn(
        "manager",
        "manager",
        {
            **stores,
            "apiPort": port,
            # Notifications link to the run in the console: here, on this machine.
            "publicUrl": f"http://localhost:{port}",
            "webroot": str(WEBROOT),
            "adminUsername": credentials.username,
            "adminPassword": credentials.password,
            "adminToken": credentials.token,
        },
    )
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
                **job_identity(index, data_dir),
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
    if os.geteuid() == 0:
        log.info("each run gets a uid of its own from %d up (dev was started as root)",
                 _RUN_UIDS[0])  # fmt: skip
