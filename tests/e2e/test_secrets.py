"""Teams' secrets through a real manager and workers: a secret reaches its job's environment
(and an HTTP job's header) and nowhere else: not MongoDB, not etcd in clear, not any API
answer or audit entry, not a process's command line, not the stored or the live output. A job
cannot name another team's secret; rotating the key keeps every secret usable."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from bson import json_util
from pymongo import AsyncMongoClient

from gdts.etcd import EtcdClient, read_prefix
from gdts.localstack import free_port
from gdts.secretbox import new_key_entry
from tests.support import (
    ADMIN_TOKEN,
    Cluster,
    Stack,
    api_call,
    api_get,
    api_post,
    job_runs,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

NEVER = "0 0 0 1 1 * 2099"  # runs only when asked (/job/run)
K1 = new_key_entry("k1")
K2 = new_key_entry("k2")


async def save_secret(api: str, team: str, name: str, value: str) -> Any:
    return await api_post(api, "/secret/save", team=team, name=name, value=value)


async def finished_run(cluster: Cluster, name: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        runs = await job_runs(cluster, name)
        return runs[0] if runs and runs[0]["status"] != "running" else None

    return await wait_until(ended, 20, f"a run of {name}")


def cmdlines_holding(value: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if value in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def environ_of_process_with(token: bytes) -> bytes | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token in (entry / "cmdline").read_bytes():
                    return (entry / "environ").read_bytes()
            except OSError:
                continue
    return None


async def mongo_text(stack: Stack) -> str:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        database = client[stack.database]
        texts = []
        for name in await database.list_collection_names():
            texts += [json_util.dumps(doc) async for doc in database[name].find({})]
        return "\n".join(texts)
    finally:
        await client.close()


async def etcd_values(stack: Stack) -> list[bytes]:
    client = EtcdClient([stack.etcd_endpoint], timeout=5)
    try:
        kvs, _ = await read_prefix(client, stack.prefix.encode())
        return [kv.key + b"=" + kv.value for kv in kvs]
    finally:
        await client.close()


async def output_stream(api: str, name: str, plan: int) -> str:
    """What /job/output/stream sends of a run, to its end event."""
    text = ""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    params = {"name": name, "planTime": str(plan)}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api}/job/output/stream", params=params,
                               headers=headers) as response:  # fmt: skip
            assert response.status == 200
            event = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "end":
                        return text
                    text += json.loads(line[6:])["output"]
    return text


class EchoServer:
    """A loopback HTTP server that answers with the Authorization header it got."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> EchoServer:
        app = web.Application()
        app.router.add_get("/", self._echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers.get("Authorization", ""))
        return web.Response(text=f"auth={self.seen[-1]}\n")


