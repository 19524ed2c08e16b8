"""Teams: admins make them and put accounts in them with a role each; anyone lists the teams
they are in (see gdts.manager.teams and jobguard)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gdts.errors import ConflictError, InvalidFieldError, NotFoundError
from gdts.jobfields import DEFAULT_TEAM, validate_name
from gdts.manager.accounts import validate_username
from gdts.manager.api import JOB_LISTING, ok
from gdts.manager.auth import SECURITY, audit, principal_of
from gdts.manager.params import read_params
from gdts.manager.secrets_api import SECRET_STORE
from gdts.manager.teams import team_view, validate_team_role


def _team_name(params: dict[str, Any], field_name: str = "name") -> str:
    if params.get(field_name) in (None, ""):
        raise InvalidFieldError(field_name, "is required")
    return validate_name(params[field_name], field_name)


async def _account_id(request: web.Request, username: str) -> str:
    account = await request.app[SECURITY].accounts.get(username)
    if account is None:
        raise NotFoundError("username", f"no account named {username!r}")
    return str(account["accountId"])


async def list_teams(request: web.Request) -> web.Response:
    """Admins: every team with its members; anyone else: the teams they are in."""
    await read_params(request)
    principal = principal_of(request)
    security = request.app[SECURITY]
    names = None if principal.is_admin else sorted(principal.teams)
    documents = await security.teams.all(names)
    ids = sorted({m["id"] for d in documents for m in d["members"]})
    usernames = await security.accounts.by_ids(ids)
    views = [team_view(d, usernames) for d in documents]
    if not principal.is_admin:
        for view in views:
            view["role"] = principal.teams.get(view["name"])
    return ok(views)


async def save_team(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    name = _team_name(params)
    await request.app[SECURITY].teams.create(name)
    await audit(request, "team.save", detail={"team": name})
    return ok({"name": name, "members": []})


async def delete_team(request: web.Request) -> web.Response:
    """A team that still has jobs or secrets stays (409 naming some): they would belong to
    nobody."""
    params = dict(await read_params(request))
    name = _team_name(params)
    if name == DEFAULT_TEAM:
        raise ConflictError("name", "the default team holds the jobs saved without a team; "
                            "it cannot be deleted")  # fmt: skip
    teams = await request.app[JOB_LISTING].teams_of()
    jobs = sorted(job for job, team in teams.items() if team == name)
    if jobs:
        shown = ", ".join(repr(job) for job in jobs[:10])
        raise ConflictError(
            "name",
            f"team {name!r} still has {len(jobs)} job(s) ({shown}"
            f"{', ...' if len(jobs) > 10 else ''}): move or delete them first",
        )
    secrets = await request.app[SECRET_STORE].list(name)
    if secrets:
        shown = ", ".join(repr(secret["name"]) for secret in secrets[:10])
        raise ConflictError("name", f"team {name!r} still has {len(secrets)} secret(s) "
                            f"({shown}): delete them first")  # fmt: skip
    await request.app[SECURITY].teams.delete(name)
    await audit(request, "team.delete", detail={"team": name})
    return ok(None)


async def save_member(request: web.Request) -> web.Response:
    """Put an account into a team with a role, or change its role there."""
    params = dict(await read_params(request))
    team = _team_name(params, "team")
    username = validate_username(params.get("username"))
    role = validate_team_role(params.get("role"))
    account_id = await _account_id(request, username)
    before = await request.app[SECURITY].teams.set_member(team, account_id, role)
    await audit(
        request,
        "team.member.save",
        detail={"team": team, "username": username, "role": role, "before": before},
    )
    return ok({"team": team, "username": username, "role": role, "before": before})


async def delete_member(request: web.Request) -> web.Response:
    params = dict(await read_params(request))
    team = _team_name(params, "team")
    username = validate_username(params.get("username"))
    account_id = await _account_id(request, username)
    await request.app[SECURITY].teams.remove_member(team, account_id)
    await audit(request, "team.member.delete", detail={"team": team, "username": username})
    return ok(None)


def add_team_routes(app: web.Application) -> None:
    app.router.add_get("/team/list", list_teams)
    app.router.add_post("/team/save", save_team)
    app.router.add_post("/team/delete", delete_team)
    app.router.add_post("/team/member/save", save_member)
    app.router.add_post("/team/member/delete", delete_member)
