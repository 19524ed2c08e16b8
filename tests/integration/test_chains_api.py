"""Chains through the API against real etcd and mongod: a save of a chain job is checked against
every stored job's links (400 naming parents or children), writes its links' index in the same
transaction, and a job another job names cannot be deleted (409 naming them); /job/log?chainId=
lists one chain run's steps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gdts.config import ManagerConfig
from gdts.etcd import EtcdClient, read_prefix
from gdts.manager.api import PAGE_OUTPUT_CHARS
from gdts.manager.app import create_app
from gdts.mongo import open_mongo
from gdts.runlog import COLLECTION, RunLog
from gdts.runrecord import ChainStep, RunRecord, RunStatus
from tests.support import ADMIN_PASSWORD, ADMIN_TOKEN, REPO_ROOT, Stack

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
NEVER = "0 0 0 1 1 *"
PASSWORD = "correct horse battery"


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    config = ManagerConfig(
        etcd_endpoints=(stack.etcd_endpoint,), etcd_prefix=stack.prefix,
        mongodb_uri=stack.mongo_uri, mongodb_database=stack.database,
        webroot=str(REPO_ROOT / "webroot"), admin_password=ADMIN_PASSWORD,
        admin_token=ADMIN_TOKEN,
        log_retention_days=0,  # its runs are from 1970: kept for ever, not for 30 days
    )  # fmt: skip
    async with TestClient(TestServer(create_app(config))) as test_client:
        yield test_client


async def call(
    client: Client, method: str, path: str, token: str = ADMIN_TOKEN, **data: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if method == "GET":
        response = await client.get(path, params=data, headers=headers)
    else:
        response = await client.post(path, data=data, headers=headers)
    return response.status, await response.json()


async def save(client: Client, name: str, token: str = ADMIN_TOKEN, **fields: Any):  # noqa: ANN201
    job = {"name": name, "command": f"echo {name}", "cronExpr": NEVER, **fields}
    return await call(client, "POST", "/job/save", token, job=json.dumps(job))


async def saved(client: Client, name: str, token: str = ADMIN_TOKEN, **fields: Any) -> None:
    status, body = await save(client, name, token, **fields)
    assert (status, body["errno"]) == (200, 0), body


async def links_index(etcd: EtcdClient, stack: Stack) -> dict[str, str]:
    """The links' index as etcd holds it: "<named>/<by>" -> which list."""
    prefix = f"{stack.prefix}linked/".encode()
    kvs, _ = await read_prefix(etcd, prefix)
    return {kv.key[len(prefix) :].decode(): kv.value.decode() for kv in kvs}


async def snapshot(etcd: EtcdClient, stack: Stack) -> list[tuple[bytes, bytes]]:
    kvs, _ = await read_prefix(etcd, stack.prefix.encode())
    return [(kv.key, kv.value) for kv in kvs]


async def test_a_chain_is_saved_with_its_links_listed_and_indexed(client, etcd, stack) -> None:
    for name in ("extract", "load", "report", "mail"):
        await saved(client, name)
    await saved(client, "transform", parents=["extract"],
                children=["load", "report"], childrenMode="parallel")  # fmt: skip
    await saved(client, "report", children=["mail"])
    _, body = await call(client, "GET", "/job/list")
    jobs = {job["name"]: job for job in body["data"]}
    assert {k: jobs["transform"][k] for k in ("parents", "parentsMode", "children",
                                               "childrenMode")} == {
        "parents": ["extract"], "parentsMode": "serial", "children": ["load", "report"],
        "childrenMode": "parallel",
    }  # fmt: skip
    assert (jobs["extract"]["parents"], jobs["extract"]["children"]) == (None, None)
    assert await links_index(etcd, stack) == {
        "extract/transform": "parents", "load/transform": "children",
        "report/transform": "children", "mail/report": "children",
    }  # fmt: skip

    # Saved again with other links: the index follows; paused, nothing changes.
    await saved(client, "transform", parents=["extract"], children=["load"])
    status, _ = await call(client, "POST", "/job/disable", name="report")
    assert status == 200
    assert await links_index(etcd, stack) == {
        "extract/transform": "parents", "load/transform": "children", "mail/report": "children",
    }  # fmt: skip
    await saved(client, "report")
    assert await links_index(etcd, stack) == {
        "extract/transform": "parents", "load/transform": "children",
    }  # fmt: skip


