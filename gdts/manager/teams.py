"""Teams in MongoDB: a name and its members, each an account id with a role (see jobguard).

A job belongs to one team. Jobs saved before teams existed belong to the ``default`` team,
which the first manager that starts with teams creates with every account in it (a ``guest``
account as a guest, any other as a user), and which every new account joins unless it is
given its teams: nothing changes for anybody until an admin makes teams and moves people.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from gdts.errors import ConflictError, InvalidFieldError, NotFoundError
from gdts.jobfields import DEFAULT_TEAM
from gdts.manager.jobguard import TEAM_ROLES
from gdts.mongo import mongo_errors
from gdts.plans import to_ms

TEAMS = "teams"


def validate_team_role(value: object, field_name: str = "role") -> str:
    if value not in TEAM_ROLES:
        raise InvalidFieldError(
            field_name, f"must be one of {', '.join(TEAM_ROLES)}, got {value!r}"
        )
    return str(value)


def default_team_role(account_role: str) -> str:
    """The role an account has in the default team when it joins it by itself."""
    return "guest" if account_role == "guest" else "user"


class Teams:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._teams = client[database][TEAMS]

    async def ensure_indexes(self) -> None:
        with mongo_errors():
            await self._teams.create_index("members.id", name="member")

    async def ensure_default(self, accounts: list[dict[str, Any]]) -> None:
        """The default team, with every account in it, unless it exists (it is made once: an
        admin may have changed its members since)."""
        members = [
            {"id": a["accountId"], "role": default_team_role(a["role"])}
            for a in accounts
            if a.get("accountId") and a["role"] != "admin"
        ]
        with mongo_errors():
            try:
                await self._teams.insert_one(
                    {"_id": DEFAULT_TEAM, "members": members, "createdAt": datetime.now(UTC)}
                )
            except DuplicateKeyError:
                pass  # made before, by us or another manager

    async def memberships(self, account_id: str) -> dict[str, str]:
        """Team -> the account's role in it."""
        with mongo_errors():
            found = self._teams.find({"members.id": account_id}, {"members.$": 1})
            return {d["_id"]: d["members"][0]["role"] async for d in found}

    async def exists(self, name: str) -> bool:
        with mongo_errors():
            return await self._teams.count_documents({"_id": name}, limit=1) > 0

    async def require(self, name: str, field_name: str = "team") -> None:
        """400 naming the field unless the team exists (a job or secret put into a team that
        does not exist would be seen by nobody but admins)."""
        if not await self.exists(name):
            raise InvalidFieldError(field_name, f"no team named {name!r} (see /team/list)")

    async def all(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Every team (or those named), by name, with its members' ids and roles."""
        query = {} if names is None else {"_id": {"$in": names}}
        with mongo_errors():
            return [d async for d in self._teams.find(query).sort("_id", 1)]

    async def create(self, name: str) -> None:
        with mongo_errors():
            try:
                await self._teams.insert_one(
                    {"_id": name, "members": [], "createdAt": datetime.now(UTC)}
                )
            except DuplicateKeyError:
                raise ConflictError("name", f"a team named {name!r} exists") from None

    async def delete(self, name: str) -> dict[str, Any]:
        with mongo_errors():
            document = await self._teams.find_one_and_delete({"_id": name})
        if document is None:
            raise NotFoundError("name", f"no team named {name!r}")
        return document

    async def set_member(self, team: str, account_id: str, role: str) -> str | None:
        """Add the account to the team or change its role; returns its role before, if any."""
        with mongo_errors():
            document = await self._teams.find_one({"_id": team})
            if document is None:
                raise NotFoundError("team", f"no team named {team!r}")
            before = next((m["role"] for m in document["members"] if m["id"] == account_id),
                          None)  # fmt: skip
            members = [m for m in document["members"] if m["id"] != account_id]
            members.append({"id": account_id, "role": role})
            await self._teams.update_one({"_id": team}, {"$set": {"members": members}})
        return before

    async def remove_member(self, team: str, account_id: str) -> None:
        with mongo_errors():
            result = await self._teams.update_one(
                {"_id": team, "members.id": account_id},
                {"$pull": {"members": {"id": account_id}}},
            )
        if not result.matched_count:
            raise NotFoundError("username", f"not a member of team {team!r}")

    async def forget_account(self, account_id: str) -> None:
        """A deleted account leaves every team."""
        with mongo_errors():
            await self._teams.update_many(
                {"members.id": account_id}, {"$pull": {"members": {"id": account_id}}}
            )


def team_view(document: dict[str, Any], usernames: dict[str, str]) -> dict[str, Any]:
    """A team as the API shows it: its members by name (an id without an account is left out)."""
    members = [
        {"username": usernames[m["id"]], "role": m["role"]}
        for m in document["members"]
        if m["id"] in usernames
    ]
    created = document.get("createdAt")
    return {
        "name": document["_id"],
        "members": sorted(members, key=lambda m: m["username"]),
        "createdAt": None if created is None else to_ms(created),
    }
