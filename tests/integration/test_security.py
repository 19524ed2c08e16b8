"""Accounts, roles, tokens, sessions, ownership, audit and hardened input, against a real
manager application on the session's etcd and mongod."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gdts.config import ManagerConfig
from gdts.manager.app import create_app
from gdts.manager.endpoints import ENDPOINTS
from gdts.manager.headers import SECURITY_HEADERS
from gdts.secretbox import new_key_entry
from tests.support import ADMIN_PASSWORD, ADMIN_TOKEN, ADMIN_USER, REPO_ROOT, Stack

pytestmark = pytest.mark.asyncio
Client = TestClient[web.Request, web.Application]
PASSWORD = "correct horse battery"


def config_for(stack: Stack, **overrides: Any) -> ManagerConfig:
    values: dict[str, Any] = {
        "etcd_endpoints": (stack.etcd_endpoint,),
        "etcd_prefix": stack.prefix,
        "mongodb_uri": stack.mongo_uri,
        "mongodb_database": stack.database,
        "webroot": str(REPO_ROOT / "webroot"),
        "admin_password": ADMIN_PASSWORD,
        "admin_token": ADMIN_TOKEN,
        "secret_keys": (new_key_entry("k1"),),
        **overrides,
    }
    return ManagerConfig(**values)


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(config_for(stack)))) as test_client:
        yield test_client


async def call(
    client: Client,
    method: str,
    path: str,
    token: str | None = ADMIN_TOKEN,
    data: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if method == "GET":
        response = await client.get(path, params=data, headers=headers, **kwargs)
    else:
        response = await client.post(path, data=data, headers=headers, **kwargs)
    return response.status, await response.json()


async def ok(client: Client, method: str, path: str, token: str = ADMIN_TOKEN, **data: str) -> Any:
    status, body = await call(client, method, path, token, data)
    assert (status, body["errno"]) == (200, 0), (path, status, body)
    return body["data"]


async def login(client: Client, username: str, password: str) -> dict[str, Any]:
    """A console login; the test client's jar keeps the session cookie."""
    form = {"username": username, "password": password}
    status, body = await call(client, "POST", "/auth/login", None, form)
    assert status == 200, body
    return body["data"]


async def account_with_token(client: Client, username: str, role: str) -> str:
    """An account made by the admin, and an API token the account makes for itself."""
    await ok(client, "POST", "/user/save", username=username, role=role, password=PASSWORD)
    session = await login(client, username, PASSWORD)
    status, body = await call(
        client, "POST", "/token/create", None, {"name": "tests"},
        headers={"X-CSRF-Token": session["csrfToken"]},
    )  # fmt: skip
    client.session.cookie_jar.clear()
    assert status == 200, body
    return body["data"]["token"]


def job(name: str, command: str = "echo hi") -> str:
    return json.dumps({"name": name, "command": command, "cronExpr": "0 3 * * *"})


# -- role x endpoint -------------------------------------------------------------------------

GUEST_MAY = {
    "/job/list", "/job/log", "/job/output", "/worker/list", "/cron/preview", "/auth/login",
    "/auth/logout", "/auth/me", "/auth/password", "/token/list", "/token/create",
    "/token/revoke", "/notify/channels", "/notify/types", "/job/output/stream", "/job/running",
    "/dashboard/summary", "/team/list",
}  # fmt: skip
USER_MAY = GUEST_MAY | {
    "/job/save", "/job/delete", "/job/kill", "/job/run", "/job/enable", "/job/disable",
    "/job/clone", "/secret/list", "/secret/save", "/secret/delete",
}  # fmt: skip
ALLOWED = {"guest": GUEST_MAY, "user": USER_MAY, "admin": {e.path for e in ENDPOINTS}}