async def test_a_secret_reaches_its_run_and_nowhere_else(cluster: Cluster, stack: Stack) -> None:
    keys = {"secretKeys": [K1]}
    await cluster.start_together(
        cluster.start_manager(**keys),
        cluster.start_worker("w1", liveOutputAfter=0, liveOutputInterval=100, **keys),
    )
    value = "pw-" + secrets.token_hex(16)
    token = "tok-" + secrets.token_hex(16)
    for team in ("a", "b"):
        await api_post(cluster.api, "/team/save", name=team)
    saved = await save_secret(cluster.api, "a", "db-password", value)
    assert saved == {"team": "a", "name": "db-password", "replaced": False}
    await save_secret(cluster.api, "a", "api-token", token)
    await save_secret(cluster.api, "b", "b-only", "b-" + secrets.token_hex(8))

    hash_file = stack.tmp / "hash"
    sleep = f"1.{secrets.randbelow(10**9):09d}"  # this test's own sleep among all processes
    command = (
        f"printf %s \"$PGPASSWORD\" | sha256sum | cut -d' ' -f1 > {hash_file}; "
        f"echo started{'-' * 60}; "
        "printf 'pw=%s' \"${PGPASSWORD:0:6}\"; "  # the value split across two reads
        f"sleep {sleep}; "
        'printf \'%s\\n\' "${PGPASSWORD:6}"; echo "whole=$PGPASSWORD $PLAIN"'
    )
    await save_job_fields(cluster.api, name="dump", command=command, cronExpr=NEVER, team="a",
                          env={"PLAIN": "shown"},
                          secretEnv={"PGPASSWORD": "db-password"})  # fmt: skip
    plan = (await api_post(cluster.api, "/job/run", name="dump"))["planTime"]
    streamed = asyncio.create_task(output_stream(cluster.api, "dump", plan))

    # While it runs: no command line holds the value, the run's environment does, and the
    # live output never shows it, not even its first part.
    environ = await wait_until(
        lambda: asyncio.to_thread(environ_of_process_with, sleep.encode()), 10, "the sleep"
    )
    assert f"PGPASSWORD={value}".encode() in environ.split(b"\0")
    assert cmdlines_holding(value.encode()) == []
    live: list[str] = []

    async def started() -> bool:
        part = await api_get(cluster.api, "/job/output", name="dump", planTime=plan)
        live.append(part["output"])
        return "started" in part["output"]

    await wait_until(started, 10, "the live output")
    while environ_of_process_with(sleep.encode()) is not None:
        assert cmdlines_holding(value.encode()) == []
        live.append((await api_get(cluster.api, "/job/output", name="dump",
                                   planTime=plan))["output"])  # fmt: skip
        await asyncio.sleep(0.05)
    assert not any(value[:6] in text for text in live), live
    stream_text = await asyncio.wait_for(streamed, 20)
    assert "pw=***" in stream_text and value[:6] not in stream_text, stream_text

    run = await finished_run(cluster, "dump")
    assert run["status"] == "succeeded", run
    assert hash_file.read_text().strip() == hashlib.sha256(value.encode()).hexdigest()
    assert run["output"] == f"started{'-' * 60}\npw=***\nwhole=*** shown\n"

    # An HTTP job's secret header, filled at send time; echoed back, it is masked.
    async with EchoServer() as echo:
        await save_job_fields(cluster.api, name="call", type="http", cronExpr=NEVER, team="a",
                              http={"url": f"http://127.0.0.1:{echo.port}/",
                                    "secretHeaders": {"Authorization": "api-token"}})  # fmt: skip
        await api_post(cluster.api, "/job/run", name="call")
        call = await finished_run(cluster, "call")
        assert echo.seen == [token]
    assert call["status"] == "succeeded", call
    assert "auth=***" in call["output"] and token not in call["output"]

    # Another team's secret, or none: refused, naming the field.
    for refs, field, message in (
        ({"secretEnv": {"X": "b-only"}}, "secretEnv.X", "no secret 'b-only' in team 'a'"),
        ({"secretEnv": {"Y": "nothing"}}, "secretEnv.Y", "no secret 'nothing' in team 'a'"),
    ):
        job = {"name": "bad", "command": "true", "cronExpr": NEVER, "team": "a", **refs}
        status, body = await api_call(cluster.api, "POST", "/job/save",
                                      data={"job": json.dumps(job)})  # fmt: skip
        assert (status, body["field"]) == (400, field), body
        assert message in body["msg"]
    http_job = {
        "name": "bad",
        "type": "http",
        "cronExpr": NEVER,
        "team": "b",
        "http": {"url": "http://127.0.0.1:1/", "secretHeaders": {"X-Key": "api-token"}},
    }
    status, body = await api_call(cluster.api, "POST", "/job/save",
                                  data={"job": json.dumps(http_job)})  # fmt: skip
    assert (status, body["field"]) == (400, "http.secretHeaders.X-Key"), body

    # A value in the URL (which proxies log) is refused, and not echoed.
    in_url = {"team": "a", "name": "x", "value": "in-the-url"}
    status, body = await api_call(cluster.api, "POST", "/secret/save", params=in_url)
    assert (status, body["field"]) == (400, "value") and "in-the-url" not in body["msg"]

    # A secret a job names is not deleted; one no job names is.
    status, body = await api_call(cluster.api, "POST", "/secret/delete",
                                  data={"team": "a", "name": "db-password"})  # fmt: skip
    assert status == 409 and "'dump'" in body["msg"], body
    await api_post(cluster.api, "/secret/delete", team="b", name="b-only")

    # Every place a value could leak to: the answers, the audit trail, MongoDB, etcd.
    listed = await api_get(cluster.api, "/secret/list", team="a")
    assert [s["name"] for s in listed["secrets"]] == ["api-token", "db-password"]
    assert listed["secrets"][0]["updatedBy"] == "admin" and listed["secrets"][0]["keyId"] == "k1"
    audit = await api_get(cluster.api, "/audit", action="secret.save")
    assert {e["detail"]["name"] for e in audit} == {"db-password", "api-token", "b-only"}
    answers = [
        json.dumps(await api_get(cluster.api, path, **params))
        for path, params in (
            ("/job/list", {}),
            ("/job/log", {"name": "dump"}),
            ("/job/log", {"name": "call"}),
            ("/job/output", {"name": "dump", "planTime": plan}),
            ("/secret/list", {"team": "a"}),
            ("/audit", {}),
        )
    ]
    _, spec = await api_call(cluster.api, "GET", "/openapi.json")
    answers.append(json.dumps(spec))
    stored = [await mongo_text(stack), *(v.decode(errors="replace")
                                          for v in await etcd_values(stack))]  # fmt: skip
    for clear in (value, token):
        for text in answers + stored + live:
            assert clear not in text
    for raw in await etcd_values(stack):
        for clear in (value, token):
            assert base64.b64encode(clear.encode()) not in raw


