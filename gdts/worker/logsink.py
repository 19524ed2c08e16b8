"""Results on their way to MongoDB: batched, buffered while MongoDB is away, flushed on exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from pymongo.errors import PyMongoError

from gdts.runlog import RunLog
from gdts.runrecord import RunRecord

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 10.0


class LogSink:
    """Holds finished runs until they are written. ``run()`` writes a batch when it is full or
    its oldest record has waited ``commit_timeout_s``; failed writes are retried with backoff and
    nothing is dropped unless the buffer limit is reached."""

    def __init__(
        self, runlog: RunLog, batch_size: int, commit_timeout_s: float, limit: int
    ) -> None:
        self._runlog = runlog
        self._batch_size = batch_size
        self._commit_timeout_s = commit_timeout_s
        self._limit = limit
        self._pending: deque[dict[str, Any]] = deque()
        self._oldest_at = 0.0
        self._wake = asyncio.Event()
        self._indexed = False
        self.dropped = 0
        self.written = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, record: RunRecord) -> None:
        if len(self._pending) >= self._limit:
            self._pending.popleft()
            self.dropped += 1
            log.error("result buffer full (%d); dropped the oldest result", self._limit)
        if not self._pending:
            self._oldest_at = time.monotonic()
        self._pending.append(record.to_document())
        # Wake the writer on the first record (its commit-timeout clock starts) and on a full batch.
        if len(self._pending) == 1 or len(self._pending) >= self._batch_size:
            self._wake.set()

    async def run(self) -> None:
        backoff = _RETRY_MIN_S
        while True:
            await self._wait_for_batch()
            try:
                await self._write_batch()
                backoff = _RETRY_MIN_S
            except PyMongoError as exc:
                log.warning(
                    "cannot write %d results to MongoDB (%s); retrying in %.1fs",
                    len(self._pending),
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _wait_for_batch(self) -> None:
        while True:
            if len(self._pending) >= self._batch_size:
                return
            if self._pending:
                remaining = self._oldest_at + self._commit_timeout_s - time.monotonic()
                if remaining <= 0:
                    return
            else:
                remaining = None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _write_batch(self) -> None:
        if not self._indexed:
            await self._runlog.ensure_indexes()
            self._indexed = True
        batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
        duplicates = await self._runlog.insert(batch)
        if duplicates:
            log.warning("%d results were already stored (unique job/tick/attempt)", duplicates)
        for _ in batch:
            self._pending.popleft()
        self.written += len(batch) - duplicates
        self._oldest_at = time.monotonic()

    async def flush(self, timeout_s: float) -> bool:
        """Write everything pending; call after ``run()`` is cancelled. Returns whether all of it
        was written before the deadline."""
        deadline = time.monotonic() + timeout_s
        while self._pending:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._write_batch()
            except (PyMongoError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    log.error("could not flush %d results: %s", len(self._pending), exc)
                    return False
                await asyncio.sleep(_RETRY_MIN_S)
        return True
