"""Integration tests for gdts.localstack: real etcd and mongod processes, no mocks."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import aetcd
import pytest
from pymongo import AsyncMongoClient

from gdts.localstack import (
    EtcdProcess,
    LocalStackError,
    MongoProcess,
    find_etcd,
    find_mongod,
    free_port,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """True once pid is reaped, or is a zombie nobody reaps (e.g. reparented to a lazy init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _port_free(port: int) -> bool:
    # SO_REUSEADDR like the servers themselves: TIME_WAIT leftovers do not stop a new server.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def _etcd_put(port: int, key: bytes, value: bytes) -> None:
    async with aetcd.Client(host="127.0.0.1", port=port) as client:
        await client.put(key, value)


async def _etcd_get(port: int, key: bytes) -> bytes | None:
    async with aetcd.Client(host="127.0.0.1", port=port) as client:
        result = await client.get(key)
    return None if result is None else result.value


def test_find_binaries() -> None:
    for path in (find_etcd(), find_mongod()):
        assert os.path.isabs(path) and os.access(path, os.X_OK)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert _port_free(port)


@pytest.mark.asyncio
async def test_etcd_put_get_stop_restart(tmp_path: Path) -> None:
    etcd = EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log")
    async with etcd:
        pid, port, peer = etcd.pid, etcd.client_port, etcd.peer_port
        assert pid is not None and etcd.endpoint == f"127.0.0.1:{port}"
        await _etcd_put(port, b"/gdts/k", b"v1")
        assert await _etcd_get(port, b"/gdts/k") == b"v1"
        await etcd.stop()
        assert etcd.pid is None
        assert _gone(pid)
        assert _port_free(port) and _port_free(peer)
        await etcd.stop()  # idempotent

    # Same data dir and ports, fresh object: an etcd restart as the scheduler would see it.
    again = EtcdProcess(
        tmp_path / "etcd", client_port=port, peer_port=peer, log_path=tmp_path / "etcd.log"
    )
    async with again:
        assert again.pid != pid
        assert await _etcd_get(port, b"/gdts/k") == b"v1"
        await again.stop()
        # And the same object can be started again after stop().
        await again.start()
        assert await _etcd_get(port, b"/gdts/k") == b"v1"


@pytest.mark.asyncio
async def test_etcd_kill_is_sigkill(tmp_path: Path) -> None:
    async with EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log") as etcd:
        pid = etcd.pid
        assert pid is not None
        proc = etcd._proc
        await etcd.kill()
        assert proc is not None and proc.returncode == -signal.SIGKILL
        assert _gone(pid)
        assert etcd.pid is None


@pytest.mark.asyncio
async def test_mongod_insert_find_stop(tmp_path: Path) -> None:
    async with MongoProcess(tmp_path / "mongo", log_path=tmp_path / "mongo.log") as mongo:
        pid, port = mongo.pid, mongo.client_port
        assert pid is not None
        assert mongo.uri == f"mongodb://127.0.0.1:{port}/?directConnection=true"
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            mongo.uri, serverSelectionTimeoutMS=5000
        )
        try:
            await client.gdts.jobs.insert_one({"_id": "j1", "cron": "* * * * *"})
            assert await client.gdts.jobs.find_one({"_id": "j1"}) == {
                "_id": "j1",
                "cron": "* * * * *",
            }
        finally:
            await client.close()
        await mongo.stop()
        assert mongo.returncode is None and mongo.pid is None
        assert _gone(pid)
        assert _port_free(port)


@pytest.mark.asyncio
async def test_mongod_kill_is_sigkill(tmp_path: Path) -> None:
    async with MongoProcess(tmp_path / "mongo") as mongo:
        pid = mongo.pid
        assert pid is not None
        proc = mongo._proc
        await mongo.kill()
        assert proc is not None and proc.returncode == -signal.SIGKILL
        assert _gone(pid)


