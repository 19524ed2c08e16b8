"""The command line as operators use it: config errors, start-up refusals, and ``dev``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gdts.localstack import free_port
from tests.support import (
    ADMIN_TOKEN,
    REPO_ROOT,
    Cluster,
    Stack,
    api_get,
    api_post,
    passable_dir,
    process_alive,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def run_cli(*args: str, limit_s: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gdts", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GDTS_")},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), limit_s)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"apiPortt": 8070}, "apiPortt"),
        ({"apiPort": "8070"}, "apiPort"),
        ({"etcdEndpoints": "127.0.0.1:2379"}, "etcdEndpoints"),
        ({"jobLogBatchSize": 10}, "jobLogBatchSize"),  # a worker key is unknown to the manager
    ],
)
async def test_manager_refuses_bad_config_naming_the_key(tmp_path: Path, config, named) -> None:
    path = tmp_path / "manager.json"
    path.write_text(json.dumps(config))
    code, output = await run_cli("manager", "-c", str(path))
    assert code == 2
    assert f"config {named}:" in output and "Traceback" not in output


async def test_worker_refuses_bad_config_and_bad_env(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"workerLeaseTtl": 1}))
    code, output = await run_cli("worker", "-c", str(path))
    assert code == 2 and "config workerLeaseTtl: must be at least 2 s" in output
    path.write_text("{not json")
    code, output = await run_cli("worker", "-c", str(path))
    assert code == 2 and "is not valid JSON" in output


async def test_a_second_worker_with_a_live_workers_id_is_refused(cluster: Cluster) -> None:
    await cluster.start_worker("twin")
    path = cluster.stack.tmp / "twin2.json"
    path.write_text(json.dumps(cluster.stack.worker_config(workerId="twin")))
    code, output = await run_cli("worker", "-c", str(path))
    assert code == 1
    assert "'twin' is already registered by a live worker" in output


async def test_worker_without_etcd_says_so_waits_for_it_and_stops_on_sigterm(stack: Stack) -> None:
    path = stack.tmp / "w.json"
    config = stack.worker_config(etcdEndpoints=[f"127.0.0.1:{free_port()}"], etcdDialTimeout=500)
    path.write_text(json.dumps(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gdts", "worker", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GDTS_")},
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []

    async def said_so() -> bool:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        lines.append(line)
        return "cannot register yet" in line and "etcd unavailable" in line

    try:
        await wait_until(said_so, 60, "the worker to say it waits for etcd")
        assert process.returncode is None  # waiting, not exited: etcd may come up any moment
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(lines) + rest.decode()
    assert process.returncode == 0 and "Traceback" not in output, output


async def test_dev_runs_everything_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with passable_dir("gdts-dev-") as root:
        await _dev_runs_everything(tmp_path, root / "var")


async def _dev_runs_everything(tmp_path: Path, data: Path) -> None:
    port = free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log_file:
        dev = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gdts", "dev", "--port", str(port), "--workers", "2",
            "--data-dir", str(data),
            stdout=log_file, stderr=log_file, cwd=REPO_ROOT,
            env={**os.environ, "GDTS_ADMIN_TOKEN": ADMIN_TOKEN},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        async def two_workers() -> bool:
            try:
                return len(await api_get(base, "/worker/list")) == 2
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(two_workers, 60, "dev to come up with two workers")
        startup = log_path.read_text()
        assert f"open http://localhost:{port}" in startup
        assert f"API token: {ADMIN_TOKEN}" in startup
        kept = json.loads((data / "credentials.json").read_text())
        assert f"log in as admin with password {kept['password']}" in startup
        assert (data / "credentials.json").stat().st_mode & 0o077 == 0
        # The secrets work out of the box: a key made at the first start, the workers have it.
        assert (data / "secret-keys.json").stat().st_mode & 0o077 == 0
        await api_post(base, "/secret/save", name="dev-pw", value="dev-s3cr3t-value")
        await save_job_fields(base, name="uses-secret", command='test "$PW" = dev-s3cr3t-value',
                              cronExpr="0 0 0 1 1 *", secretEnv={"PW": "dev-pw"})  # fmt: skip
        await api_post(base, "/job/run", name="uses-secret")
        ran = await wait_until(lambda: api_get(base, "/job/log", name="uses-secret"), 30,
                               "the run that uses a secret")  # fmt: skip
        assert ran[0]["status"] == "succeeded", ran
        # unsafe: the jar must keep a cookie from an IP address (127.0.0.1)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            form = {"username": "admin", "password": kept["password"]}
            async with session.post(base + "/auth/login", data=form) as login:
                assert login.status == 200
            async with session.get(base + "/", allow_redirects=False) as page:
                assert page.status == 200
        # A worker that dies is started again (as systemd would), not the end of everything.
        workers = await api_get(base, "/worker/list")
        victim = workers[0]["pid"]
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            pids = {w["pid"] for w in await api_get(base, "/worker/list")}
            return len(pids) == 2 and victim not in pids

        await wait_until(replaced, 60, "dev to restart the killed worker")
        assert "exited with status -9; restarting it in 1s" in log_path.read_text()
        assert dev.returncode is None

        descendants = _descendants(dev.pid)
        names = {_name(pid) for pid in descendants}
        assert {"etcd", "mongod"} <= names, names
        assert len(descendants) >= 5  # etcd, mongod, manager, two workers

        dev.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(dev.wait(), 60) == 0
        survivors = [pid for pid in descendants if process_alive(pid)]
        assert survivors == [], f"left behind: {[(p, _name(p)) for p in survivors]}"
        text = log_path.read_text()
        assert text.count("revoked") == 2  # both workers drained and released their leases
    finally:
        if dev.returncode is None:
            dev.kill()
            await dev.wait()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
