"""The HTTP API against real etcd and MongoDB: the wire contract and every bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gdts.config import ManagerConfig
from gdts.etcd import EtcdClient, read_prefix
from gdts.job import API_DEFAULTS, Job
from gdts.keys import KeyLayout
from gdts.localstack import free_port
from gdts.manager import listing as listing_module
from gdts.manager.api import JOB_LISTING
from gdts.manager.app import SERVER_ARGS, create_app
from gdts.manager.listing import STATUS_FIELDS
from gdts.markers import running_marker
from gdts.mongo import open_mongo
from gdts.runlog import RunLog
from gdts.runrecord import RunRecord, RunStatus
from tests.support import ADMIN_PASSWORD, ADMIN_TOKEN, ADMIN_USER, REPO_ROOT, Stack, now_ms

pytestmark = pytest.mark.asyncio


def manager_config(stack: Stack, **overrides: Any) -> ManagerConfig:
    values: dict[str, Any] = {
        "etcd_endpoints": (stack.etcd_endpoint,),
        "etcd_prefix": stack.prefix,
        "etcd_dial_timeout": 2000,
        "mongodb_uri": stack.mongo_uri,
        "mongodb_database": stack.database,
        "mongodb_connect_timeout": 1000,
        "webroot": str(REPO_ROOT / "webroot"),
        "admin_password": ADMIN_PASSWORD,
        "admin_token": ADMIN_TOKEN,
        # Runs here carry made-up times from 1970 on, and the session's mongod runs its TTL
        # monitor every second: a retention in days would remove them in the middle of a test.
        "log_retention_days": 0,
        **overrides,
    }
    return ManagerConfig(**values)


def as_admin(app: web.Application) -> TestClient[web.Request, web.Application]:
    return TestClient(TestServer(app), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    test_client = as_admin(create_app(manager_config(stack)))
    # Started as the manager starts its server (its parser limits included); TestClient then
    # finds it running.
    await test_client.server.start_server(**SERVER_ARGS)
    async with test_client:
        yield test_client


async def call(client: TestClient, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = await client.request(method, path, **kwargs)
    return response.status, await response.json()


def view(**fields: Any) -> dict[str, Any]:
    """A job as the API shows it: the given fields, every other one at its default."""
    return {**API_DEFAULTS, "owner": ADMIN_USER, "ownerId": AN_ACCOUNT_ID, **fields}


class _AnAccountId:
    """Equal to any account id (the manager makes them: random, 32 hex digits)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) == 32

    def __repr__(self) -> str:
        return "<an account id>"


AN_ACCOUNT_ID = _AnAccountId()


