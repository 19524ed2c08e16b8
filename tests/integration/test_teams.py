"""Teams: every job endpoint called by each role of the job's team and by a member of another
team gets exactly what the table says; a job of another team is answered exactly as a job that
does not exist. Against a real manager application on the session's etcd and mongod."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from gdts.keys import KeyLayout
from gdts.manager.jobstore import JobStore
from tests.integration.test_security import (
    PASSWORD,
    account_with_token,
    call,
    client,  # noqa: F401 (the fixture)
    login,
    ok,
)
from tests.support import ADMIN_TOKEN

pytestmark = pytest.mark.asyncio


def team_job(name: str, team: str | None = "alpha", command: str = "echo hi") -> str:
    fields: dict[str, Any] = {"name": name, "command": command, "cronExpr": "0 3 * * *"}
    if team is not None:
        fields["team"] = team
    return json.dumps(fields)


async def teams_with_members(client) -> dict[str, str]:  # noqa: F811
    """Teams alpha and beta, and a token for each kind of caller."""
    tokens = {
        who: await account_with_token(client, who, "user")
        for who in ("maintainer", "owner", "member", "outsider")
    }
    tokens["guest"] = await account_with_token(client, "guest", "guest")
    for team in ("alpha", "beta"):
        await ok(client, "POST", "/team/save", name=team)
    for who, role in (("maintainer", "maintainer"), ("owner", "user"), ("member", "user"),
                      ("guest", "guest")):  # fmt: skip
        await ok(client, "POST", "/team/member/save", team="alpha", username=who, role=role)
    await ok(client, "POST", "/team/member/save", team="beta", username="outsider", role="user")
    # Out of the default team (every new account joins it): alpha's and beta's only.
    for who in ("maintainer", "owner", "member", "guest", "outsider"):
        await ok(client, "POST", "/team/member/delete", team="default", username=who)
    return tokens


# What each caller gets from each endpoint naming alpha's job "shared" (owned by "owner"):
# 200, 403 (a member without the right), 404 (not a member: as if there were no such job).
READS = ("/job/log", "/job/running", "/job/output", "/job/output/stream")
CHANGES = ("/job/kill", "/job/run", "/job/disable", "/job/enable", "/job/delete")
EXPECTED = {
    "admin": dict.fromkeys((*READS, *CHANGES, "/job/clone"), 200),
    "maintainer": dict.fromkeys((*READS, *CHANGES, "/job/clone"), 200),
    "owner": dict.fromkeys((*READS, *CHANGES, "/job/clone"), 200),
    "member": {**dict.fromkeys(READS, 200), **dict.fromkeys(CHANGES, 403), "/job/clone": 200},
    "guest": {**dict.fromkeys(READS, 200), **dict.fromkeys(CHANGES, 403), "/job/clone": 403},
    "outsider": dict.fromkeys((*READS, *CHANGES, "/job/clone"), 404),
}


def fields_for(path: str, name: str, who: str) -> dict[str, str]:
    if path in ("/job/output", "/job/output/stream"):
        return {"name": name, "planTime": "1"}
    if path == "/job/clone":
        return {"name": name, "newName": f"{who}-copy"}
    return {"name": name}


async def test_each_team_role_gets_exactly_what_the_table_says(client) -> None:  # noqa: F811
    tokens = {**await teams_with_members(client), "admin": ADMIN_TOKEN}
    for who, expected in EXPECTED.items():
        await ok(client, "POST", "/job/save", tokens["owner"], job=team_job("shared"))
        for path in (*READS, "/job/clone", *CHANGES):  # deleting last: the others need it
            status, body = await call(client, "GET" if path in READS else "POST", path,
                                      tokens[who], fields_for(path, "shared", who))  # fmt: skip
            want = expected[path]
            if want == 200 and path in ("/job/output", "/job/output/stream"):
                assert (status, body["field"]) == (404, "planTime"), (who, path, body)
                continue  # no such run: the job was seen, its run is not there
            assert status == want, (who, path, status, body)
            if want == 404:
                # Word for word what a job that does not exist gets.
                missing, nothing = await call(
                    client,
                    "GET" if path in READS else "POST",
                    path,
                    tokens[who],
                    fields_for(path, "nothing", who),
                )
                assert missing == 404
                assert body == {**nothing, "msg": nothing["msg"].replace("nothing", "shared")}


async def test_listing_dashboard_and_teams_show_only_the_callers_teams(client) -> None:  # noqa: F811
    tokens = await teams_with_members(client)
    await ok(client, "POST", "/job/save", tokens["owner"], job=team_job("alpha-job"))
    await ok(client, "POST", "/job/save", tokens["outsider"], job=team_job("beta-job", None))
    await ok(client, "POST", "/job/save", ADMIN_TOKEN, job=team_job("default-job", None))

    async def listed(who: str, **filters: str) -> list[str]:
        jobs = await ok(client, "GET", "/job/list", tokens.get(who, ADMIN_TOKEN), **filters)
        return [j["name"] for j in jobs]

    assert await listed("member") == ["alpha-job"]
    assert await listed("outsider") == ["beta-job"]  # their only team, given by default
    assert await listed("admin") == ["alpha-job", "beta-job", "default-job"]
    assert await listed("admin", team="beta") == ["beta-job"]
    assert await listed("member", team="beta") == []
    assert await listed("member", limit="1") == ["alpha-job"]  # a page filters alike
    (alpha,) = await ok(client, "GET", "/team/list", tokens["member"])
    assert (alpha["name"], alpha["role"]) == ("alpha", "user")
    assert {m["username"] for m in alpha["members"]} == {"maintainer", "owner", "member", "guest"}
    everything = await ok(client, "GET", "/team/list", ADMIN_TOKEN)
    assert [t["name"] for t in everything] == ["alpha", "beta", "default"]
    me = await ok(client, "GET", "/auth/me", tokens["member"])
    assert me["teams"] == {"alpha": "user"}


async def test_saving_into_teams(client) -> None:  # noqa: F811
    tokens = await teams_with_members(client)
    # Several teams where a user may create jobs: the team must be given.
    await ok(client, "POST", "/team/member/save", team="beta", username="member", role="user")
    status, body = await call(client, "POST", "/job/save", tokens["member"],
                              {"job": team_job("which", None)})  # fmt: skip
    assert (status, body["field"]) == (400, "team"), body
    # Not a member: refused, naming the field; a guest may not create there.
    status, body = await call(client, "POST", "/job/save", tokens["outsider"],
                              {"job": team_job("sneaky", "alpha")})  # fmt: skip
    assert (status, body["field"]) == (400, "team"), body
    status, body = await call(client, "POST", "/job/save", tokens["guest"],
                              {"job": team_job("guests", "alpha")})  # fmt: skip
    assert status == 403, body
    # A name another team uses is taken (names are shared), and its job is unchanged.
    await ok(client, "POST", "/job/save", tokens["owner"], job=team_job("taken"))
    status, body = await call(client, "POST", "/job/save", tokens["outsider"],
                              {"job": team_job("taken", None, "rm -rf /")})  # fmt: skip
    assert (status, body["field"]) == (409, "name"), body
    (taken,) = [j for j in await ok(client, "GET", "/job/list", ADMIN_TOKEN, name="taken")]
    assert (taken["command"], taken["team"], taken["owner"]) == ("echo hi", "alpha", "owner")
    # Saved again without a team, a job keeps its team; moving it needs a right in both.
    await ok(client, "POST", "/job/save", tokens["maintainer"], job=team_job("taken", None))
    (taken,) = await ok(client, "GET", "/job/list", ADMIN_TOKEN, name="taken")
    assert taken["team"] == "alpha"
    status, body = await call(client, "POST", "/job/save", tokens["maintainer"],
                              {"job": team_job("taken", "beta")})  # fmt: skip
    assert (status, body["field"]) == (400, "team"), body
    await ok(client, "POST", "/job/save", ADMIN_TOKEN, job=team_job("taken", "beta"))
    assert [j["name"] for j in await ok(client, "GET", "/job/list", tokens["outsider"])] == [
        "taken"
    ]
    # A team with jobs is not deleted.
    status, body = await call(client, "POST", "/team/delete", ADMIN_TOKEN, {"name": "beta"})
    assert status == 409 and "'taken'" in body["msg"], body


async def test_an_account_deleted_and_made_again_inherits_nothing(client, stack) -> None:  # noqa: F811
    tokens = await teams_with_members(client)
    await ok(client, "POST", "/job/save", tokens["owner"], job=team_job("heirloom"))
    status, body = await call(client, "POST", "/user/delete", ADMIN_TOKEN, {"username": "owner"})
    assert (status, body["field"]) == (409, "newOwner") and "'heirloom'" in body["msg"], body
    gone = await ok(client, "POST", "/user/delete", ADMIN_TOKEN, username="owner", toTeam="true")
    assert gone["jobsHandedOver"] == ["heirloom"]
    # A new account of the same name, in the same team, does not own the job.
    again = await account_with_token(client, "owner", "user")
    await ok(client, "POST", "/team/member/save", team="alpha", username="owner", role="user")
    status, body = await call(client, "POST", "/job/disable", again, {"name": "heirloom"})
    assert status == 403, body
    # A maintainer still changes it; handed to someone, it is theirs.
    await ok(client, "POST", "/job/disable", tokens["maintainer"], name="heirloom")
    await ok(client, "POST", "/job/save", again, job=team_job("second"))
    handed = await ok(client, "POST", "/user/delete", ADMIN_TOKEN, username="owner",
                      newOwner="member")  # fmt: skip
    assert handed["jobsHandedOver"] == ["second"]
    await ok(client, "POST", "/job/disable", tokens["member"], name="second")
    (second,) = await ok(client, "GET", "/job/list", ADMIN_TOKEN, name="second")
    assert second["owner"] == "member"
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        members = (await mongo[stack.database]["teams"].find_one({"_id": "alpha"}))["members"]
    finally:
        await mongo.close()
    assert len(members) == 3  # the deleted account (made again, then deleted) left its teams


async def test_changing_a_password_ends_the_other_sessions(client) -> None:  # noqa: F811
    await account_with_token(client, "frank", "user")
    other = await login(client, "frank", PASSWORD)
    other_cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    client.session.cookie_jar.clear()
    this = await login(client, "frank", PASSWORD)
    status, body = await call(client, "POST", "/auth/password", None,
                              {"currentPassword": PASSWORD, "newPassword": PASSWORD + "!"},
                              headers={"X-CSRF-Token": this["csrfToken"]})  # fmt: skip
    # The one account_with_token opened and the other one here.
    assert (status, body["data"]) == (200, {"otherSessionsEnded": 2}), body
    assert (await call(client, "GET", "/auth/me", None))[0] == 200  # this one goes on
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies(other_cookies)
    status, _ = await call(client, "GET", "/auth/me", None)
    assert status == 401 and other["csrfToken"]


async def test_a_teams_secrets_are_written_by_its_maintainers_and_named_by_its_members(
    client,  # noqa: F811
) -> None:
    tokens = await teams_with_members(client)

    async def status_of(who: str, method: str, path: str, **fields: str) -> int:
        status, _ = await call(client, method, path, tokens[who], fields)
        return status

    secret = {"team": "alpha", "name": "db-password", "value": "s3cret-value"}
    assert await status_of("member", "POST", "/secret/save", **secret) == 403
    assert await status_of("outsider", "POST", "/secret/save", **secret) == 403
    assert await status_of("maintainer", "POST", "/secret/save", **secret) == 200
    assert await status_of("member", "GET", "/secret/list", team="alpha") == 200
    assert await status_of("outsider", "GET", "/secret/list", team="alpha") == 403
    # A member names it in a job of the team; a job of another team cannot.
    job = {"name": "uses-it", "command": "true", "cronExpr": "0 3 * * *", "team": "alpha",
           "secretEnv": {"PGPASSWORD": "db-password"}}  # fmt: skip
    await ok(client, "POST", "/job/save", tokens["owner"], job=json.dumps(job))
    elsewhere = {**job, "name": "wants-it", "team": "beta"}
    status, body = await call(client, "POST", "/job/save", tokens["outsider"],
                              {"job": json.dumps(elsewhere)})  # fmt: skip
    assert (status, body["field"]) == (400, "secretEnv.PGPASSWORD"), body
    # Saved again without its team, the job is checked against the team it stays in.
    del job["team"]
    await ok(client, "POST", "/job/save", tokens["owner"], job=json.dumps(job))
    assert await status_of("member", "POST", "/secret/delete", team="alpha",
                           name="db-password") == 403  # fmt: skip
    # A team with secrets is not deleted (its jobs gone first).
    await ok(client, "POST", "/job/delete", ADMIN_TOKEN, name="uses-it")
    status, body = await call(client, "POST", "/team/delete", ADMIN_TOKEN, {"name": "alpha"})
    assert status == 409 and "'db-password'" in body["msg"], body


async def test_chaining_another_teams_job_is_chaining_a_job_that_does_not_exist(
    client,  # noqa: F811
) -> None:
    tokens = await teams_with_members(client)
    await ok(client, "POST", "/job/save", tokens["outsider"], job=team_job("beta-only", None))
    answers = []
    for parent in ("beta-only", "nothing"):
        job = {"name": f"after-{parent}", "command": "true", "cronExpr": "0 3 * * *",
               "team": "alpha", "parents": [parent]}  # fmt: skip
        status, body = await call(client, "POST", "/job/save", tokens["owner"],
                                  {"job": json.dumps(job)})  # fmt: skip
        answers.append((status, body["field"], body["msg"].replace(parent, "X")))
    assert answers[0] == answers[1] and answers[0][:2] == (400, "parents"), answers


async def test_jobs_saved_before_account_ids_get_their_owners_id(stack, etcd) -> None:
    """What every manager start does (bootstrap.adopt_owner_ids_until_done)."""
    store = JobStore(etcd, KeyLayout(stack.prefix), 10)
    records = {
        "alices": b'{"v":3,"name":"alices","command":"true","cronExpr":"@daily","owner":"alice"}',
        # Its owner's account is gone: a new account of the name must not inherit it.
        "ghosts": b'{"v":3,"name":"ghosts","command":"true","cronExpr":"@daily","owner":"ghost"}',
        "nobodys": b'{"v":1,"name":"nobodys","command":"true","cronExpr":"@daily"}',
        "adopted": b'{"v":9,"name":"adopted","command":"true","cronExpr":"@daily",'
        b'"owner":"alice","ownerId":"old-id"}',
    }
    for name, record in records.items():
        await etcd.put(f"{stack.prefix}jobs/{name}".encode(), record)
    assert sorted(await store.adopt_owner_ids({"alice": "alice-id"})) == ["alices", "ghosts"]
    views = {name: await store.view(name) for name in records}
    owners = {name: (view["owner"], view["ownerId"]) for name, view in views.items() if view}
    assert owners == {"alices": ("alice", "alice-id"), "ghosts": ("", ""),
                      "nobodys": ("", ""), "adopted": ("alice", "old-id")}  # fmt: skip
    assert await store.adopt_owner_ids({"alice": "alice-id"}) == []  # idempotent
