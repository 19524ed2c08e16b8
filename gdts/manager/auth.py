"""Who is calling, and may they: the middleware in front of every route.

A request proves who it is with ``Authorization: Bearer <token>`` (scripts, the .http files) or
the console's session cookie; a cookie-authenticated change must also carry the session's CSRF
token. The role each route needs comes from ``gdts.manager.endpoints``; the caller's teams are
read here too, and whether the caller may see or change a job is checked where the job is read
(``gdts.manager.jobguard``).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gdts.errors import ForbiddenError, UnauthorizedError
from gdts.manager.accounts import Accounts, Principal
from gdts.manager.audit import AuditTrail
from gdts.manager.credentials import Credentials
from gdts.manager.endpoints import CSRF_FIELD, CSRF_HEADER, PUBLIC, endpoint_of, role_allows
from gdts.manager.jobguard import JobGuard
from gdts.manager.teams import Teams
from gdts.manager.throttle import LoginThrottle

log = logging.getLogger(__name__)

SESSION_COOKIE = "gdts_session"
LOGIN_PAGE = "/login.html"
ANONYMOUS = Principal("anonymous", "admin", "off")
_SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
# Routes outside the endpoint table: probes are public; metrics and the API description are
# for any logged-in role; static files hold no data and load the login page.
_GUEST_ROUTES = frozenset(("/metrics", "/openapi.json"))
_CONSOLE_PAGES = frozenset(("/", "/index.html"))


@dataclass
class Security:
    """What the middleware and the auth handlers share, one per application."""

    enabled: bool
    accounts: Accounts
    teams: Teams
    credentials: Credentials
    throttle: LoginThrottle
    audit: AuditTrail
    session_ttl_s: int
    trusted_proxies: frozenset[str]
    secure_cookies: bool


SECURITY = web.AppKey("security", Security)
PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def guard_of(request: web.Request) -> JobGuard:
    """What the caller may do to a job (see JobGuard)."""
    return JobGuard(principal_of(request))


async def audit(request: web.Request, action: str, **what: Any) -> None:
    """Record a change the caller made, with who they are and where they called from (see
    gdts.manager.audit)."""
    principal, source = principal_of(request), source_of(request)
    await request.app[SECURITY].audit.record(
        action, user=principal.username, role=principal.role, source=source, **what
    )


def source_of(request: web.Request) -> str:
    """The client's address: the peer, or what a trusted proxy says the client was."""
    peer = request.remote or ""
    trusted = request.app[SECURITY].trusted_proxies
    if peer not in trusted:
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [hop for hop in hops if hop]
    # The nearest hop a trusted proxy did not add itself is the client.
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


def needed_role(method: str, path: str) -> str:
    endpoint = endpoint_of(method, path)
    if endpoint is not None:
        return endpoint.role
    return "guest" if path in _GUEST_ROUTES else PUBLIC


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    security = request.app[SECURITY]
    if not security.enabled:
        request[PRINCIPAL] = ANONYMOUS
        return await handler(request)
    needed = needed_role(request.method, request.path)
    if needed == PUBLIC:
        if request.path in _CONSOLE_PAGES and await _session_principal(request) is None:
            raise web.HTTPFound(LOGIN_PAGE)
        return await handler(request)
    principal = await _bearer_principal(request) or await _session_principal(request)
    if principal is None:
        raise UnauthorizedError(
            "authentication required: send 'Authorization: Bearer <token>' or log in at "
            + LOGIN_PAGE
        )
    if not role_allows(principal.role, needed):
        raise ForbiddenError(
            f"role {principal.role!r} may not call {request.method} {request.path} "
            f"(it needs {needed!r})"
        )
    if principal.via == "session" and request.method not in _SAFE_METHODS:
        await _check_csrf(request, principal)
    if not principal.is_admin:  # an admin sees every team
        teams = await security.teams.memberships(principal.account_id)
        principal = dataclasses.replace(principal, teams=teams)
    request[PRINCIPAL] = principal
    return await handler(request)


async def _bearer_principal(request: web.Request) -> Principal | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("Authorization: expected 'Bearer <token>'")
    security = request.app[SECURITY]
    username = await security.credentials.token_owner(token)
    if username is None:
        raise UnauthorizedError("the API token is unknown or revoked")
    account = await security.accounts.get(username)
    if account is None:
        raise UnauthorizedError(f"the token's account {username!r} no longer exists")
    return Principal(username, account["role"], "token", account_id=account.get("accountId", ""))


async def _session_principal(request: web.Request) -> Principal | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    security = request.app[SECURITY]
    session = await security.credentials.session(cookie)
    if session is None:
        return None
    account = await security.accounts.get(session["username"])
    if account is None:
        return None
    return Principal(
        account["_id"], account["role"], "session", session["_id"], session["csrf"],
        account_id=account.get("accountId", ""),
    )  # fmt: skip


async def _check_csrf(request: web.Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = principal.csrf_token or ""
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ForbiddenError(
            f"{CSRF_HEADER} header (or {CSRF_FIELD} field) missing or wrong: a change made "
            "with the session cookie must carry the session's CSRF token from /auth/me"
        )