def params_for(path: str, who: str, revoke_id: str) -> dict[str, str]:
    own = f"{who}-own"  # a job the caller owns (for the guest: one the admin owns)
    return {
        "/job/save": {"job": job(f"{who}-saved")},
        "/job/delete": {"name": own},
        "/job/kill": {"name": own},
        "/job/run": {"name": own},
        "/job/enable": {"name": own},
        "/job/disable": {"name": own},
        "/job/clone": {"name": own, "newName": f"{who}-clone"},
        "/job/log": {"name": own},
        "/job/output": {"name": own, "planTime": "1"},  # no such run: allowed, then 404
        "/job/output/stream": {"name": own, "planTime": "1"},  # the same
        "/job/running": {"name": own},
        "/cron/preview": {"cronExpr": "0 3 * * *"},
        "/auth/login": {"username": who, "password": PASSWORD},
        "/auth/password": {"currentPassword": PASSWORD, "newPassword": PASSWORD},
        "/user/save": {"username": f"made-by-{who}", "role": "guest", "password": PASSWORD},
        "/user/delete": {"username": f"victim-of-{who}"},
        "/token/create": {"name": "another"},
        "/token/revoke": {"id": revoke_id},
        "/notify/channel/save": {"channel": json.dumps(_channel(f"{who}-ch"))},
        "/notify/channel/delete": {"name": f"{who}-ch"},
        "/notify/channel/test": {"name": "probe"},  # a closed port: answered, not delivered
        "/notify/rules/save": {"rules": "[]"},
        "/team/save": {"name": f"{who}-team"},
        "/team/delete": {"name": f"{who}-team"},
        "/team/member/save": {"team": f"{who}-team", "username": who, "role": "user"},
        "/team/member/delete": {"team": f"{who}-team", "username": who},
        # The default team's: every account joins it, and "user" is made its maintainer.
        "/secret/list": {"team": "default"},
        "/secret/save": {"team": "default", "name": f"{who}-s", "value": "v"},
        "/secret/delete": {"team": "default", "name": f"{who}-s"},  # after /secret/save
    }.get(path, {})


def _channel(name: str) -> dict[str, object]:
    return {"name": name, "type": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}


async def test_each_role_may_call_exactly_its_endpoints(client) -> None:
    assert {e.path for e in ENDPOINTS} == ALLOWED["admin"]  # a new endpoint needs a row here
    tokens = {role: await account_with_token(client, role, role) for role in ("guest", "user")}
    tokens["admin"] = await account_with_token(client, "admin2", "admin")
    who_of = {"guest": "guest", "user": "user", "admin": "admin2"}
    # A team maintainer may write the team's secrets (see test_teams for the team dimension).
    await ok(client, "POST", "/team/member/save", team="default", username="user",
             role="maintainer")  # fmt: skip
    await ok(client, "POST", "/notify/channel/save", channel=json.dumps(_channel("probe")))
    for role, token in tokens.items():
        who = who_of[role]
        owner_token = ADMIN_TOKEN if role == "guest" else token
        await ok(client, "POST", "/job/save", owner_token, job=job(f"{who}-own"))
        await ok(client, "POST", "/user/save", username=f"victim-of-{who}", role="guest",
                 password=PASSWORD)  # fmt: skip
        spare = await ok(client, "POST", "/token/create", token, name="to revoke")
        # Deleting comes last: the other calls need the job (and the team its member).
        last = ("/team/member/delete", "/team/delete", "/job/delete")
        ordered = sorted(ENDPOINTS, key=lambda e: last.index(e.path) if e.path in last else -1)
        for endpoint in ordered:
            data = params_for(endpoint.path, who, spare["id"])
            status, body = await call(client, endpoint.method, endpoint.path, token, data)
            client.session.cookie_jar.clear()
            no_such_run = endpoint.path in ("/job/output", "/job/output/stream")
            allowed = 404 if no_such_run else 200
            expected = allowed if endpoint.path in ALLOWED[role] else 403
            assert status == expected, (role, endpoint.path, status, body)
            if expected == 403:
                assert f"role {role!r} may not call" in body["msg"]


