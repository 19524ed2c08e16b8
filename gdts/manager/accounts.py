"""Accounts in MongoDB: a name, a role, an argon2id password hash and an account id.

The id is made once and never reused: jobs and team memberships hold it, not the name, so a new
account given a deleted one's name inherits nothing.

Every request reads its caller's account afresh, so a changed role or a deleted account takes
effect at once on every manager; there is no cache to go stale.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from gdts.errors import ConflictError, InvalidFieldError, NotFoundError
from gdts.jobfields import validate_name
from gdts.manager.endpoints import ROLES
from gdts.mongo import mongo_errors
from gdts.plans import to_ms

log = logging.getLogger(__name__)

USERS = "users"
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
# argon2-cffi's defaults (RFC 9106's low-memory profile: 64 MiB, 3 passes, 4 lanes).
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user does not exist, so a login takes as long for an unknown name as
    for a wrong password and does not tell which names exist. Made at the first such login
    (which takes that much longer, once), not at import: a tenth of a second of CPU at every
    start of a manager, and of every command that imports this module."""
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and how it proved it."""

    username: str
    role: str
    via: str  # "token", "session", or "off" when authentication is switched off
    session_hash: str | None = None
    csrf_token: str | None = None
    account_id: str = ""
    # team -> the caller's role in it (see gdts.manager.teams); read for every request but an
    # admin's, who sees every team.
    teams: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def validate_username(value: object, field_name: str = "username") -> str:
    # Job names' rules: no '/', no control characters, no surrounding space.
    return validate_name(value, field_name)


def validate_role(value: object) -> str:
    if value not in ROLES:
        raise InvalidFieldError("role", f"must be one of {', '.join(ROLES)}, got {value!r}")
    return str(value)


def validate_password(value: object, field_name: str = "password") -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, "must be a string")
    if not MIN_PASSWORD_CHARS <= len(value) <= MAX_PASSWORD_CHARS:
        raise InvalidFieldError(
            field_name, f"must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long"
        )
    return value


async def hash_password(password: str) -> str:
    # 64 MiB and ~50 ms of CPU: off the event loop, or every login stalls every request.
    return await asyncio.to_thread(_HASHER.hash, password)


async def password_matches(stored_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            matches = _HASHER.verify(stored_hash or _dummy_hash(), password)
            return matches and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def new_account_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


def public_view(document: dict[str, Any]) -> dict[str, Any]:
    """An account as the API shows it: never the hash."""
    return {
        "username": document["_id"],
        "role": document["role"],
        "accountId": document.get("accountId", ""),
        "createdAt": _ms(document.get("createdAt")),
        "updatedAt": _ms(document.get("updatedAt")),
    }


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


class Accounts:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._users = client[database][USERS]

    async def get(self, username: str) -> dict[str, Any] | None:
        with mongo_errors():
            return await self._users.find_one({"_id": username})

    async def check_password(self, username: str, password: str) -> dict[str, Any] | None:
        """The account if the password is right, else None (same cost either way)."""
        account = await self.get(username)
        stored = account.get("passwordHash") if account else None
        if await password_matches(stored, password):
            return account
        return None

    async def create(self, username: str, role: str, password: str) -> dict[str, Any]:
        now = _now()
        document = {
            "_id": username,
            "accountId": new_account_id(),
            "role": role,
            "passwordHash": await hash_password(password),
            "createdAt": now,
            "updatedAt": now,
        }
        with mongo_errors():
            try:
                await self._users.insert_one(document)
            except DuplicateKeyError:
                raise ConflictError("username", f"an account named {username!r} exists") from None
        return document

    async def save(self, username: str, role: str, password: str | None) -> dict[str, Any] | None:
        """Create the account (a password is required) or change its role and, if given, its
        password; returns the account before the change, or None for a new one."""
        before = await self.get(username)
        if before is None:
            if password is None:
                raise InvalidFieldError("password", "is required for a new account")
            await self.create(username, role, password)
            return None
        changes: dict[str, Any] = {"role": role, "updatedAt": _now()}
        if password is not None:
            changes["passwordHash"] = await hash_password(password)
        with mongo_errors():
            await self._users.update_one({"_id": username}, {"$set": changes})
        return before

    async def by_ids(self, account_ids: list[str]) -> dict[str, str]:
        """Account id -> username, for those that exist."""
        with mongo_errors():
            found = self._users.find({"accountId": {"$in": account_ids}}, {"accountId": 1})
            return {d["accountId"]: d["_id"] async for d in found}

    async def ensure_account_ids(self) -> None:
        """Accounts made before ids existed get one (idempotent: only where none is set, so
        two managers starting together give each account one id)."""
        with mongo_errors():
            await self._users.create_index("accountId", unique=True, sparse=True,
                                           name="account_id")  # fmt: skip
            async for document in self._users.find({"accountId": {"$exists": False}}, {"_id": 1}):
                await self._users.update_one(
                    {"_id": document["_id"], "accountId": {"$exists": False}},
                    {"$set": {"accountId": new_account_id()}},
                )

    async def set_password(self, username: str, password: str) -> None:
        changes = {"passwordHash": await hash_password(password), "updatedAt": _now()}
        with mongo_errors():
            result = await self._users.update_one({"_id": username}, {"$set": changes})
        if not result.matched_count:
            raise NotFoundError("username", f"no account named {username!r}")

    async def delete(self, username: str) -> dict[str, Any]:
        with mongo_errors():
            document = await self._users.find_one_and_delete({"_id": username})
        if document is None:
            raise NotFoundError("username", f"no account named {username!r}")
        return document

    async def all(self) -> list[dict[str, Any]]:
        with mongo_errors():
            return [public_view(d) async for d in self._users.find().sort("_id", 1)]

    async def count(self) -> int:
        with mongo_errors():
            return await self._users.count_documents({}, limit=1)
