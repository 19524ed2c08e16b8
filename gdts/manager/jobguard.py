"""What a caller may do to a job. Pure: the caller's teams are read once per request (see
auth); the job is its stored API view.

- See it (its definition, runs, output, running runs): an admin, or a member of its team in
  any role. To anyone else a job of another team is exactly a job that does not exist: 404,
  with the same message.
- Change it: an admin; the team's maintainers; a team ``user`` only the jobs it owns (by
  account id: a name may be given again to a new account); a ``guest`` nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gdts.errors import ForbiddenError, InvalidFieldError, NotFoundError
from gdts.jobfields import DEFAULT_TEAM, team_of
from gdts.manager.accounts import Principal
from gdts.manager.endpoints import TEAM_ROLES

__all__ = ["TEAM_ROLES", "JobGuard", "no_such_job"]
_CHANGES = frozenset(("user", "maintainer"))


def no_such_job(name: str, field_name: str = "name") -> NotFoundError:
    """The one answer for a job that does not exist and for a job the caller may not see."""
    return NotFoundError(field_name, f"no job named {name!r}")


class JobGuard:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def username(self) -> str:
        return self.principal.username

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def teams(self) -> Mapping[str, str]:
        """The caller's teams and its role in each."""
        return self.principal.teams

    def visible_teams(self) -> frozenset[str] | None:
        """The teams whose jobs the caller sees; None: every team (an admin)."""
        return None if self.principal.is_admin else frozenset(self.principal.teams)

    def sees(self, team: str) -> bool:
        return self.principal.is_admin or team in self.principal.teams

    def check_visible(
        self, name: str, view: Mapping[str, Any] | None, field_name: str = "name"
    ) -> None:
        """404 unless the job exists and the caller sees it (an admin also reads the runs a
        deleted job left: ``view`` None)."""
        if self.principal.is_admin:
            return
        if view is None or not self.sees(team_of(view)):
            raise no_such_job(name, field_name)

    def shown_running(self, workers: list[dict[str, Any]], team_of_job: Mapping[str, str]) -> None:
        """Leave out of each worker's ``running`` the jobs of teams the caller does not see."""
        visible = self.visible_teams()
        if visible is None:
            return
        for worker in workers:
            worker["running"] = [n for n in worker["running"] if team_of_job.get(n) in visible]

    def check(self, name: str, view: Mapping[str, Any]) -> None:
        """That the caller may change the stored job ``view``."""
        if self.principal.is_admin:
            return
        team = team_of(view)
        role = self.principal.teams.get(team)
        if role is None:
            raise no_such_job(name)
        if role == "maintainer":
            return
        owner_id = view.get("ownerId") or ""
        if role == "user" and owner_id and owner_id == self.principal.account_id:
            return
        if role == "user":
            owner = view.get("owner") or ""
            whose = f"belongs to {owner!r}" if owner_id else "has no owner"
            raise ForbiddenError(
                f"job {name!r} {whose}; as a user of team {team!r} you change only your own "
                "jobs (its maintainers change any)"
            )
        raise ForbiddenError(f"you are a guest of team {team!r}: you may read its jobs only")

    def check_missing(self, name: str) -> None:
        """A job that does not exist: only an admin may act on its name (e.g. kill a run that
        outlived its job)."""
        if not self.principal.is_admin:
            raise no_such_job(name)

    def team_for_new(self, given: str | None) -> str:
        """The team of a job the caller creates: the one it gave, else its only team (an
        admin's: the default team)."""
        if given is not None:
            return given
        if self.principal.is_admin:
            return DEFAULT_TEAM
        changing = sorted(t for t, role in self.principal.teams.items() if role in _CHANGES)
        if len(changing) == 1:
            return changing[0]
        if not changing:
            raise ForbiddenError("you are in no team where you may create jobs")
        raise InvalidFieldError(
            "team", f"is required: you may create jobs in several teams ({', '.join(changing)})"
        )

    def check_create(self, team: str) -> None:
        """That the caller may put a job into ``team`` (create one, or move one there)."""
        if self.principal.is_admin:
            return
        role = self.principal.teams.get(team)
        if role is None:
            raise InvalidFieldError("team", f"you are not a member of team {team!r}")
        if role not in _CHANGES:
            raise ForbiddenError(f"you are a guest of team {team!r}: you may read its jobs only")
