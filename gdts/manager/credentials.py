"""API tokens and console sessions in MongoDB, each stored as a SHA-256 of its secret.

The secrets are 256 random bits, so a fast hash is enough (no dictionary to attack) and a
lookup is one indexed read. Every request looks its credential up afresh: a revoked token or a
logged-out session stops working at once, on every manager.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient

from gdts.errors import ForbiddenError, NotFoundError
from gdts.mongo import mongo_errors
from gdts.plans import to_ms

TOKENS = "api_tokens"
SESSIONS = "sessions"
TOKEN_PREFIX = "gdts_"
# The id of the token that manager config's adminToken names: the same on every manager.
CONFIG_TOKEN_ID = "config"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


def token_view(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": document["id"],
        "name": document["name"],
        "username": document["username"],
        "createdAt": _ms(document.get("createdAt")),
    }


class Credentials:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._tokens = client[database][TOKENS]
        self._sessions = client[database][SESSIONS]

    async def ensure_indexes(self) -> None:
        with mongo_errors():
            await self._tokens.create_index([("id", ASCENDING)], name="id", unique=True)
            await self._tokens.create_index([("username", ASCENDING)], name="username")
            await self._sessions.create_index([("username", ASCENDING)], name="username")
            # MongoDB deletes expired sessions itself; lookups also check the time.
            await self._sessions.create_index(
                [("expiresAt", ASCENDING)], name="expires", expireAfterSeconds=0
            )

    # -- tokens ------------------------------------------------------------------------------

    async def create_token(self, username: str, name: str) -> tuple[str, dict[str, Any]]:
        """A new token: the secret (shown once, never stored) and its stored view."""
        token = TOKEN_PREFIX + new_secret()
        document = {
            "_id": digest(token),
            "id": secrets.token_hex(8),
            "username": username,
            "name": name,
            "createdAt": _now(),
        }
        with mongo_errors():
            await self._tokens.insert_one(document)
        return token, token_view(document)

    async def install_token(self, token: str, username: str, name: str) -> None:
        """Make a token from config valid (for scripts that need one at once); idempotent, and
        the same document whichever manager writes it."""
        with mongo_errors():
            await self._tokens.delete_many({"id": CONFIG_TOKEN_ID, "_id": {"$ne": digest(token)}})
            await self._tokens.update_one(
                {"_id": digest(token)},
                {
                    "$set": {"username": username, "name": name, "id": CONFIG_TOKEN_ID},
                    "$setOnInsert": {"createdAt": _now()},
                },
                upsert=True,
            )

    async def token_owner(self, token: str) -> str | None:
        with mongo_errors():
            document = await self._tokens.find_one({"_id": digest(token)}, {"username": 1})
        return None if document is None else document["username"]

    async def tokens(self, username: str | None) -> list[dict[str, Any]]:
        query = {} if username is None else {"username": username}
        with mongo_errors():
            cursor = self._tokens.find(query).sort("createdAt", -1)
            return [token_view(d) async for d in cursor]

    async def revoke_token(self, token_id: str, username: str | None) -> dict[str, Any]:
        """Delete a token by id; ``username`` limits it to that user's tokens (None: anyone's)."""
        with mongo_errors():
            document = await self._tokens.find_one({"id": token_id})
            if document is None:
                raise NotFoundError("id", f"no token with id {token_id!r}")
            if username is not None and document["username"] != username:
                raise ForbiddenError(f"token {token_id!r} belongs to another user")
            await self._tokens.delete_one({"_id": document["_id"]})
        return token_view(document)

    # -- sessions ----------------------------------------------------------------------------

    async def open_session(self, username: str, ttl_s: int) -> tuple[str, str]:
        """A new session: its cookie value and its CSRF token."""
        session_id, csrf = new_secret(), new_secret()
        now = _now()
        document = {
            "_id": digest(session_id),
            "username": username,
            "csrf": csrf,
            "createdAt": now,
            "expiresAt": now + timedelta(seconds=ttl_s),
        }
        with mongo_errors():
            await self._sessions.insert_one(document)
        return session_id, csrf

    async def session(self, session_id: str) -> dict[str, Any] | None:
        with mongo_errors():
            document = await self._sessions.find_one({"_id": digest(session_id)})
        if document is None or document["expiresAt"] <= _now():
            return None
        return document

    async def close_session(self, session_hash: str) -> None:
        with mongo_errors():
            await self._sessions.delete_one({"_id": session_hash})

    async def end_sessions(self, username: str, keep: str | None) -> int:
        """End the user's console sessions but ``keep`` (a session's hash); returns how many."""
        query: dict[str, Any] = {"username": username}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        with mongo_errors():
            result = await self._sessions.delete_many(query)
        return result.deleted_count

    async def forget_user(self, username: str) -> None:
        """A deleted account's tokens and sessions go with it."""
        with mongo_errors():
            await self._tokens.delete_many({"username": username})
            await self._sessions.delete_many({"username": username})
