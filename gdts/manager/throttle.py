"""Failed logins slow the next ones down: per user from one address, and per address.

Failures live in MongoDB so every manager behind the load balancer counts the same ones; a TTL
index forgets them after the window. A locked pair is refused even with the right password,
which is what makes guessing slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from gdts.mongo import mongo_errors
from gdts.plans import to_ms

FAILURES = "login_failures"


@dataclass(frozen=True)
class Limits:
    window_s: int = 15 * 60
    per_user_and_address: int = 5
    # Higher: an office behind one NAT address has many users who mistype.
    per_address: int = 50


def retry_after_s(newest_first_ms: Sequence[int], limit: int, window_s: int, now_ms: int) -> int:
    """Seconds until fewer than ``limit`` of these failure times fall in the window; 0 if
    they already do."""
    in_window = [t for t in newest_first_ms if t > now_ms - window_s * 1000]
    if len(in_window) < limit:
        return 0
    # The limit-th newest failure is the one whose expiry brings the count under the limit.
    return max(1, math.ceil((in_window[limit - 1] + window_s * 1000 - now_ms) / 1000))


class LoginThrottle:
    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, limits: Limits = Limits()
    ) -> None:
        self._failures = client[database][FAILURES]
        self.limits = limits

    async def ensure_indexes(self) -> None:
        with mongo_errors():
            await self._failures.create_index(
                [("at", ASCENDING)], name="expire", expireAfterSeconds=self.limits.window_s
            )
            await self._failures.create_index(
                [("address", ASCENDING), ("at", DESCENDING)], name="address_at"
            )

    async def wait_s(self, username: str, address: str, now: datetime) -> int:
        """How long this user must wait before trying from this address (0: go ahead)."""
        limits = self.limits
        pair = await self._times({"username": username, "address": address}, now, limits)
        by_address = await self._times({"address": address}, now, limits)
        now_ms = to_ms(now)
        return max(
            retry_after_s(pair, limits.per_user_and_address, limits.window_s, now_ms),
            retry_after_s(by_address, limits.per_address, limits.window_s, now_ms),
        )

    async def failed(self, username: str, address: str, now: datetime) -> None:
        with mongo_errors():
            await self._failures.insert_one({"username": username, "address": address, "at": now})

    async def succeeded(self, username: str, address: str) -> None:
        with mongo_errors():
            await self._failures.delete_many({"username": username, "address": address})

    async def _times(self, query: dict[str, Any], now: datetime, limits: Limits) -> list[int]:
        since = now - timedelta(seconds=limits.window_s)
        most = max(limits.per_user_and_address, limits.per_address)
        with mongo_errors():
            cursor = self._failures.find({**query, "at": {"$gt": since}}, {"at": 1})
            return [to_ms(d["at"]) async for d in cursor.sort("at", DESCENDING).limit(most)]
