"""The audit trail in MongoDB: who changed what, when, from where, with the job before and
after. Written after the change succeeds; read by admins through ``GET /audit``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from gdts.mongo import keep_for_days, mongo_errors
from gdts.plans import from_ms, to_ms

log = logging.getLogger(__name__)

AUDIT = "audit"


@dataclass(frozen=True)
class AuditQuery:
    user: str | None = None
    job: str | None = None
    action: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    skip: int = 0
    limit: int = 50

    def filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.user is not None:
            query["user"] = self.user
        if self.job is not None:
            query["job"] = self.job
        if self.action is not None:
            query["action"] = self.action
        at: dict[str, datetime] = {}
        if self.since_ms is not None:
            at["$gte"] = from_ms(self.since_ms)
        if self.until_ms is not None:
            at["$lt"] = from_ms(self.until_ms)
        if at:
            query["at"] = at
        return query


def entry_view(document: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in document.items() if k != "_id"}
    view["id"] = str(document["_id"])
    view["at"] = to_ms(document["at"])
    return view


class AuditTrail:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._entries = client[database][AUDIT]

    async def ensure_indexes(self, retention_days: int) -> None:
        """``retention_days``: how long entries are kept (0: for ever), the managers'
        auditRetentionDays: the newest-first index on ``at`` (a date) is also its TTL index."""
        with mongo_errors():
            await keep_for_days(self._entries, "at", "at", retention_days, DESCENDING)
            for field in ("user", "job", "action"):
                await self._entries.create_index(
                    [(field, ASCENDING), ("at", DESCENDING)], name=f"{field}_at"
                )

    async def record(
        self,
        action: str,
        *,
        user: str,
        role: str,
        source: str,
        job: str | None = None,
        before: Any = None,
        after: Any = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one change, after it succeeded. Should MongoDB fail just here, the change
        stands unrecorded and the caller gets a 503 rather than a success that hides it (the
        same MongoDB authenticated the request a moment before, so this window is narrow)."""
        entry: dict[str, Any] = {
            "at": datetime.now(UTC),
            "action": action,
            "user": user,
            "role": role,
            "source": source,
        }
        if job is not None:
            entry["job"] = job
        if before is not None:
            entry["before"] = before
        if after is not None:
            entry["after"] = after
        if detail:
            entry["detail"] = detail
        with mongo_errors():
            await self._entries.insert_one(entry)

    async def find(self, query: AuditQuery) -> list[dict[str, Any]]:
        with mongo_errors():
            cursor = self._entries.find(query.filter()).sort("at", DESCENDING)
            return [entry_view(d) async for d in cursor.skip(query.skip).limit(query.limit)]