async def test_rotating_the_key_keeps_every_secret_usable(cluster: Cluster, stack: Stack) -> None:
    """Saved under k1; a manager with [k2, k1] re-seals with k2; a worker with k2 alone still
    runs the job, one with k1 alone (or no key) fails it, saying why."""
    old, no_key = await cluster.start_together(
        cluster.start_manager(secretKeys=[K1]),
        cluster.spawn("manager", "manager-nokey", stack.manager_config(free_port())),
    )
    old_api = cluster.api
    value = "pw-" + secrets.token_hex(16)
    await save_secret(old_api, "default", "db-password", value)
    hash_file = stack.tmp / "hash"
    for worker in ("new", "old", "none"):
        await save_job_fields(old_api, name=f"on-{worker}", cronExpr=NEVER,
                              command=f"printf %s \"$PW\" | sha256sum > {hash_file}",
                              hostGroup={"keys": worker},
                              secretEnv={"PW": "db-password"})  # fmt: skip

    port = free_port()
    await cluster.spawn("manager", "manager-rotating",
                        stack.manager_config(port, secretKeys=[K2, K1]))  # fmt: skip
    api = f"http://127.0.0.1:{port}"

    async def rekeyed() -> Any:
        try:
            return await api_post(api, "/secret/rekey")
        except Exception:  # not answering yet
            return None

    result = await wait_until(rekeyed, 30, "the rotating manager to re-seal")
    assert result["resealed"] == [{"team": "default", "name": "db-password", "from": "k1"}]
    assert result["failed"] == [] and result["alreadyCurrent"] == 0
    assert (await api_post(api, "/secret/rekey"))["alreadyCurrent"] == 1
    listed = await api_get(api, "/secret/list")
    assert [(s["name"], s["keyId"]) for s in listed["secrets"]] == [("db-password", "k2")]

    await cluster.start_together(
        cluster.start_worker("w-new", labels={"keys": "new"}, secretKeys=[K2]),
        cluster.start_worker("w-old", labels={"keys": "old"}, secretKeys=[K1]),
        cluster.start_worker("w-none", labels={"keys": "none"}),
    )
    for worker in ("new", "old", "none"):
        await api_post(old_api, "/job/run", name=f"on-{worker}")
    new_run = await finished_run(cluster, "on-new")
    assert new_run["status"] == "succeeded", new_run
    assert hash_file.read_text().split()[0] == hashlib.sha256(value.encode()).hexdigest()
    old_run = await finished_run(cluster, "on-old")
    assert old_run["status"] == "failed" and old_run["err"].startswith("not started: ")
    assert "sealed with key 'k2', which this process does not have" in old_run["err"]
    none_run = await finished_run(cluster, "on-none")
    assert none_run["status"] == "failed"
    assert "no secret key configured on this worker (secretKeys)" in none_run["err"]

    # A manager without a key cannot store a secret, and says which setting is missing.
    config = json.loads((stack.tmp / "manager-nokey.json").read_text())
    no_key_api = f"http://127.0.0.1:{config['apiPort']}"

    async def refused() -> Any:
        try:
            return await api_call(no_key_api, "POST", "/secret/save",
                                  data={"name": "x", "value": "y"})  # fmt: skip
        except Exception:
            return None

    status, body = await wait_until(refused, 30, "the keyless manager to answer")
    assert (status, body["field"]) == (503, "secretKeys"), body
    assert no_key.returncode is None and old.returncode is None
    assert os.environ.get("GDTS_SECRET_KEYS") is None  # the keys came from the configs alone
