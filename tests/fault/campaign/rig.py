"""The campaign's cluster on this machine, and the faults it can be dealt: 3 etcd members, a
MongoDB replica set of 3, 2 managers and 4 workers, each worker reaching every etcd member
through a proxy of its own (so one worker can be cut off, or stalled, alone).

Workers run in ``make run``'s set-up: as root, a uid of its own for each run (runUidRange),
with the guardian; under another user, as that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from gdts.config import WorkerConfig
from gdts.localstack import free_port
from gdts.supervisor import Child, write_private
from tests.clusters import EtcdCluster, MongoReplicaSet
from tests.fault.campaign.plan import ETCD_MEMBERS, MANAGERS, WORKERS, Fault, JobSpec
from tests.support import Cluster, Stack, TcpProxy, api_get, wait_until

# Run uids per worker, away from the other tests' and the benchmark's ranges.
_FIRST_UID = 63_000
_UIDS_PER_WORKER = 100
# make run's worker settings (the tests' own defaults are tighter, for speed): the lease, the
# kill grace period and the drain are the production ones.
WORKER_LEASE_TTL = WorkerConfig.worker_lease_ttl


class Rig:
    def __init__(self, base: Path, logs: Path) -> None:
        """``base``: a directory other uids may pass through (the jobs write below it)."""
        self.base = base
        self.logs = logs
        self.etcd = EtcdCluster(base / "etcd", ETCD_MEMBERS, log_dir=logs)
        self.mongo = MongoReplicaSet(base / "mongo", log_dir=logs)
        self.proxies: list[list[TcpProxy]] = []  # worker -> one proxy per etcd member
        self.managers: list[Child] = []
        self.workers: list[Child] = []
        self.apis: list[str] = []
        self.stack: Stack | None = None
        self.cluster: Cluster | None = None
        self.records_dir = base / "records"
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self.runs_file = self.records_dir / "runs"

    # -- up and down ----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.gather(self.etcd.start(), self.mongo.start())
        unique = uuid.uuid4().hex[:8]
        self.stack = Stack(
            etcd_endpoint=",".join(self.etcd.endpoints),
            mongo_uri=self.mongo.uri,
            prefix=f"/campaign-{unique}/",
            database=f"campaign_{unique}",
            tmp=self.logs,
        )
        self.cluster = Cluster(self.stack)
        self._make_records_dir()
        for _ in range(WORKERS):
            proxies = []
            for endpoint in self.etcd.endpoints:
                host, port = endpoint.rsplit(":", 1)
                proxy = TcpProxy(host, int(port))
                await proxy.start()
                proxies.append(proxy)
            self.proxies.append(proxies)
        for i in range(MANAGERS):
            await self._start_manager(i)
        for i in range(WORKERS):
            self.workers.append(await self.cluster.start_worker(f"w{i}", **self._worker_config(i)))

    async def _start_manager(self, i: int) -> None:
        """Each manager its own name, so its config and log are its own (a restart must come
        back on its own port)."""
        assert self.cluster is not None and self.stack is not None
        port = free_port()
        config = self.stack.manager_config(port, etcdEndpoints=self.etcd.endpoints)
        manager = await self.cluster.spawn("manager", f"m{i}", config)
        api = f"http://127.0.0.1:{port}"

        async def answers() -> bool:
            if manager.returncode is not None:
                raise AssertionError(f"manager m{i} exited:\n{manager.log_text()}")
            try:
                await api_get(api, "/job/list")
                return True
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(answers, 30, f"manager m{i} to answer")
        self.managers.append(manager)
        self.apis.append(api)

    def _worker_config(self, i: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "etcdEndpoints": [p.endpoint for p in self.proxies[i]],
            "workerLeaseTtl": WORKER_LEASE_TTL,
            "jobLogCommitTimeout": WorkerConfig.job_log_commit_timeout,
            "killGracePeriod": WorkerConfig.kill_grace_period,
            "drainTimeout": WorkerConfig.drain_timeout,
            "allowRoot": False,
        }
        if os.geteuid() == 0:
            first = _FIRST_UID + i * _UIDS_PER_WORKER
            config["runUidRange"] = f"{first}-{first + _UIDS_PER_WORKER - 1}"
            # Below base, which the run uids may pass through (the default, var/runs in the
            # checkout, is not where the checkout sits in a directory only root may enter).
            config["runDir"] = str(self.base / f"runs-w{i}")
        else:
            config.pop("allowRoot")
        return config

    def _make_records_dir(self) -> None:
        # Every run uid appends to the same files and makes its attempt directory beside them.
        self.records_dir.mkdir(mode=0o777)
        self.records_dir.chmod(0o777)
        for sub in ("a", "l"):
            (self.records_dir / sub).mkdir(mode=0o777)
            (self.records_dir / sub).chmod(0o777)
        self.runs_file.touch()
        self.runs_file.chmod(0o666)

    def prepare_job(self, job: JobSpec) -> None:
        lock = self.records_dir / "l" / job.name
        lock.touch()
        lock.chmod(0o666)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            for worker in self.workers:  # a stopped worker would not drain
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGCONT)
            if self.cluster is not None:
                await self.cluster.stop_all()
        for proxies in self.proxies:
            for proxy in proxies:
                await proxy.close()
        await asyncio.gather(self.etcd.stop(), self.mongo.stop(), return_exceptions=True)

    # -- faults ---------------------------------------------------------------------------------

    def lock_for(self, fault: Fault) -> asyncio.Lock:
        """The part a fault is dealt to (a worker, a manager, the etcd or MongoDB cluster)."""
        part = ("worker" if "worker" in fault.kind else fault.kind, fault.target)
        return self._locks.setdefault(part, asyncio.Lock())

    async def kill_worker(self, i: int) -> None:
        await self.workers[i].kill()

    async def restart_worker(self, i: int) -> None:
        assert self.cluster is not None
        await self.cluster.supervisor.restart(self.workers[i])

    def stop_worker(self, i: int) -> None:
        os.kill(self.workers[i].pid, signal.SIGSTOP)

    def continue_worker(self, i: int) -> None:
        os.kill(self.workers[i].pid, signal.SIGCONT)

    def cut_worker(self, i: int, stall: bool) -> None:
        for proxy in self.proxies[i]:
            proxy.stall() if stall else proxy.cut()

    def heal_worker(self, i: int) -> None:
        for proxy in self.proxies[i]:
            proxy.heal()

    async def skew_worker(self, i: int, offset_ms: int) -> None:
        """Restart the worker with its clock ``offset_ms`` off (0: back to true time)."""
        worker = self.workers[i]
        config = json.loads(worker.config_path.read_text())
        config["clockOffset"] = offset_ms
        write_private(worker.config_path, json.dumps(config, indent=2) + "\n")
        await worker.stop(10)
        await self.restart_worker(i)

    async def kill_manager(self, i: int) -> None:
        await self.managers[i].kill()

    async def restart_manager(self, i: int) -> None:
        assert self.cluster is not None
        await self.cluster.supervisor.restart(self.managers[i])

    def lost_processes(self) -> list[str]:
        """GDTS processes that died without the nemesis killing them."""
        return [
            f"{c.name} (exit {c.returncode})"
            for c in (*self.managers, *self.workers)
            if c.returncode is not None
        ]