def definitions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs of a /job/list answer without the status fields the list adds."""
    return [{k: v for k, v in job.items() if k not in STATUS_FIELDS} for job in body["data"]]


def job_form(name: str = "backup", command: str = "echo hi", cron: str = "*/5 * * * * *") -> dict:
    return {"job": json.dumps({"name": name, "command": command, "cronExpr": cron})}


async def snapshot(etcd: EtcdClient, stack: Stack) -> list[tuple[bytes, bytes]]:
    kvs, _ = await read_prefix(etcd, stack.prefix.encode())
    return [(kv.key, kv.value) for kv in kvs]


async def test_save_returns_previous_version_and_list_shows_job(client, etcd, stack) -> None:
    status, body = await call(client, "POST", "/job/save", data=job_form(command="echo one"))
    assert (status, body) == (200, {"errno": 0, "msg": "success", "data": None})
    status, body = await call(client, "POST", "/job/save", data=job_form(command="echo two"))
    assert status == 200
    assert body["data"] == view(name="backup", command="echo one", cronExpr="*/5 * * * * *")
    status, body = await call(client, "GET", "/job/list")
    assert definitions(body) == [view(name="backup", command="echo two", cronExpr="*/5 * * * * *")]
    # Stored under the documented key, with a record version.
    stored = dict(await snapshot(etcd, stack))
    record = json.loads(stored[f"{stack.prefix}jobs/backup".encode()])
    assert record == {
        "v": 9,
        "name": "backup",
        "command": "echo two",
        "cronExpr": "*/5 * * * * *",
        "owner": ADMIN_USER,
        "ownerId": AN_ACCOUNT_ID,
    }


async def test_a_manager_does_not_warm_up_a_huge_list_but_pages_start_at_the_first_job(
    client, stack, monkeypatch
) -> None:
    for name in ("c", "a", "b"):
        assert (await call(client, "POST", "/job/save", data=job_form(name=name)))[0] == 200
    listing = client.app[JOB_LISTING]
    monkeypatch.setattr(listing_module, "WARM_UP_AT_MOST", 2)
    await listing.warm_up()
    assert listing._full is None or listing._full[1] == 0  # the 3 jobs were not listed whole
    assert listing._first_key == f"{stack.prefix}jobs/a".encode()
    status, body = await call(client, "GET", "/job/list?limit=2")
    assert status == 200 and [job["name"] for job in body["data"]] == ["a", "b"]
    monkeypatch.setattr(listing_module, "WARM_UP_AT_MOST", 3)
    await listing.warm_up()
    assert listing._full is not None and listing._full[1] == 3


async def test_every_listing_shows_etcd_as_it_is_now(client, etcd, stack) -> None:
    # The manager remembers encoded views between listings; what changed must never be stale.
    for name in ("a", "b", "c"):
        await call(client, "POST", "/job/save", data=job_form(name=name, command=f"echo {name}"))
    _, body = await call(client, "GET", "/job/list")
    assert [j["command"] for j in body["data"]] == ["echo a", "echo b", "echo c"]
    await call(client, "POST", "/job/save", data=job_form(name="b", command="echo B"))
    await call(client, "POST", "/job/delete", data={"name": "c"})
    key_a = f"{stack.prefix}jobs/a".encode()
    await etcd.put(key_a, b'{"v":1,"name":"a","command":"echo from etcd","cronExpr":"@daily"}')
    await etcd.put(f"{stack.prefix}jobs/broken".encode(), b"{not json")
    _, body = await call(client, "GET", "/job/list")
    assert definitions(body) == [
        view(name="a", command="echo from etcd", cronExpr="@daily", owner="", ownerId=""),
        view(name="b", command="echo B", cronExpr="*/5 * * * * *"),
    ]  # the unreadable record is skipped, not fatal
    _, body = await call(client, "GET", "/job/list", params={"limit": 1, "after": "a"})
    assert [j["command"] for j in body["data"]] == ["echo B"]


async def test_disable_and_enable_keep_the_definition_and_flip_only_the_flag(client) -> None:
    await call(client, "POST", "/job/save", data=_job(name="p", command="echo p", retries=2))
    status, body = await call(client, "POST", "/job/disable", data={"name": "p"})
    assert status == 200 and body["data"]["enabled"] is False
    _, listed = await call(client, "GET", "/job/list")
    assert definitions(listed) == [view(name="p", command="echo p", cronExpr="@daily", retries=2,
                                        enabled=False)]  # fmt: skip
    status, body = await call(client, "POST", "/job/enable", data={"name": "p"})
    assert status == 200 and body["data"] == view(
        name="p", command="echo p", cronExpr="@daily", retries=2
    )


async def test_clone_copies_every_field_under_the_new_name(client) -> None:
    await call(client, "POST", "/job/save", data=_job(name="src", timezone="Asia/Tokyo"))
    status, body = await call(client, "POST", "/job/clone", data={"name": "src", "newName": "dst"})
    assert status == 200 and body["data"]["name"] == "dst"
    _, listed = await call(client, "GET", "/job/list")
    src, dst = sorted(listed["data"], key=lambda j: j["name"], reverse=True)
    assert dst == {**src, "name": "dst"} and dst["timezone"] == "Asia/Tokyo"


async def test_a_job_without_a_zone_gets_the_managers_default(stack) -> None:
    config = manager_config(stack, default_timezone="America/New_York")
    async with as_admin(create_app(config)) as client:
        await call(client, "POST", "/job/save", data=_job(name="z"))
        await call(client, "POST", "/job/save", data=_job(name="u", timezone="UTC"))
        _, listed = await call(client, "GET", "/job/list")
    zones = {job["name"]: job["timezone"] for job in listed["data"]}
    assert zones == {"u": "UTC", "z": "America/New_York"}


async def test_json_bodies_are_accepted(client) -> None:
    job = {"name": "js", "command": "true", "cronExpr": "@daily"}
    status, body = await call(client, "POST", "/job/save", json={"job": job})
    assert (status, body["errno"]) == (200, 0)
    status, body = await call(client, "POST", "/job/save", json={"job": json.dumps(job)})
    assert body["data"] == view(**job)
    status, body = await call(client, "POST", "/job/delete", json={"name": "js"})
    assert body["data"] == view(**job)


async def test_delete_returns_deleted_job_then_null(client) -> None:
    await call(client, "POST", "/job/save", data=job_form())
    status, body = await call(client, "POST", "/job/delete", data={"name": "backup"})
    assert status == 200 and body["data"]["name"] == "backup"
    status, body = await call(client, "POST", "/job/delete", data={"name": "backup"})
    assert (status, body["data"]) == (200, None)
    assert (await call(client, "GET", "/job/list"))[1]["data"] == []


async def test_kill_puts_a_marker_that_expires_by_itself(client, etcd, stack) -> None:
    status, body = await call(client, "POST", "/job/kill", data={"name": "backup"})
    assert (status, body["errno"]) == (200, 0)
    marker = await etcd.get(f"{stack.prefix}killer/backup".encode())
    assert marker is not None and marker.lease != 0  # on a lease, so it cannot linger


async def test_worker_list_reads_registrations(client, etcd, stack) -> None:
    lease = await etcd.lease(5)
    # A worker of this version says its labels, weight and load; an older one says none of
    # them and shows the defaults it is routed by.
    placed = {"id": "w-1", "host": "h", "pid": 1, "startedAt": 1,
              "labels": {"group": "db", "zone": "eu-1"}, "weight": 3, "busy": 2}  # fmt: skip
    older = {"id": "w-2", "host": "h", "pid": 2, "startedAt": 1}
    for info in (placed, older):
        key = f"{stack.prefix}workers/{info['id']}".encode()
        await etcd.put(key, json.dumps(info).encode(), lease=lease)
    status, body = await call(client, "GET", "/worker/list")
    assert body["data"] == [
        {**placed, "running": []},
        {**older, "labels": {}, "weight": 1, "busy": 0, "running": []},
    ]
    await lease.revoke()
    assert (await call(client, "GET", "/worker/list"))[1]["data"] == []


async def test_the_list_counts_each_host_groups_live_workers(client, etcd, stack) -> None:
    for job in (
        _job(name="anywhere"),
        _job(name="db", hostGroup={"group": "db"}, routing="roundRobin"),
        _job(name="db-eu", hostGroup={"group": "db", "zone": "eu-1"}),
    ):
        assert (await call(client, "POST", "/job/save", data=job))[0] == 200

    async def live_workers() -> dict[str, int | None]:
        _, body = await call(client, "GET", "/job/list")
        return {job["name"]: job["liveWorkers"] for job in body["data"]}

    assert await live_workers() == {"anywhere": None, "db": 0, "db-eu": 0}
    lease = await etcd.lease(10)
    for worker_id, labels, leaving in (
        ("w-1", {"group": "db", "zone": "us-1"}, False),
        ("w-2", {"group": "db", "zone": "eu-1"}, False),
        ("w-3", None, False),  # an older worker: no labels
        ("w-4", {"group": "db", "zone": "eu-1"}, True),  # stopping: routed nothing
    ):
        info = {"id": worker_id, "leaving": leaving, **({"labels": labels} if labels else {})}
        key = f"{stack.prefix}workers/{worker_id}".encode()
        await etcd.put(key, json.dumps(info).encode(), lease=lease)
    assert await live_workers() == {"anywhere": None, "db": 2, "db-eu": 1}
    # The listing remembers its last answer: a worker gone must not leave it stale.
    await lease.revoke()
    assert await live_workers() == {"anywhere": None, "db": 0, "db-eu": 0}


async def test_run_now_of_a_job_whose_host_group_has_no_live_worker_is_409(
    client, etcd, stack
) -> None:
    await call(client, "POST", "/job/save", data=_job(name="db", hostGroup={"group": "db"}))
    keys = KeyLayout(stack.prefix)
    status, body = await call(client, "POST", "/job/run", data={"name": "db"})
    assert status == 409 and body["errno"] == -1 and body["field"] == "name", body
    assert "no live worker in host group {group=db}" in body["msg"], body
    assert body["msg"].startswith("name: 'db' cannot run now"), body
    assert (await read_prefix(etcd, keys.run_prefix))[0] == []  # nothing asked of the workers
    lease = await etcd.lease(10)
    try:
        info = {"id": "w-1", "labels": {"group": "db"}}
        await etcd.put(keys.worker("w-1"), json.dumps(info).encode(), lease=lease)
        status, body = await call(client, "POST", "/job/run", data={"name": "db"})
        assert status == 200 and body["data"]["name"] == "db", body
        assert len((await read_prefix(etcd, keys.run_prefix))[0]) == 1
    finally:
        await lease.revoke()


async def test_a_bad_host_group_or_routing_leaves_the_stored_job_as_it_was(
    client, etcd, stack
) -> None:
    placed = _job(name="placed", hostGroup={"group": "db"}, routing="weighted")
    assert (await call(client, "POST", "/job/save", data=placed))[0] == 200
    before = await snapshot(etcd, stack)
    for fields, field in (
        ({"hostGroup": "db"}, "hostGroup"),
        ({"hostGroup": {"bad key": "x"}}, "hostGroup"),
        ({"hostGroup": {"group": 5}}, "hostGroup.group"),
        ({"routing": "fastest"}, "routing"),
    ):
        status, body = await call(client, "POST", "/job/save", data=_job(name="placed", **fields))
        assert (status, body["field"], body["data"]) == (400, field, None), body
        assert body["msg"].startswith(f"{field}: "), body
    assert await snapshot(etcd, stack) == before
    _, body = await call(client, "GET", "/job/list")
    [job] = body["data"]
    assert (job["hostGroup"], job["routing"]) == ({"group": "db"}, "weighted")


async def test_job_log_is_newest_first_with_skip_and_limit(client, stack) -> None:
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        await runlog.ensure_indexes()
        await runlog.insert([_run("backup", i).to_document() for i in range(30)])
        await runlog.insert([_run("other", 0).to_document()])
    finally:
        await mongo.close()
    status, body = await call(client, "GET", "/job/log", params={"name": "backup"})
    assert status == 200
    assert [r["planTime"] for r in body["data"]] == [1000 * i for i in range(29, 9, -1)]  # 20
    assert "_id" not in body["data"][0]
    _, body = await call(
        client, "GET", "/job/log", params={"name": "backup", "skip": 25, "limit": 3}
    )
    assert [r["planTime"] for r in body["data"]] == [4000, 3000, 2000]
    _, body = await call(client, "GET", "/job/log", params={"name": "nobody"})
    assert body["data"] == []


async def test_the_manager_makes_the_run_logs_indexes_before_any_worker_wrote(
    client, stack
) -> None:
    """A fresh database, no worker yet: /job/log still reads along its index."""
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        names = {
            index["name"] async for index in await mongo[stack.database]["job_log"].list_indexes()
        }
    finally:
        await mongo.close()
    assert {"job_start_id", "job_tick_attempt"} <= names, names


def _run(name: str, i: int) -> RunRecord:
    return RunRecord(
        job_name=name, command="true", worker="w", plan_time=1000 * i, schedule_time=1000 * i,
        start_time=1000 * i + 5, end_time=1000 * i + 9, output=f"run {i}", err="", exit_code=0,
        status=RunStatus.SUCCEEDED,
    )  # fmt: skip


def _job(**fields: Any) -> dict[str, str]:
    job = {"name": "ok", "command": "true", "cronExpr": "@daily"}
    job.update(fields)
    return {"job": json.dumps({k: v for k, v in job.items() if v is not _MISSING})}


_MISSING: Any = object()

BAD_REQUESTS = [
    # (id, method, path, request kwargs, status, field named in msg)
    ("no job field", "POST", "/job/save", {"data": {}}, 400, "job"),
    ("job not json", "POST", "/job/save", {"data": {"job": "{nope"}}, 400, "job"),
    ("job is a list", "POST", "/job/save", {"data": {"job": "[1]"}}, 400, "job"),
    ("unknown job field", "POST", "/job/save", {"data": _job(cronexpr="x")}, 400, "cronexpr"),
    ("name missing", "POST", "/job/save", {"data": _job(name=_MISSING)}, 400, "name"),
    ("name empty", "POST", "/job/save", {"data": _job(name="")}, 400, "name"),
    ("name too long", "POST", "/job/save", {"data": _job(name="n" * 129)}, 400, "name"),
    ("name with slash", "POST", "/job/save", {"data": _job(name="a/b")}, 400, "name"),
    ("name dot-dot", "POST", "/job/save", {"data": _job(name="..")}, 400, "name"),
    ("name control char", "POST", "/job/save", {"data": _job(name="a\nb")}, 400, "name"),
    ("name NUL", "POST", "/job/save", {"data": _job(name="a\x00b")}, 400, "name"),
    ("name padded", "POST", "/job/save", {"data": _job(name=" a")}, 400, "name"),
    ("tag bad", "POST", "/job/save", {"data": _job(tags=["ok", "a b"])}, 400, "tags[1]"),
    ("name not string", "POST", "/job/save", {"data": _job(name=5)}, 400, "name"),
    ("command empty", "POST", "/job/save", {"data": _job(command="  ")}, 400, "command"),
    ("command too big", "POST", "/job/save", {"data": _job(command="x" * 65537)}, 400, "command"),
    ("command null", "POST", "/job/save", {"data": _job(command=None)}, 400, "command"),
    ("cron garbage", "POST", "/job/save", {"data": _job(cronExpr="every day")}, 400, "cronExpr"),
    ("cron range", "POST", "/job/save", {"data": _job(cronExpr="61 * * * * *")}, 400, "cronExpr"),
    ("cron missing", "POST", "/job/save", {"data": _job(cronExpr=_MISSING)}, 400, "cronExpr"),
    ("json body broken", "POST", "/job/save",
     {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ("json body array", "POST", "/job/save", {"json": [1]}, 400, "body"),
    ("delete no name", "POST", "/job/delete", {"data": {}}, 400, "name"),
    ("delete bad name", "POST", "/job/delete", {"data": {"name": "x/../y"}}, 400, "name"),
    ("kill no name", "POST", "/job/kill", {"data": {}}, 400, "name"),
    ("kill bad name", "POST", "/job/kill", {"data": {"name": "\x07"}}, 400, "name"),
    ("log no name", "GET", "/job/log", {}, 400, "name"),
    ("log skip negative", "GET", "/job/log", {"params": {"name": "a", "skip": "-1"}}, 400, "skip"),
    ("log limit zero", "GET", "/job/log", {"params": {"name": "a", "limit": "0"}}, 400, "limit"),
    ("log limit big", "GET", "/job/log", {"params": {"name": "a", "limit": "1001"}}, 400, "limit"),
    ("log limit text", "GET", "/job/log", {"params": {"name": "a", "limit": "ten"}}, 400, "limit"),
    ("zone unknown", "POST", "/job/save", {"data": _job(timezone="Mars/Base")}, 400, "timezone"),
    ("timeout zero", "POST", "/job/save", {"data": _job(timeout=0)}, 400, "timeout"),
    ("retries 11", "POST", "/job/save", {"data": _job(retries=11)}, 400, "retries"),
    ("policy unknown", "POST", "/job/save",
     {"data": _job(concurrencyPolicy="sometimes")}, 400, "concurrencyPolicy"),
    ("one-shot past", "POST", "/job/save",
     {"data": _job(cronExpr=_MISSING, runAt="2001-01-01T00:00:00Z")}, 400, "runAt"),
    ("http bad url", "POST", "/job/save",
     {"data": _job(command=_MISSING, type="http", http={"url": "gopher://x"})}, 400, "http.url"),
    ("enable no name", "POST", "/job/enable", {"data": {}}, 400, "name"),
    ("enable unknown", "POST", "/job/enable", {"data": {"name": "ghost"}}, 404, "name"),
    ("disable unknown", "POST", "/job/disable", {"data": {"name": "ghost"}}, 404, "name"),
    ("clone no new name", "POST", "/job/clone", {"data": {"name": "keep"}}, 400, "newName"),
    ("clone bad new name", "POST", "/job/clone",
     {"data": {"name": "keep", "newName": "a/b"}}, 400, "newName"),
    ("clone unknown", "POST", "/job/clone",
     {"data": {"name": "ghost", "newName": "new"}}, 404, "name"),
    ("clone onto existing", "POST", "/job/clone",
     {"data": {"name": "keep", "newName": "keep"}}, 409, "newName"),
    ("wrong method", "GET", "/job/save", {}, 405, None),
    ("unknown path", "GET", "/job/nothing", {}, 404, None),
    ("name format char", "POST", "/job/save",
     {"data": _job(name="evil\u202egnp.exe")}, 400, "name"),
    ("name zero width", "POST", "/job/save", {"data": _job(name="a\u200bb")}, 400, "name"),
    ("name line separator", "POST", "/job/save", {"data": _job(name="a\u2028b")}, 400, "name"),
    ("cron years past", "POST", "/job/save",
     {"data": _job(cronExpr="* * * * * * 1970")}, 400, "cronExpr"),
    ("cron years past range", "POST", "/job/save",
     {"data": _job(cronExpr="0 0 0 1 1 * 2020-2025")}, 400, "cronExpr"),
    ("timeout tiny", "POST", "/job/save", {"data": _job(timeout=1e-300)}, 400, "timeout"),
    ("grace tiny", "POST", "/job/save", {"data": _job(misfireGrace=1e-300)}, 400, "misfireGrace"),
    ("backoff tiny", "POST", "/job/save", {"data": _job(retryBackoff=1e-9)}, 400, "retryBackoff"),
    ("limit unknown", "POST", "/job/save",
     {"data": _job(limits={"memory": 5})}, 400, "limits.memory"),
    ("hostGroup a string", "POST", "/job/save", {"data": _job(hostGroup="db")}, 400, "hostGroup"),
    ("hostGroup bad key", "POST", "/job/save",
     {"data": _job(hostGroup={"bad key": "x"})}, 400, "hostGroup"),
    ("hostGroup value a number", "POST", "/job/save",
     {"data": _job(hostGroup={"group": 5})}, 400, "hostGroup.group"),
    ("routing unknown", "POST", "/job/save", {"data": _job(routing="fastest")}, 400, "routing"),
    ("form field twice", "POST", "/job/delete", {"data": "name=keep&name=other",
     "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "name"),
    ("query and form both", "POST", "/job/delete?name=keep", {"data": {"name": "other"}}, 400,
     "name"),
    ("query field twice", "GET", "/job/log?name=a&name=b", {}, 400, "name"),
    ("job key twice", "POST", "/job/save",
     {"data": {"job": '{"name":"keep","name":"x","command":"c","cronExpr":"@daily"}'}}, 400,
     "job.name"),
    ("json body key twice", "POST", "/job/delete",
     {"data": b'{"name":"keep","name":"other"}', "headers": {"Content-Type": "application/json"}},
     400, "body.name"),
    ("url too long", "GET", "/job/log?name=" + "a" * 9000, {}, 414, "url"),
    ("body too large", "POST", "/job/save",
     {"data": io.BytesIO(b"job=" + b"x" * (2 * 1024 * 1024)),
      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 413, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
async def test_bad_input_gets_4xx_naming_the_field_and_leaves_etcd_alone(
    client, etcd, stack, method, path, kwargs, status, field
) -> None:
    await call(client, "POST", "/job/save", data=job_form(name="keep"))
    before = await snapshot(etcd, stack)
    got_status, body = await call(client, method, path, **kwargs)
    assert got_status == status, body
    assert body["errno"] != 0 and body["data"] is None
    if field is not None:
        assert body["msg"].startswith(f"{field}: "), body
        assert body["field"] == field
    assert await snapshot(etcd, stack) == before  # nothing stored was changed or lost


async def test_etcd_unreachable_is_a_503_that_says_so(stack) -> None:
    config = manager_config(stack, etcd_endpoints=(f"127.0.0.1:{free_port()}",))
    async with as_admin(create_app(config)) as dead:
        for method, path, kwargs in [
            ("GET", "/job/list", {}),
            ("POST", "/job/save", {"data": job_form()}),
            ("POST", "/job/kill", {"data": {"name": "x"}}),
            ("GET", "/worker/list", {}),
        ]:
            status, body = await call(dead, method, path, **kwargs)
            assert status == 503, (path, body)
            assert body["errno"] != 0 and body["msg"].startswith("etcd unavailable"), body
        await ready_is_503_naming_the_store_down(dead, down="etcd")


@pytest.mark.waits  # ten seconds of MongoDB's server selection giving up
async def test_mongodb_unreachable_is_a_503_that_says_so(stack) -> None:
    config = manager_config(stack, mongodb_uri=f"mongodb://127.0.0.1:{free_port()}")
    async with as_admin(create_app(config)) as dead:
        # Side by side: each waits for MongoDB's server selection to give up.
        (status, body), _ = await asyncio.gather(
            call(dead, "GET", "/job/log", params={"name": "a"}),
            ready_is_503_naming_the_store_down(dead, down="mongodb"),
        )
    assert status == 503 and body["msg"].startswith("MongoDB unavailable"), body


async def ready_is_503_naming_the_store_down(client: TestClient, down: str) -> None:
    """/health/ready is a 503 naming the store that is down, and only that one; /health/alive
    stays 200: the process itself is fine."""
    status, body = await call(client, "GET", "/health/ready")
    assert status == 503 and body["ready"] is False, body
    if down == "etcd":
        assert body["etcd"].startswith("etcd unavailable") and body["mongodb"] == "ok", body
    else:
        assert body["mongodb"] != "ok" and body["etcd"] == "ok", body
    status, _ = await call(client, "GET", "/health/alive")
    assert status == 200


async def test_console_needs_a_login_and_the_login_page_does_not(client) -> None:
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/login.html"
    login_page = await client.get("/login.html")
    assert login_page.status == 200 and 'id="login-form"' in await login_page.text()
    vendor = await client.get("/vendor/jquery/jquery.min.js")
    assert vendor.status == 200
    form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    assert (await client.post("/auth/login", data=form)).status == 200
    response = await client.get("/", allow_redirects=False)  # the session cookie opens it
    assert response.status == 200 and 'id="jobs-table"' in await response.text()


async def test_health_probes_and_metrics(client, stack) -> None:
    status, body = await call(client, "GET", "/health/alive")
    assert (status, body) == (200, {"alive": True})
    status, body = await call(client, "GET", "/health/ready")
    assert (status, body) == (200, {"ready": True, "etcd": "ok", "mongodb": "ok"})
    await call(client, "GET", "/job/list")
    assert (await client.get("/no/such/thing")).status == 404
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'gdts_http_requests_total{route="/job/list",status="200"} 1.0' in text.splitlines()
    assert 'route="other",status="404"' in text  # unknown paths share one label
    assert "gdts_http_request_seconds_count" in text


async def test_job_list_pages_by_name_keeping_the_response_shape(client) -> None:
    for i in range(7):
        await call(client, "POST", "/job/save", data=job_form(name=f"job-{i}"))
    _, body = await call(client, "GET", "/job/list")
    assert [j["name"] for j in body["data"]] == [f"job-{i}" for i in range(7)]
    pages, after = [], ""
    while True:
        _, body = await call(client, "GET", "/job/list", params={"limit": 3, "after": after})
        assert body["errno"] == 0 and isinstance(body["data"], list)
        if not body["data"]:
            break
        pages.append([j["name"] for j in body["data"]])
        after = body["data"][-1]["name"]
    assert pages == [["job-0", "job-1", "job-2"], ["job-3", "job-4", "job-5"], ["job-6"]]
    status, body = await call(client, "GET", "/job/list", params={"limit": "-1"})
    assert status == 400 and body["field"] == "limit"
    status, body = await call(client, "GET", "/job/list", params={"after": "a/b"})
    assert status == 400 and body["field"] == "after"


async def test_the_list_filters_by_name_tag_owner_status_and_host_and_pages_the_matches(
    client, etcd, stack, monkeypatch
) -> None:
    for job in (
        _job(
            name="backup-db",
            tags=["prod", "db"],
            description="Dumps the database",
            command="pg_dump app | gzip > /backups/app.gz",
        ),
        _job(name="Backup-Web", tags=["prod"], enabled=False),
        _job(name="report", tags=["team/ops"]),
        _job(name="cleanup"),
    ):
        assert (await call(client, "POST", "/job/save", data=job))[0] == 200
    # Another owner's jobs: the manager sets the owner from the caller, so written directly.
    keys = KeyLayout(stack.prefix)
    for name in ("bob-1", "bob-2"):
        bobs = Job.from_api({"name": name, "command": "true", "cronExpr": "@daily",
                             "owner": "bob", "tags": ["prod"]})  # fmt: skip
        await etcd.put(keys.job(name), bobs.to_record())
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        await runlog.ensure_indexes()
        await runlog.insert([dataclasses.replace(_run(name, 1), worker=worker,
                                                 status=status).to_document()
                             for name, worker, status in (
            ("backup-db", "w2", RunStatus.SUCCEEDED),
            ("Backup-Web", "w2", RunStatus.FAILED),
            ("report", "w1", RunStatus.TIMEOUT),
            ("bob-1", "w1", RunStatus.KILLED),
        )])  # fmt: skip
    finally:
        await mongo.close()
    cleanup = await etcd.get(keys.job("cleanup"))
    await etcd.put(keys.running("cleanup", cleanup.create_revision), running_marker("w3", 1, 1))

    async def listed(**params: Any) -> list[str]:
        status, body = await call(client, "GET", "/job/list", params=params)
        assert status == 200, body
        return [job["name"] for job in body["data"]]

    everyone = ["Backup-Web", "backup-db", "bob-1", "bob-2", "cleanup", "report"]
    assert await listed() == everyone
    assert await listed(name="", tag="", owner="", status="", host="") == everyone
    assert await listed(name="BACKUP") == ["Backup-Web", "backup-db"]
    assert await listed(command="PG_DUMP APP") == ["backup-db"]
    assert await listed(tag="prod") == ["Backup-Web", "backup-db", "bob-1", "bob-2"]
    assert await listed(tag="prod,db") == ["backup-db"]
    assert await listed(owner="bob") == ["bob-1", "bob-2"]
    assert await listed(owner=ADMIN_USER, tag="prod") == ["Backup-Web", "backup-db"]
    assert await listed(status="paused") == ["Backup-Web"]
    assert await listed(status="running") == ["cleanup"]
    assert await listed(status="failing") == ["Backup-Web", "report"]  # a kill is no failure
    assert await listed(host="w1") == ["bob-1", "report"]
    assert await listed(host="w3") == ["cleanup"]  # running there now
    # A filtered page holds matches only; the next starts after its last name.
    assert await listed(tag="prod", limit=3) == ["Backup-Web", "backup-db", "bob-1"]
    assert await listed(tag="prod", limit=3, after="bob-1") == ["bob-2"]
    assert await listed(tag="prod", after="bob-2") == []
    # The unfiltered pages are as before, and the whole list after filtered ones too.
    assert await listed(limit=2, after="bob-2") == ["cleanup", "report"]
    assert await listed() == everyone
    # A job written since the last full listing: a filtered page is searched for a page of
    # jobs at a time (two here), not read whole, and finds the same.
    monkeypatch.setattr(listing_module, "SEARCH_PAGE", 2)
    listing = client.app[JOB_LISTING]
    searches = []
    search = listing._search
    monkeypatch.setattr(listing, "_search", lambda *args: searches.append(args) or search(*args))
    await etcd.put(keys.job("zz-bob"), bobs.with_changes(name="zz-bob").to_record())
    assert await listed(tag="prod", limit=2) == ["Backup-Web", "backup-db"]
    assert await listed(tag="prod", limit=2, after="backup-db") == ["bob-1", "bob-2"]
    assert await listed(tag="prod", limit=2, after="bob-2") == ["zz-bob"]
    assert await listed(owner="bob", host="w1", limit=5) == ["bob-1"]
    assert len(searches) == 4
    _, body = await call(client, "GET", "/job/list", params={"name": "backup-db"})
    (shown,) = body["data"]
    assert shown["tags"] == ["prod", "db"] and shown["description"] == "Dumps the database"
    assert shown["lastRun"]["worker"] == "w2"
    for params, field, problem in (
        ({"status": "broken"}, "status", "must be one of failing, running, paused"),
        ({"tag": "a b"}, "tag", "'a b' is not a tag"),
        ({"name": "n" * 129}, "name", "at most 128 characters"),
        ({"host": "h" * 301}, "host", "at most 300 characters"),
        ({"owner": "o" * 129}, "owner", "at most 128 characters"),
        ({"tags": "prod"}, "tags", "unknown field for /job/list"),
    ):
        status, body = await call(client, "GET", "/job/list", params=params)
        assert status == 400 and body["field"] == field and problem in body["msg"], body


async def test_deleting_a_job_forgets_its_one_shot_done_markers(client, etcd, stack) -> None:
    await call(client, "POST", "/job/save", data=_job(name="once"))
    keys = KeyLayout(stack.prefix)
    await etcd.put(keys.done("once", 1000), b"ran")
    await etcd.put(keys.done("once-more", 1000), b"another job's")
    status, body = await call(client, "POST", "/job/delete", data={"name": "once"})
    assert status == 200 and body["data"]["name"] == "once"
    assert await etcd.get(keys.done("once", 1000)) is None
    assert await etcd.get(keys.done("once-more", 1000)) is not None


async def test_the_list_shows_each_jobs_next_run_last_run_and_whether_it_runs_now(
    client, etcd, stack
) -> None:
    await call(client, "POST", "/job/save", data=_job(name="daily", cronExpr="30 2 * * *"))
    await call(client, "POST", "/job/save", data=_job(name="paused", enabled=False))
    await call(client, "POST", "/job/save", data=_job(name="tokyo", cronExpr="0 9 * * *",
                                                      timezone="Asia/Tokyo"))  # fmt: skip
    before = time.time()
    _, body = await call(client, "GET", "/job/list")
    jobs = {job["name"]: job for job in body["data"]}
    next_daily = jobs["daily"]["nextRunTime"]
    assert before * 1000 < next_daily <= before * 1000 + 86_400_000
    assert time.gmtime(next_daily / 1000)[3:6] == (2, 30, 0)
    assert time.gmtime(jobs["tokyo"]["nextRunTime"] / 1000)[3:6] == (0, 0, 0)  # 09:00 JST
    assert jobs["paused"]["nextRunTime"] is None
    assert all(job["running"] is False and job["lastRun"] is None for job in jobs.values())

    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        runlog = RunLog(mongo, stack.database)
        await runlog.ensure_indexes()
        # Out of order, as several workers write them: the newest start wins.
        await runlog.insert([_run("daily", 7).to_document(), _run("daily", 3).to_document()])
        await runlog.insert([_run("daily", 5).to_document()])
    finally:
        await mongo.close()
    keys = KeyLayout(stack.prefix)
    paused = await etcd.get(keys.job("paused"))
    await etcd.put(keys.running("paused", paused.create_revision), b"{}")
    # A run that a deleted job of the same name left going is not this job's.
    await etcd.put(keys.running("daily", 1), b"{}")
    _, body = await call(client, "GET", "/job/list")
    jobs = {job["name"]: job for job in body["data"]}
    assert jobs["daily"]["lastRun"] == {
        "status": "succeeded", "planTime": 7000, "startTime": 7005, "endTime": 7009,
        "attempt": 1, "trigger": "schedule", "worker": "w",
    }  # fmt: skip
    assert jobs["paused"]["running"] is True and jobs["daily"]["running"] is False
    # A listed job saves back as it is: the status fields are read-only and ignored.
    status, _ = await call(client, "POST", "/job/save", json={"job": jobs["daily"]})
    assert status == 200


async def test_cron_preview_shows_the_next_runs_or_the_error(client) -> None:
    status, body = await call(
        client,
        "GET",
        "/cron/preview",
        params={"cronExpr": "30 2 * * *", "timezone": "Europe/Berlin", "count": 3},
    )
    assert status == 200, body
    runs = body["data"]["next"]
    assert len(runs) == 3 and runs[0] > now_ms()
    assert all(23 * 3600_000 <= b - a <= 25 * 3600_000 for a, b in itertools.pairwise(runs))
    for ms in runs:
        local = datetime.fromtimestamp(ms / 1000, ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) in ((2, 30), (3, 0))  # 03:00 on a spring-forward day
    assert body["data"]["timezone"] == "Europe/Berlin"
    status, body = await call(client, "GET", "/cron/preview", params={"cronExpr": "61 * * * *"})
    assert status == 400 and body["field"] == "cronExpr" and "minute" in body["msg"]
    status, body = await call(
        client, "GET", "/cron/preview", params={"cronExpr": "@daily", "timezone": "Mars/Base"}
    )
    assert status == 400 and body["field"] == "timezone"