async def test_a_chain_that_cannot_run_is_refused_naming_the_field(client, etcd, stack) -> None:
    await saved(client, "a")
    await saved(client, "b", parents=["a"])
    # 11 levels in a row: j0 is the parent of j1, ..., j9 of j10.
    await saved(client, "j0")
    for level in range(1, 10):
        await saved(client, f"j{level}", parents=[f"j{level - 1}"])
    before = await snapshot(etcd, stack)
    for name, fields, field, says in [
        ("a", {"parents": ["b"]}, "parents", "a job may not reach itself: a -> b -> a"),
        ("a", {"children": ["a"]}, "children", "a job may not be its own child"),
        ("a", {"parents": ["a"]}, "parents", "a job may not be its own parent"),
        ("c", {"children": ["ghost"]}, "children", "no job is named 'ghost'"),
        ("j10", {"parents": ["j9"]}, "parents", "a chain may span at most 10 levels"),
        ("c", {"parents": ["b"], "parentsMode": "sometimes"}, "parentsMode",
         "must be serial or parallel"),
        ("c", {"children": "b"}, "children", "must be a list of job names"),
    ]:  # fmt: skip
        status, body = await save(client, name, **fields)
        assert (status, body["field"]) == (400, field), body
        assert body["msg"].startswith(f"{field}: ") and says in body["msg"], body
    assert await snapshot(etcd, stack) == before  # nothing stored, nothing indexed


async def test_more_than_50_steps_on_one_level_is_refused(client) -> None:
    # head's two parents have 26 parents each: 52 grandparents, one level.
    for side in ("l", "r"):
        for i in range(26):
            await saved(client, f"{side}{i}")
        await saved(client, f"{side}-parent", parents=[f"{side}{i}" for i in range(26)])
    status, body = await save(client, "head", parents=["l-parent", "r-parent"])
    assert (status, body["field"]) == (400, "parents"), body
    assert "at most 50 steps on one level" in body["msg"]


async def test_a_job_another_job_names_is_not_deleted(client, etcd, stack) -> None:
    for name in ("setup", "cleanup"):
        await saved(client, name)
    await saved(client, "main", parents=["setup"], children=["cleanup"])
    await saved(client, "other", children=["cleanup"])
    before = await snapshot(etcd, stack)
    status, body = await call(client, "POST", "/job/delete", name="cleanup")
    assert (status, body["field"]) == (409, "name"), body
    assert body["msg"] == (
        "name: job 'cleanup' is in the children of 'main', 'other': a chain would be left "
        "naming a job that does not exist; remove 'cleanup' from their lists first"
    )
    assert await snapshot(etcd, stack) == before

    # Taken out of the other jobs' lists, it goes; a job that names others goes at once, and
    # its links with it.
    await saved(client, "other")
    status, body = await call(client, "POST", "/job/delete", name="main")
    assert status == 200 and body["data"]["children"] == ["cleanup"]
    assert await links_index(etcd, stack) == {}
    for name in ("cleanup", "setup", "other"):
        status, _ = await call(client, "POST", "/job/delete", name=name)
        assert status == 200


async def test_a_copy_of_a_chain_job_is_in_its_chains(client, etcd, stack) -> None:
    for name in ("before", "after"):
        await saved(client, name)
    await saved(client, "job", parents=["before"], children=["after"])
    status, body = await call(client, "POST", "/job/clone", name="job", newName="copy")
    assert status == 200 and (body["data"]["parents"], body["data"]["children"]) == (
        ["before"], ["after"],
    )  # fmt: skip
    assert await links_index(etcd, stack) == {
        "before/job": "parents", "after/job": "children",
        "before/copy": "parents", "after/copy": "children",
    }  # fmt: skip
    status, body = await call(client, "POST", "/job/delete", name="after")
    assert status == 409 and "the children of 'copy', 'job'" in body["msg"], body
    status, body = await call(client, "POST", "/job/clone", name="job", newName="before")
    assert (status, body["field"]) == (409, "newName"), body


async def test_a_user_chains_only_their_own_jobs(client, etcd, stack) -> None:
    carol = await user_token(client, "carol")
    await saved(client, "admins")
    await saved(client, "carols", carol)
    before = await snapshot(etcd, stack)
    status, body = await save(client, "carols-chain", carol, parents=["carols", "admins"])
    assert status == 403, body
    assert body["msg"] == (
        "parents: its chain run would run job 'admins', which belongs to 'admin'; a user may "
        "chain only their own jobs, as they may run only their own"
    )
    assert await snapshot(etcd, stack) == before
    await saved(client, "carols-chain", carol, parents=["carols"])
    # An admin may chain anyone's jobs; the user may then still change the rest of their job.
    await saved(client, "carols-chain", parents=["carols"], children=["admins"])
    await saved(client, "carols-chain", carol, parents=["carols"], children=["admins"],
                command="echo changed")  # fmt: skip
    status, body = await save(client, "carols-chain", carol, children=["admins"])
    assert status == 200, body  # fewer links: nothing new is chained


async def user_token(client: Client, username: str) -> str:
    """An account of role user made by the admin, and a token made for it by the admin."""
    status, body = await call(client, "POST", "/user/save", username=username, role="user",
                              password=PASSWORD)  # fmt: skip
    assert status == 200, body
    response = await client.post("/auth/login", data={"username": username, "password": PASSWORD})
    session = (await response.json())["data"]
    response = await client.post("/token/create", data={"name": "tests"},
                                 headers={"X-CSRF-Token": session["csrfToken"]})  # fmt: skip
    client.session.cookie_jar.clear()
    return str((await response.json())["data"]["token"])


