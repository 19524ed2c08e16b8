"""``python -m gdts dev``: the whole system on one machine, for trying GDTS out.

Starts etcd and mongod (data under ``--data-dir``, free loopback ports), one manager on ``--port``
and N workers as child processes, and stops all of them, in order, on Ctrl-C or SIGTERM: workers
first (they drain and flush), then the manager, then the stores. Children also die with us if
this process is killed outright (parent-death signal), so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from gdts.localstack import (
    EtcdProcess,
    LocalStackError,
    MongoProcess,
    free_port,
    pdeathsig_preexec,
)

log = logging.getLogger("gdts.dev")

REPO_ROOT = Path(__file__).resolve().parent.parent
WEBROOT = REPO_ROOT / "webroot"
_CHILD_STOP_S = 40.0


def prepare_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


async def run_dev(port: int, workers: int, data_dir: Path) -> int:
    """``data_dir`` must exist (see prepare_data_dir)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    etcd = EtcdProcess(data_dir / "etcd", log_path=data_dir / "etcd.log")
    mongo = MongoProcess(data_dir / "mongo", log_path=data_dir / "mongod.log")
    try:
        async with etcd, mongo:
            log.info("etcd at %s, mongod at %s (logs in %s)", etcd.endpoint, mongo.uri, data_dir)
            return await _run_processes(port, workers, data_dir, etcd, mongo, stop)
    except LocalStackError as exc:
        log.error("%s", exc)
        return 1


async def _run_processes(
    port: int,
    workers: int,
    data_dir: Path,
    etcd: EtcdProcess,
    mongo: MongoProcess,
    stop: asyncio.Event,
) -> int:
    stores = {
        "etcdEndpoints": [etcd.endpoint],
        "mongodbUri": mongo.uri,
        "mongodbDatabase": "gdts",
    }
    manager_conf = _write_json(
        data_dir / "manager.json", {**stores, "apiPort": port, "webroot": str(WEBROOT)}
    )
    children: list[tuple[str, asyncio.subprocess.Process]] = []
    try:
        children.append(("manager", await _spawn("manager", manager_conf)))
        for index in range(1, workers + 1):
            probe_port = free_port()
            worker_conf = _write_json(
                data_dir / f"worker-{index}.json",
                {
                    **stores,
                    "drainTimeout": 20_000,
                    "spillDir": str(data_dir / f"spill-{index}"),
                    "httpListen": f"127.0.0.1:{probe_port}",
                },
            )
            children.append((f"worker-{index}", await _spawn("worker", worker_conf)))
            log.info("worker-%d: metrics at http://127.0.0.1:%d/metrics", index, probe_port)
        log.info("GDTS is up: open http://localhost:%d  (Ctrl-C stops everything)", port)
        exited = [asyncio.ensure_future(proc.wait()) for _, proc in children]
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopping, *exited], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for future in exited:
            future.cancel()
        crashed = [name for (name, proc) in children if proc.returncode is not None]
        if crashed:
            log.error("%s exited on its own; stopping everything", ", ".join(crashed))
        return 1 if crashed else 0
    finally:
        # Workers before the manager, so no run is orphaned while its results are flushed.
        for name, proc in reversed(children):
            await _stop_child(name, proc)


def _write_json(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


async def _spawn(command: str, config: Path) -> asyncio.subprocess.Process:
    # The children import gdts from this checkout wherever the command was started.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gdts",
        command,
        "-c",
        str(config),
        env=env,
        start_new_session=True,  # a terminal Ctrl-C reaches only us; we stop children in order
        preexec_fn=pdeathsig_preexec(),
    )


async def _stop_child(name: str, proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), _CHILD_STOP_S)
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", name, _CHILD_STOP_S)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    log.info("%s stopped (exit code %s)", name, proc.returncode)
