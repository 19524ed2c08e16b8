"""A job cannot reach the control plane of ``gdts dev`` (started as root, a uid per run): not
the configs and passwords in the data directory, not etcd or MongoDB without a password, not the
admin token on any command line, and not the stores through an http job. Each hostile job is
the attack a user could make from inside their own job; each would have worked before."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import bson
import pytest

from gdts.localstack import free_port
from tests.support import (
    ADMIN_TOKEN,
    REPO_ROOT,
    api_get,
    api_post,
    cron_at,
    passable_dir,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

if os.geteuid() != 0:  # dev runs jobs as nobody only when started as root
    pytest.skip("needs root: dev started as root is the set-up under test", allow_module_level=True)


def printf_bytes(data: bytes) -> str:
    """A bash printf format that writes ``data`` exactly."""
    return "".join(f"\\x{b:02x}" for b in data)


def mongo_update_message() -> bytes:
    """OP_MSG: make the admin a guest, as any client on the host could send it."""
    body = bson.encode(
        {
            "update": "users",
            "updates": [{"q": {"_id": "admin"}, "u": {"$set": {"role": "guest"}}}],
            "$db": "gdts",
        }
    )
    payload = (0).to_bytes(4, "little") + b"\x00" + body
    header = (16 + len(payload)).to_bytes(4, "little") + (1).to_bytes(4, "little")
    return header + (0).to_bytes(4, "little") + (2013).to_bytes(4, "little") + payload


def over_tcp(port: int, request: bytes) -> str:
    """A shell command that sends ``request`` to a loopback port and prints the printable part
    of the answer (bash's /dev/tcp: no tool needed)."""
    return (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 9; printf '{printf_bytes(request)}' >&3; "
        "timeout 3 cat <&3 | tr -c '[:print:]' '.'; echo"
    )


async def test_a_job_cannot_reach_the_control_plane(tmp_path: Path) -> None:
    with passable_dir("gdts-dev-") as root:
        await _attack_the_control_plane(tmp_path, root / "var")


async def _attack_the_control_plane(tmp_path: Path, data: Path) -> None:
    port = free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log_file:
        dev = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gdts", "dev", "--port", str(port), "--workers", "1",
            "--data-dir", str(data),
            stdout=log_file, stderr=log_file, cwd=REPO_ROOT,
            env={**os.environ, "GDTS_ADMIN_TOKEN": ADMIN_TOKEN},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        async def up() -> bool:
            try:
                return len(await api_get(base, "/worker/list")) == 1
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(up, 90, "dev to come up")
        # What holds a secret is its owner's (root's) alone.
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o711  # others pass through, never list
        for name in ("manager.json", "worker-1.json", "credentials.json", "secret-keys.json"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        secrets = json.loads((data / "credentials.json").read_text())
        manager = json.loads((data / "manager.json").read_text())
        etcd_port = int(manager["etcdEndpoints"][0].rsplit(":", 1)[1])
        mongo_port = int(manager["mongodbUri"].split("@", 1)[1].split("/", 1)[0].split(":")[1])

        # The admin's own job, which the attacks below try to rewrite.
        await save_job_fields(base, name="victim", command="echo mine", cronExpr="0 0 0 1 1 *")
        key = base64.b64encode(b"/gdts/jobs/victim").decode()
        rewrite = json.dumps({"key": key, "value": base64.b64encode(b'{"v":3}').decode()})
        etcd_put = (
            f"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(rewrite)}\r\nConnection: close\r\n\r\n{rewrite}"
        ).encode()
        at = cron_at(time.time() + 3)
        attacks: dict[str, dict[str, Any]] = {
            "read-configs": {
                "command": f"cat {data}/manager.json {data}/credentials.json "
                f"{data}/secret-keys.json"
            },
            "list-data-dir": {"command": f"ls {data}"},
            "etcd-gateway": {"command": over_tcp(etcd_port, etcd_put)},
            "mongo-wire": {"command": over_tcp(mongo_port, mongo_update_message())},
            "command-lines": {"command": "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"},
            "etcd-over-http": {
                "type": "http",
                "http": {
                    "method": "POST",
                    "url": f"http://127.0.0.1:{etcd_port}/v3/kv/put",
                    "body": rewrite,
                },
            },  # fmt: skip
        }
        for name, fields in attacks.items():
            await save_job_fields(base, name=name, cronExpr=at, **fields)

        async def all_ran() -> dict[str, dict[str, Any]] | None:
            runs = {n: await api_get(base, "/job/log", name=n) for n in attacks}
            return {n: r[0] for n, r in runs.items()} if all(runs.values()) else None

        runs = await wait_until(all_ran, 60, "every attack to run once")
        for name in ("read-configs", "list-data-dir"):
            assert runs[name]["status"] == "failed", runs[name]
            assert "Permission denied" in runs[name]["output"], runs[name]
        assert "user name is empty" in runs["etcd-gateway"]["output"], runs["etcd-gateway"]
        assert "requires authentication" in runs["mongo-wire"]["output"], runs["mongo-wire"]
        assert runs["etcd-over-http"]["err"].startswith("refused: 127.0.0.1 is loopback")
        every_output = json.dumps(runs)
        keys = [entry["key"] for entry in json.loads((data / "secret-keys.json").read_text())]
        for secret in (ADMIN_TOKEN, *secrets.values(), *keys):
            if len(secret) >= 12:  # the passwords and the token, not the user name
                assert secret not in every_output
        # What the attacks aimed at is as it was.
        victim = next(j for j in await api_get(base, "/job/list") if j["name"] == "victim")
        assert victim["command"] == "echo mine" and victim["owner"] == "admin"
        me = await api_get(base, "/auth/me")
        assert me["role"] == "admin"
        await api_post(base, "/job/delete", name="victim")
    finally:
        if dev.returncode is None:
            dev.terminate()
            try:
                await asyncio.wait_for(dev.wait(), 60)
            except TimeoutError:
                dev.kill()
                await dev.wait()