@pytest.mark.asyncio
async def test_missing_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-etcd"
    monkeypatch.setenv("GDTS_ETCD_BIN", str(missing))
    with pytest.raises(LocalStackError, match="GDTS_ETCD_BIN") as excinfo:
        find_etcd()
    assert str(missing) in str(excinfo.value)

    etcd = EtcdProcess(tmp_path / "etcd")
    with pytest.raises(LocalStackError, match="GDTS_ETCD_BIN"):
        await etcd.start()
    assert etcd.pid is None

    monkeypatch.setenv("GDTS_MONGOD_BIN", str(tmp_path / "no-such-mongod"))
    with pytest.raises(LocalStackError, match="GDTS_MONGOD_BIN"):
        await MongoProcess(tmp_path / "mongo").start()


@pytest.mark.asyncio
async def test_etcd_exit_during_startup_shows_log(tmp_path: Path) -> None:
    # Hold the client port so etcd fails to bind and exits.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        etcd = EtcdProcess(tmp_path / "etcd", client_port=port, log_path=tmp_path / "etcd.log")
        try:
            with pytest.raises(LocalStackError) as excinfo:
                await etcd.start(timeout=20)
        finally:
            await etcd.stop()
    message = str(excinfo.value)
    assert "exited with code" in message
    assert "address already in use" in message
    assert etcd.pid is None


@pytest.mark.asyncio
async def test_start_deadline_kills_the_child(tmp_path: Path) -> None:
    etcd = EtcdProcess(tmp_path / "etcd", log_path=tmp_path / "etcd.log")
    try:
        with pytest.raises(LocalStackError, match="not ready after"):
            await etcd.start(timeout=0.01)
        assert etcd.pid is None
    finally:
        await etcd.stop()


# Runs in its own process made a child subreaper: the servers orphaned by the SIGKILLed
# supervisor are reparented to it and reaped there, instead of becoming zombies of a PID 1
# that may never reap them (as in some containers) or of the pytest process itself.
_PDEATHSIG_HARNESS = """
import ctypes, os, signal, subprocess, sys, time

# A SIGCHLD set to "ignore" is inherited across exec and makes the kernel reap children at
# once, so waitpid could never see the servers' exit: take the default back.
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
# Starting the servers is not what this checks, and under a loaded machine a free port can be
# taken between picking and binding it: give the start up to three tries.
for attempt in range(3):
    supervisor = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in supervisor.stdout.readline().split()]
    finally:
        supervisor.kill()
        supervisor.wait()
    if len(pids) == 2:
        break
else:
    sys.exit("supervisor did not report two pids in three tries")
pending, deadline = set(pids), time.monotonic() + 20
while pending and time.monotonic() < deadline:
    for pid in list(pending):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Not ours to wait for (another reaper got it first): all we can tell is whether
            # it still exists.
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pending.discard(pid)
                print(pid, "gone", flush=True)
            continue
        if done:
            pending.discard(pid)
            print(pid, os.waitstatus_to_exitcode(status), flush=True)
    time.sleep(0.02)
for pid in pending:
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    print(pid, "survived", flush=True)
"""


@pytest.mark.asyncio
async def test_children_die_with_their_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILLing the supervisor (no cleanup runs) still kills the servers."""
    supervisor = textwrap.dedent(
        f"""
        import asyncio, pathlib, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from gdts.localstack import EtcdProcess, MongoProcess

        async def main():
            root = pathlib.Path({str(tmp_path)!r})
            etcd = EtcdProcess(root / "etcd")
            mongo = MongoProcess(root / "mongo")
            await etcd.start()
            await mongo.start()
            print(etcd.pid, mongo.pid, flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    harness = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PDEATHSIG_HARNESS, supervisor, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(harness.communicate(), 90)
    finally:
        if harness.returncode is None:
            harness.kill()
            await harness.wait()
    assert harness.returncode == 0
    results = [line.split() for line in out.decode().splitlines()]
    assert len(results) == 2
    # Killed by their PR_SET_PDEATHSIG signal, or (reaped before we could see how) gone.
    assert all(code in (str(-signal.SIGKILL), "gone") for _, code in results), results
