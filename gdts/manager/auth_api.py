"""The API's own security endpoints: login and sessions, accounts, API tokens, the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gdts.errors import (
    ConflictError,
    InvalidFieldError,
    NotFoundError,
    TooManyAttemptsError,
    UnauthorizedError,
)
from gdts.jobfields import DEFAULT_TEAM, validate_name
from gdts.manager.accounts import (
    public_view,
    validate_password,
    validate_role,
    validate_username,
)
from gdts.manager.api import JOB_STORE, ok
from gdts.manager.audit import AuditQuery
from gdts.manager.auth import SECURITY, SESSION_COOKIE, audit, principal_of, source_of
from gdts.manager.endpoints import AUDIT_ACTIONS, MAX_EPOCH_MS, MAX_LOG_LIMIT, MAX_NAME, MAX_SKIP
from gdts.manager.params import bool_param, int_param, read_params
from gdts.manager.teams import default_team_role


def _text(params: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = params.get(field)
    if value is None or value == "":
        if required:
            raise InvalidFieldError(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidFieldError(field, "must be a string")
    return value


def _choice(params: dict[str, Any], field: str, choices: tuple[str, ...]) -> str | None:
    value = _text(params, field, required=False)
    if value is not None and value not in choices:
        raise InvalidFieldError(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _session_view(principal: Any, csrf: str | None) -> dict[str, Any]:
    # An admin's teams are not listed: an admin sees every team.
    return {"username": principal.username, "role": principal.role, "csrfToken": csrf,
            "teams": dict(principal.teams)}  # fmt: skip


async def login(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    username = validate_username(_text(params, "username"))
    password = _text(params, "password") or ""
    security = request.app[SECURITY]
    source = source_of(request)
    now = datetime.now(UTC)
    wait_s = await security.throttle.wait_s(username, source, now)
    if wait_s:
        raise TooManyAttemptsError(wait_s)
    account = await security.accounts.check_password(username, password)
    what = {"user": username, "source": source}
    if account is None:
        await security.throttle.failed(username, source, now)
        await security.audit.record("auth.login_failed", role="", **what)
        raise UnauthorizedError("wrong username or password")
    await security.throttle.succeeded(username, source)
    session_id, csrf = await security.credentials.open_session(username, security.session_ttl_s)
    await security.audit.record("auth.login", role=account["role"], **what)
    response = ok({"username": username, "role": account["role"], "csrfToken": csrf})
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=security.session_ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=security.secure_cookies or request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    await read_params(request)
    principal = principal_of(request)
    if principal.session_hash is not None:
        await request.app[SECURITY].credentials.close_session(principal.session_hash)
        await audit(request, "auth.logout")
    response = ok(None)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    await read_params(request)
    principal = principal_of(request)
    return ok(_session_view(principal, principal.csrf_token))


async def change_password(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    principal = principal_of(request)
    current = _text(params, "currentPassword") or ""
    new = validate_password(_text(params, "newPassword"), "newPassword")
    security = request.app[SECURITY]
    if await security.accounts.check_password(principal.username, current) is None:
        raise InvalidFieldError("currentPassword", "is wrong")
    await security.accounts.set_password(principal.username, new)
    # Whoever else was logged in as this user (a stolen session, a forgotten browser) is out;
    # API tokens stay: they are revoked one by one (/token/revoke).
    ended = await security.credentials.end_sessions(principal.username, principal.session_hash)
    await audit(
        request,
        "user.password",
        detail={"username": principal.username, "otherSessionsEnded": ended},
    )
    return ok({"otherSessionsEnded": ended})


async def list_users(request: web.Request) -> web.Response:
    await read_params(request)
    return ok(await request.app[SECURITY].accounts.all())


async def save_user(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    username = validate_username(_text(params, "username"))
    role = validate_role(_text(params, "role"))
    password = _text(params, "password", required=False)
    if password is not None:
        validate_password(password)
    if username == principal_of(request).username and role != "admin":
        raise ConflictError("role", "an admin cannot take away their own admin role")
    security = request.app[SECURITY]
    before = await security.accounts.save(username, role, password)
    if before is None:  # a new account joins the default team (see gdts.manager.teams)
        created = await security.accounts.get(username)
        if created is not None:
            await security.teams.set_member(
                DEFAULT_TEAM, created["accountId"], default_team_role(role)
            )
    after = {"username": username, "role": role}
    detail = {"username": username, "passwordChanged": password is not None}
    await audit(
        request,
        "user.save",
        before=None if before is None else public_view(before),
        after=after,
        detail=detail,
    )
    return ok(None if before is None else public_view(before))


async def delete_user(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    username = validate_username(_text(params, "username"))
    if username == principal_of(request).username:
        raise ConflictError("username", "you cannot delete your own account")
    security = request.app[SECURITY]
    account = await security.accounts.get(username)
    if account is None:
        raise NotFoundError("username", f"no account named {username!r}")
    handed = await _hand_over_jobs(request, params, account)
    before = await security.accounts.delete(username)
    await security.credentials.forget_user(username)
    await security.teams.forget_account(account.get("accountId", ""))
    detail = {"username": username, "jobsHandedOver": handed}
    await audit(request, "user.delete", before=public_view(before), detail=detail)
    return ok({**public_view(before), "jobsHandedOver": handed})


async def _hand_over_jobs(
    request: web.Request, params: dict[str, Any], account: dict[str, Any]
) -> list[str]:
    """The jobs of an account about to go, to ``newOwner`` or (``toTeam``) to nobody: a new
    account given the name later must not find them its own."""
    store = request.app[JOB_STORE]
    account_id = account.get("accountId", "")
    new_owner = _text(params, "newOwner", required=False)
    to_team = bool_param(params, "toTeam")
    if new_owner is not None and to_team:
        raise InvalidFieldError("toTeam", "give newOwner or toTeam, not both")
    if new_owner is None and not to_team:
        owned = await store.owned_by(account_id)
        if owned:
            shown = ", ".join(repr(name) for name in owned[:10])
            raise ConflictError("newOwner", f"{account['_id']!r} owns {len(owned)} job(s) "
                                f"({shown}{', ...' if len(owned) > 10 else ''}): give newOwner "
                                "(an account) or toTeam=true (ownerless, kept by their teams' "
                                "maintainers)")  # fmt: skip
        return []
    if new_owner is None:
        return await store.hand_over(account_id, "", "")
    heir = await request.app[SECURITY].accounts.get(validate_username(new_owner, "newOwner"))
    if heir is None or new_owner == account["_id"]:
        raise InvalidFieldError("newOwner", f"no other account named {new_owner!r}")
    return await store.hand_over(account_id, new_owner, heir["accountId"])


async def list_tokens(request: web.Request) -> web.Response:
    await read_params(request)
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.username
    return ok(await request.app[SECURITY].credentials.tokens(owner))


async def create_token(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    name = _text(params, "name") or ""
    if len(name) > MAX_NAME:
        raise InvalidFieldError("name", f"must be at most {MAX_NAME} characters")
    principal = principal_of(request)
    token, view = await request.app[SECURITY].credentials.create_token(principal.username, name)
    await audit(request, "token.create", detail=view)
    return ok({**view, "token": token})


async def revoke_token(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    token_id = _text(params, "id") or ""
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.username
    view = await request.app[SECURITY].credentials.revoke_token(token_id, owner)
    await audit(request, "token.revoke", detail=view)
    return ok(view)


async def audit_log(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    since = int_param(params, "since", -1, 0, MAX_EPOCH_MS)
    until = int_param(params, "until", -1, 0, MAX_EPOCH_MS)
    user, job = _text(params, "user", required=False), _text(params, "job", required=False)
    query = AuditQuery(
        user=None if user is None else validate_username(user, "user"),
        job=None if job is None else validate_name(job, "job"),
        action=_choice(params, "action", AUDIT_ACTIONS),
        since_ms=None if since < 0 else since,
        until_ms=None if until < 0 else until,
        skip=int_param(params, "skip", 0, 0, MAX_SKIP),
        limit=int_param(params, "limit", 50, 1, MAX_LOG_LIMIT),
    )
    return ok(await request.app[SECURITY].audit.find(query))


def add_auth_routes(app: web.Application) -> None:
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/logout", logout)
    app.router.add_get("/auth/me", me)
    app.router.add_post("/auth/password", change_password)
    app.router.add_get("/user/list", list_users)
    app.router.add_post("/user/save", save_user)
    app.router.add_post("/user/delete", delete_user)
    app.router.add_get("/token/list", list_tokens)
    app.router.add_post("/token/create", create_token)
    app.router.add_post("/token/revoke", revoke_token)
    app.router.add_get("/audit", audit_log)
