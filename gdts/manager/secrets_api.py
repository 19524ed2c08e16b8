"""The teams' secrets: listed by name, saved, deleted, re-sealed with the current key. No
answer, page, log line or audit entry carries a value (see gdts.manager.secretstore).

Who may touch a team's secrets is decided here: its members list their names, its maintainers
(and admins) write them; the endpoint table asks for an account of role ``user`` besides (a
``guest`` account reads jobs only, whatever its team role)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gdts.clock import now_ms
from gdts.errors import ForbiddenError, InvalidFieldError
from gdts.jobfields import DEFAULT_TEAM
from gdts.manager.accounts import Principal
from gdts.manager.api import ok
from gdts.manager.auth import SECURITY, audit, principal_of
from gdts.manager.params import read_params
from gdts.manager.secretstore import SecretStore
from gdts.names import validate_name
from gdts.secretbox import validate_secret_name, validate_secret_value

SECRET_STORE = web.AppKey("secret_store", SecretStore)


def may_write_secrets(principal: Principal, team: str) -> bool:
    """Whether ``principal`` may save or delete the secrets of ``team``."""
    return principal.is_admin or principal.teams.get(team) == "maintainer"


def may_list_secrets(principal: Principal, team: str) -> bool:
    """Whether ``principal`` may list the names of the secrets of ``team`` (to name them in
    its jobs)."""
    return principal.is_admin or team in principal.teams


async def _team(request: web.Request, params: Mapping[str, Any], writing: bool = True) -> str:
    team = validate_name(params.get("team") or DEFAULT_TEAM, "team")
    allowed = may_write_secrets if writing else may_list_secrets
    if not allowed(principal_of(request), team):
        need = "a maintainer of" if writing else "a member of"
        raise ForbiddenError(f"only {need} team {team!r} (or an admin) may do that to its "
                             "secrets")  # fmt: skip
    await request.app[SECURITY].teams.require(team)
    return team


async def list_secrets(request: web.Request) -> web.Response:
    params = await read_params(request)
    team = await _team(request, params, writing=False)
    return ok({"team": team, "secrets": await request.app[SECRET_STORE].list(team)})


async def save_secret(request: web.Request) -> web.Response:
    params = await read_params(request)
    team = await _team(request, params)
    name = validate_secret_name(params.get("name"))
    if "value" in request.query:
        # A URL is written to proxies' access logs and browser histories; a body is not.
        raise InvalidFieldError("value", "must be sent in the request body, not in the URL")
    if "value" not in params:
        raise InvalidFieldError("value", "is required")
    value = validate_secret_value(params["value"])
    by = principal_of(request).username
    replaced = await request.app[SECRET_STORE].save(team, name, value, by, now_ms())
    detail = {"team": team, "name": name, "replaced": replaced}
    await audit(request, "secret.save", detail=detail)
    return ok(detail)


async def delete_secret(request: web.Request) -> web.Response:
    params = await read_params(request)
    team = await _team(request, params)
    name = validate_secret_name(params.get("name"))
    await request.app[SECRET_STORE].delete(team, name)
    detail = {"team": team, "name": name}
    await audit(request, "secret.delete", detail=detail)
    return ok(detail)


async def rekey_secrets(request: web.Request) -> web.Response:
    """Seal every secret of every team with the manager's current key (the first of its
    secretKeys): the step between adding a new key and removing the old one."""
    await read_params(request)
    if not principal_of(request).is_admin:  # every team's at once: an admin's alone
        raise ForbiddenError("only an admin may re-seal the secrets")
    result = (await request.app[SECRET_STORE].rekey()).to_api()
    await audit(request, "secret.rekey", detail={"resealed": len(result["resealed"]),
                "alreadyCurrent": result["alreadyCurrent"],
                "failed": len(result["failed"])})  # fmt: skip
    return ok(result)


async def check_secret_refs(store: SecretStore, team: str, refs: list[tuple[str, str]]) -> None:
    """Refuse a job naming a secret its team does not have, naming the field
    (``secretEnv.PGPASSWORD``)."""
    if not refs:
        return
    missing = await store.missing(team, {secret for _, secret in refs})
    for field_name, secret in refs:
        if secret in missing:
            raise InvalidFieldError(field_name, f"no secret {secret!r} in team {team!r}")


def add_secret_routes(app: web.Application) -> None:
    app.router.add_get("/secret/list", list_secrets)
    app.router.add_post("/secret/save", save_secret)
    app.router.add_post("/secret/delete", delete_secret)
    app.router.add_post("/secret/rekey", rekey_secrets)