# -- /job/log?chainId= -----------------------------------------------------------------------

CHAIN = "nightly@7/1767225600000"


def step_run(job: str, step: int, status: RunStatus, attempt: int = 1, chain: str = CHAIN,
             output: str = "", steps: int = 4) -> dict[str, Any]:  # fmt: skip
    plan = int(chain.rpartition("/")[2]) + 10 * step + attempt  # planned when requested
    started = None if status is RunStatus.SKIPPED else plan + 5
    return RunRecord(
        job_name=job, command=f"echo {job}", worker="w1", plan_time=plan, schedule_time=plan,
        start_time=started, end_time=plan + 9, output=output or f"{job} {attempt}", err="",
        exit_code=None if started is None else int(status is not RunStatus.SUCCEEDED),
        status=status, attempt=attempt, trigger="chain", chain=ChainStep(chain, step, steps),
    ).to_document()  # fmt: skip


async def test_the_log_of_a_chain_run_lists_its_steps_in_order(client, stack) -> None:
    long_output = "x" * 5000
    runs = [
        step_run("report", 2, RunStatus.SKIPPED),
        step_run("nightly", 1, RunStatus.FAILED, attempt=2),
        step_run("extract", 0, RunStatus.SUCCEEDED, output=long_output),
        step_run("mail", 3, RunStatus.SKIPPED),
        step_run("nightly", 1, RunStatus.FAILED, attempt=1),
        step_run("extract", 0, RunStatus.SUCCEEDED, chain="nightly@7/1767229200000"),
    ]
    plain = RunRecord(
        job_name="extract", command="echo extract", worker="w1", plan_time=1000,
        schedule_time=1000, start_time=1005, end_time=1009, output="", err="", exit_code=0,
        status=RunStatus.SUCCEEDED,
    ).to_document()  # fmt: skip
    mongo = open_mongo(stack.mongo_uri, 3000)
    try:
        run_log = RunLog(mongo, stack.database)
        await run_log.ensure_indexes()
        assert await run_log.insert([*runs, plain]) == 0
        # The planner takes the partial index by itself (no hint), reading the index alone.
        plan = await mongo[stack.database][COLLECTION].find({"chainId": CHAIN}, {"_id": 1}) \
            .sort([("chainStep", 1), ("attempt", 1), ("_id", 1)]).explain()  # fmt: skip
        assert "chain_step_attempt" in str(plan["queryPlanner"]["winningPlan"])
        assert "FETCH" not in str(plan["queryPlanner"]["winningPlan"])
    finally:
        await mongo.close()

    status, body = await call(client, "GET", "/job/log", chainId=CHAIN)
    assert status == 200, body
    steps = body["data"]
    assert [(r["chainStep"], r["attempt"], r["jobName"], r["status"]) for r in steps] == [
        (0, 1, "extract", "succeeded"), (1, 1, "nightly", "failed"),
        (1, 2, "nightly", "failed"), (2, 1, "report", "skipped"), (3, 1, "mail", "skipped"),
    ]  # fmt: skip
    assert {(r["chainId"], r["chainSteps"], r["trigger"]) for r in steps} == {(CHAIN, 4, "chain")}
    assert steps[3]["startTime"] is None and "_id" not in steps[0]
    # Paged and bounded as a job's log: 1,000 to a page share 1 MiB, about 1 KiB each.
    _, body = await call(client, "GET", "/job/log", chainId=CHAIN, skip="1", limit="2")
    assert [(r["chainStep"], r["attempt"]) for r in body["data"]] == [(1, 1), (1, 2)]
    _, body = await call(client, "GET", "/job/log", chainId=CHAIN, limit="1000")
    first = body["data"][0]
    assert (len(first["output"]), first["outputBytes"]) == (PAGE_OUTPUT_CHARS // 1000, 5000)
    _, body = await call(client, "GET", "/job/log", chainId="nightly@7/1")
    assert body["data"] == []


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"chainId": ""}, "chainId", "must be a chain run's id"),
        ({"chainId": "nightly"}, "chainId", "'nightly' is not a chain run's id"),
        ({"chainId": "nightly@7"}, "chainId", "is not a chain run's id"),
        ({"chainId": "night/ly@7/1"}, "chainId", "is not a chain run's id"),
        ({"chainId": "nightly@x/1"}, "chainId", "is not a chain run's id"),
        ({"chainId": "nightly@7/" + "1" * 16}, "chainId", "is not a chain run's id"),
        ({"chainId": "a\x07b@7/1"}, "chainId", "control characters"),
        ({"chainId": " nightly@7/1"}, "chainId", "white space"),
        ({"chainId": CHAIN, "name": "nightly"}, "chainId", "give name or chainId, not both"),
        ({}, "name", "is required (or chainId"),
    ],
)
async def test_a_bad_chain_id_is_a_400_naming_it(client, query, field, says) -> None:
    status, body = await call(client, "GET", "/job/log", **query)
    assert (status, body["field"]) == (400, field), body
    assert body["msg"].startswith(f"{field}: ") and says in body["msg"], body