async def test_no_credentials_gets_401_everywhere_but_login_health_and_static(client) -> None:
    for endpoint in ENDPOINTS:
        if endpoint.path == "/auth/login":
            continue
        status, body = await call(client, endpoint.method, endpoint.path, token=None)
        assert status == 401, (endpoint.path, body)
        assert "authentication required" in body["msg"]
    for path in ("/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 401
    for path in ("/health/alive", "/login.html", "/js/login.js"):
        assert (await client.get(path)).status == 200, path
    status, body = await call(client, "GET", "/job/list", token="gdts_made-up")
    assert (status, body["msg"]) == (401, "the API token is unknown or revoked")
    status, body = await call(client, "GET", "/job/list", headers={"Authorization": "Basic x"},
                              token=None)  # fmt: skip
    assert status == 401 and "Bearer" in body["msg"]


# -- ownership -------------------------------------------------------------------------------


async def test_a_user_changes_only_their_own_jobs_and_the_list_shows_owners(client) -> None:
    alice = await account_with_token(client, "alice", "user")
    bob = await account_with_token(client, "bob", "user")
    await ok(client, "POST", "/job/save", alice, job=job("alices"))
    await ok(client, "POST", "/job/save", bob, job=job("bobs"))
    await ok(client, "POST", "/job/save", ADMIN_TOKEN, job=job("admins"))
    listed = {j["name"]: j["owner"] for j in await ok(client, "GET", "/job/list", bob)}
    assert listed == {"alices": "alice", "bobs": "bob", "admins": ADMIN_USER}
    for path, data in (
        ("/job/save", {"job": job("alices", "rm -rf /")}),
        ("/job/delete", {"name": "alices"}),
        ("/job/kill", {"name": "alices"}),
        ("/job/run", {"name": "alices"}),
        ("/job/disable", {"name": "alices"}),
        ("/job/enable", {"name": "alices"}),
    ):
        status, body = await call(client, "POST", path, bob, data)
        assert status == 403, (path, body)
        assert body["msg"] == (
            "job 'alices' belongs to 'alice'; as a user of team 'default' you change only your "
            "own jobs (its maintainers change any)"
        )
    # Nothing changed, and a job saved back by its owner or an admin keeps its owner.
    (alices,) = [j for j in await ok(client, "GET", "/job/list", alice) if j["name"] == "alices"]
    assert alices["command"] == "echo hi" and alices["enabled"] is True
    await ok(client, "POST", "/job/save", ADMIN_TOKEN, job=job("alices", "echo by admin"))
    await ok(client, "POST", "/job/disable", alice, name="alices")
    (alices,) = [j for j in await ok(client, "GET", "/job/list", alice) if j["name"] == "alices"]
    assert (alices["owner"], alices["command"], alices["enabled"]) == (
        "alice",
        "echo by admin",
        False,
    )
    # A user may copy anyone's job; the copy is theirs. A job that does not exist is a 404.
    copy = await ok(client, "POST", "/job/clone", bob, name="alices", newName="bobs-copy")
    assert copy["owner"] == "bob"
    status, _ = await call(client, "POST", "/job/kill", bob, {"name": "nobody-has-this"})
    assert status == 404
    # A request cannot claim another owner.
    forged = json.dumps({"name": "forged", "command": "id", "cronExpr": "@daily", "owner": "alice"})
    await ok(client, "POST", "/job/save", bob, job=forged)
    (forged_job,) = [j for j in await ok(client, "GET", "/job/list") if j["name"] == "forged"]
    assert forged_job["owner"] == "bob"


# -- tokens ----------------------------------------------------------------------------------


async def test_a_revoked_token_stops_working_at_once(client) -> None:
    token = await account_with_token(client, "carol", "user")
    assert await ok(client, "GET", "/auth/me", token) == {
        "username": "carol", "role": "user", "csrfToken": None, "teams": {"default": "user"},
    }  # fmt: skip
    (listed,) = await ok(client, "GET", "/token/list", token)
    assert set(listed) == {"id", "name", "username", "createdAt"}  # never the secret
    await ok(client, "POST", "/token/revoke", token, id=listed["id"])
    status, body = await call(client, "GET", "/job/list", token)
    assert (status, body["msg"]) == (401, "the API token is unknown or revoked")


async def test_tokens_are_stored_hashed_and_a_user_cannot_revoke_anothers(client, stack) -> None:
    dave = await account_with_token(client, "dave", "user")
    erin = await account_with_token(client, "erin", "user")
    (erins,) = await ok(client, "GET", "/token/list", erin)
    status, body = await call(client, "POST", "/token/revoke", dave, {"id": erins["id"]})
    assert status == 403 and "belongs to another user" in body["msg"]
    everyone = await ok(client, "GET", "/token/list", ADMIN_TOKEN)
    assert {"dave", "erin", ADMIN_USER} <= {t["username"] for t in everyone}
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        stored = [d async for d in mongo[stack.database]["api_tokens"].find()]
        users = [d async for d in mongo[stack.database]["users"].find()]
    finally:
        await mongo.close()
    blob = repr(stored) + repr(users)
    assert dave not in blob and erin not in blob and ADMIN_TOKEN not in blob
    assert PASSWORD not in blob and ADMIN_PASSWORD not in blob
    assert all(u["passwordHash"].startswith("$argon2id$") for u in users)


async def test_deleting_an_account_ends_its_tokens_and_sessions(client) -> None:
    token = await account_with_token(client, "frank", "user")
    await ok(client, "POST", "/user/delete", username="frank")
    status, _ = await call(client, "GET", "/job/list", token)
    assert status == 401
    status, body = await call(client, "POST", "/user/delete", data={"username": ADMIN_USER})
    assert status == 409 and "your own account" in body["msg"]


# -- console sessions ------------------------------------------------------------------------


async def test_session_cookie_is_strict_and_changes_need_the_csrf_token(client) -> None:
    form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    response = await client.post("/auth/login", data=form)
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS adds it
    csrf = (await response.json())["data"]["csrfToken"]
    assert await ok_session(client, "GET", "/job/list") == 200
    status = await ok_session(client, "POST", "/job/save", {"job": job("by-cookie")})
    assert status == 403  # no CSRF token: a forged cross-site post fails
    bad = {"X-CSRF-Token": "not-it"}
    assert await ok_session(client, "POST", "/job/save", {"job": job("by-cookie")}, bad) == 403
    good = {"X-CSRF-Token": csrf}
    assert await ok_session(client, "POST", "/job/save", {"job": job("by-cookie")}, good) == 200
    form_token = {"name": "by-cookie", "csrfToken": csrf}  # the token as a form field works too
    assert await ok_session(client, "POST", "/job/disable", form_token) == 200
    assert await ok_session(client, "POST", "/auth/logout", {}, good) == 200
    assert await ok_session(client, "GET", "/job/list") == 401


async def ok_session(
    client: Client, method: str, path: str, data: Any = None, headers: Any = None
) -> int:
    status, _ = await call(client, method, path, None, data, headers=headers or {})
    return status


async def test_failed_logins_are_slowed_per_user_and_address(client) -> None:
    await ok(client, "POST", "/user/save", username="grace", role="user", password=PASSWORD)
    await ok(client, "POST", "/user/save", username="heidi", role="user", password=PASSWORD)
    for _ in range(5):
        status, body = await call(client, "POST", "/auth/login", None,
                                  {"username": "grace", "password": "wrong guess!"})  # fmt: skip
        assert (status, body["msg"]) == (401, "wrong username or password")
    # Locked now, even with the right password, and the answer says for how long.
    response = await client.post("/auth/login", data={"username": "grace", "password": PASSWORD})
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "too many failed logins" in (await response.json())["msg"]
    # Another user from the same address is not locked out by grace's failures.
    assert (await login(client, "heidi", PASSWORD))["username"] == "heidi"
    # An unknown user fails the same way as a wrong password: names are not revealed.
    status, body = await call(client, "POST", "/auth/login", None,
                              {"username": "nosuchuser", "password": "whatever!!"})  # fmt: skip
    assert (status, body["msg"]) == (401, "wrong username or password")


# -- audit -----------------------------------------------------------------------------------


async def test_every_change_is_audited_with_who_when_where_and_the_job(client) -> None:
    ivan = await account_with_token(client, "ivan", "user")
    await ok(client, "POST", "/job/save", ivan, job=job("audited"))
    await ok(client, "POST", "/job/save", ivan, job=job("audited", "echo two"))
    await ok(client, "POST", "/job/disable", ivan, name="audited")
    await ok(client, "POST", "/job/enable", ivan, name="audited")
    await ok(client, "POST", "/job/run", ivan, name="audited")
    await ok(client, "POST", "/job/kill", ivan, name="audited")
    await ok(client, "POST", "/job/clone", ivan, name="audited", newName="audited2")
    await ok(client, "POST", "/job/delete", ivan, name="audited")
    entries = await ok(client, "GET", "/audit", job="audited")
    assert [e["action"] for e in entries] == [
        "job.delete", "job.kill", "job.run", "job.enable", "job.disable", "job.save", "job.save",
    ]  # fmt: skip
    assert {(e["user"], e["role"], e["source"]) for e in entries} == {("ivan", "user", "127.0.0.1")}
    assert entries == sorted(entries, key=lambda e: -e["at"])
    first_save, second_save = entries[-1], entries[-2]
    assert "before" not in first_save and first_save["after"]["command"] == "echo hi"
    assert second_save["before"]["command"] == "echo hi"
    assert second_save["after"]["command"] == "echo two"
    assert entries[0]["before"]["command"] == "echo two"  # the deleted job
    (clone,) = await ok(client, "GET", "/audit", job="audited2")
    assert clone["action"] == "job.clone" and clone["detail"] == {"from": "audited"}
    # Account, token and login events too; filters and paging.
    actions = {e["action"] for e in await ok(client, "GET", "/audit", user="ivan", limit="100")}
    assert {"auth.login", "token.create", "job.save"} <= actions
    assert "user.save" in {e["action"] for e in await ok(client, "GET", "/audit", user=ADMIN_USER)}
    page = await ok(client, "GET", "/audit", user="ivan", skip="1", limit="2")
    everything = await ok(client, "GET", "/audit", user="ivan", limit="100")
    assert page == everything[1:3]
    newest = everything[0]["at"]
    assert await ok(client, "GET", "/audit", user="ivan", since=str(newest + 1)) == []
    assert len(await ok(client, "GET", "/audit", user="ivan", until=str(newest + 1))) == len(
        everything
    )
    status, _ = await call(client, "GET", "/audit", ivan)
    assert status == 403
    await call(client, "POST", "/auth/login", None, {"username": "ivan", "password": "nope nope!"})
    (failed,) = await ok(client, "GET", "/audit", action="auth.login_failed", user="ivan")
    assert failed["source"] == "127.0.0.1"


async def test_audit_names_the_client_behind_a_trusted_proxy_only(stack) -> None:
    config = config_for(stack, trusted_proxies=("127.0.0.1",))
    async with TestClient(TestServer(create_app(config))) as proxied:
        headers = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}
        await call(proxied, "POST", "/job/save", data={"job": job("via-proxy")}, headers=headers)
        (entry,) = await ok(proxied, "GET", "/audit", job="via-proxy")
        assert entry["source"] == "10.1.2.3"  # the nearest hop the trusted proxy saw
    async with TestClient(TestServer(create_app(config_for(stack)))) as direct:
        await call(direct, "POST", "/job/delete", data={"name": "via-proxy"}, headers=headers)
        (entry,) = await ok(direct, "GET", "/audit", job="via-proxy", action="job.delete")
        assert entry["source"] == "127.0.0.1"  # an untrusted peer cannot claim an address


