"""Every few seconds: is MongoDB answering, and how far is this worker's clock from its clock?
Feeds the worker's readiness and the ``gdts_clock_offset_seconds`` gauge."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from gdts.cancellation import end_if_cancelling

log = logging.getLogger(__name__)

_CHECK_EVERY_S = 10.0
_STALE_S = 3 * _CHECK_EVERY_S


class MongoCheck:
    def __init__(
        self,
        mongo: AsyncMongoClient[dict[str, Any]],
        clock: Callable[[], int],
        offset_gauge: Gauge,
        skew_warning_ms: int,
    ) -> None:
        self._mongo = mongo
        self._now_ms = clock
        self._offset_gauge = offset_gauge
        self._skew_warning_ms = skew_warning_ms
        self._ok_at = -float("inf")

    def answering(self) -> bool:
        """Whether MongoDB answered one of the last few checks."""
        return time.monotonic() - self._ok_at < _STALE_S

    async def run(self) -> None:
        warned = False
        while True:
            try:
                sent = self._now_ms()
                reply = await self._mongo.admin.command("hello")
                received = self._now_ms()
                self._ok_at = time.monotonic()
                server: datetime = reply["localTime"]
                offset_ms = (sent + received) / 2 - server.timestamp() * 1000
                self._offset_gauge.set(offset_ms / 1000)
                # The true offset lies within half the round trip of the estimate: a busy event
                # loop stretches the round trip, and must not read as a wrong clock.
                uncertainty_ms = (received - sent) / 2
                off = abs(offset_ms) - uncertainty_ms > self._skew_warning_ms
                if off and not warned:
                    log.warning(
                        "this worker's clock is %.1fs off MongoDB's clock; ticks fire by this "
                        "worker's clock, so fix its time sync", offset_ms / 1000,
                    )  # fmt: skip
                warned = off
            except PyMongoError as exc:
                log.debug("MongoDB check failed: %s", exc)
            end_if_cancelling()
            await asyncio.sleep(_CHECK_EVERY_S)