# -- first start, auth off -------------------------------------------------------------------


async def test_first_start_prints_a_generated_admin_password_once(stack, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gdts.manager.bootstrap")
    config = config_for(stack, admin_password="", admin_token="")
    async with TestClient(TestServer(create_app(config))) as first:
        (line,) = [
            r.getMessage() for r in caplog.records if "created the first account" in r.getMessage()
        ]
        password = re.search(r"password '([^']+)'", line)
        assert password is not None
        assert (await login(first, ADMIN_USER, password.group(1)))["role"] == "admin"
    caplog.clear()
    async with TestClient(TestServer(create_app(config))):
        assert not [r for r in caplog.records if "created the first account" in r.getMessage()]


async def test_auth_can_be_switched_off_for_a_lab_with_a_warning(stack, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gdts.manager.app")
    async with TestClient(TestServer(create_app(config_for(stack, auth_enabled=False)))) as lab:
        assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)
        status, body = await call(lab, "POST", "/job/save", None, {"job": job("lab")})
        assert status == 200, body
        (entry,) = await ok(lab, "GET", "/audit", job="lab")
        assert entry["user"] == "anonymous"


# -- hardened input and headers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data", "field"),
    [
        ("POST", "/job/delete", {"name": "x", "nmae": "x"}, "nmae"),
        ("GET", "/job/list", {"limt": "5"}, "limt"),
        ("POST", "/job/save", {"job": job("x"), "force": "1"}, "force"),
        ("POST", "/user/save", {"username": "x", "role": "root", "password": PASSWORD}, "role"),
        ("POST", "/user/save", {"username": "x", "role": "user", "password": "short"}, "password"),
        ("POST", "/user/save", {"username": "../x", "role": "user", "password": PASSWORD},
         "username"),
        ("POST", "/job/save", {"job": job("..")}, "name"),
        ("POST", "/job/save", {"job": job("../etc")}, "name"),
        ("POST", "/job/save", {"job": job("a\x00b")}, "name"),
        ("POST", "/job/clone", {"name": "x", "newName": "a/b"}, "newName"),
        ("GET", "/audit", {"since": "yesterday"}, "since"),
    ],
)  # fmt: skip
async def test_unknown_and_bad_fields_get_400_naming_the_field(
    client, method, path, data, field
) -> None:
    status, body = await call(client, method, path, data=data)
    assert status == 400, body
    assert body["field"] == field and body["msg"].startswith(field)


async def test_every_answer_carries_the_security_headers(client) -> None:
    for path in ("/login.html", "/job/list", "/health/alive", "/no/such/page"):
        response = await client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    response = await client.get("/job/list", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_console_pages_hold_no_inline_script() -> None:
    for page in (REPO_ROOT / "webroot").glob("*.html"):
        text = re.sub(r"<!--.*?-->", "", page.read_text(), flags=re.S)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page
        assert not re.search(r"\son[a-z]+\s*=", text), page


async def test_openapi_describes_every_route_the_manager_serves(client) -> None:
    response = await client.get("/openapi.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    spec = await response.json()
    described = {(m.upper(), p) for p, methods in spec["paths"].items() for m in methods}
    console = re.compile(r"^/($|js|css|vendor|[^/]+\.(html|svg)$)")
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
        and not console.match(route.resource.canonical)
    }  # fmt: skip
    assert served == described
    save = spec["paths"]["/job/save"]["post"]
    assert save["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"][
        "required"
    ] == ["job"]
    assert set(save["responses"]) >= {"200", "400", "401", "403", "409", "413", "503"}
