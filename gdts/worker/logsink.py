"""Results on their way to MongoDB: batched, held while MongoDB is away (in memory up to a
limit, then on local disk), and flushed on exit, so no finished run's result is lost."""

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
from gdts.worker.spill import SpillDir, read_segment

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 10.0


class LogSink:
    """``run()`` writes a batch when it is full or its oldest record has waited
    ``commit_timeout_s``; failed writes are retried with backoff. Past ``limit`` records in
    memory, the oldest go to the spill directory, which is written back once MongoDB answers."""

    def __init__(
        self,
        runlog: RunLog,
        batch_size: int,
        commit_timeout_s: float,
        limit: int,
        spill: SpillDir,
    ) -> None:
        self._runlog = runlog
        self._batch_size = batch_size
        self._commit_timeout_s = commit_timeout_s
        self._limit = limit
        self._spill = spill
        self._pending: deque[dict[str, Any]] = deque()
        self._oldest_at = 0.0
        self._wake = asyncio.Event()
        self._indexed = False
        self.spilled_segments = 0
        self.written = 0
        self.write_errors = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, record: RunRecord) -> None:
        if not self._pending:
            self._oldest_at = time.monotonic()
        self._pending.append(record.to_document())
        # Wake the writer on the first record (its commit-timeout clock starts), on a full batch,
        # and when memory is over the limit (time to spill).
        if len(self._pending) in (1, self._batch_size) or len(self._pending) > self._limit:
            self._wake.set()

    async def run(self) -> None:
        self.spilled_segments = await asyncio.to_thread(self._spill.count)
        if self.spilled_segments:
            log.info("%d spilled result segment(s) wait to be written", self.spilled_segments)
        backoff = _RETRY_MIN_S
        while True:
            await self._wait_for_work()
            try:
                if len(self._pending) > self._limit:
                    await self._spill_excess()
                if self._pending:
                    await self._write_batch()
                elif self.spilled_segments:
                    await self._replay_oldest_segment()
                backoff = _RETRY_MIN_S
            except PyMongoError as exc:
                self.write_errors += 1
                log.warning(
                    "cannot write results to MongoDB (%s); %d in memory, %d segment(s) on disk; "
                    "retrying in %.1fs",
                    exc, len(self._pending), self.spilled_segments, backoff,
                )  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _wait_for_work(self) -> None:
        while True:
            if len(self._pending) >= self._batch_size or len(self._pending) > self._limit:
                return
            if self._pending:
                remaining: float | None = (
                    self._oldest_at + self._commit_timeout_s - time.monotonic()
                )
                if remaining is not None and remaining <= 0:
                    return
            elif self.spilled_segments:
                return
            else:
                remaining = None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _write_batch(self) -> None:
        batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
        await self._insert(batch)
        for _ in batch:
            self._pending.popleft()
        self._oldest_at = time.monotonic()

    async def _insert(self, documents: list[dict[str, Any]]) -> None:
        if not self._indexed:
            await self._runlog.ensure_indexes()
            self._indexed = True
        duplicates = await self._runlog.insert(documents)
        if duplicates:
            log.info("%d result(s) were already stored (unique job/tick/attempt)", duplicates)
        self.written += len(documents) - duplicates

    async def _spill_excess(self) -> None:
        # Keep the newest half of the limit in memory; the oldest go to disk in one segment.
        count = len(self._pending) - self._limit // 2
        documents = [self._pending.popleft() for _ in range(count)]
        try:
            path = await asyncio.to_thread(self._spill.write, documents)
        except OSError:
            self._pending.extendleft(reversed(documents))
            log.exception("cannot spill results to %s; keeping them in memory", self._spill.path)
            return
        self.spilled_segments += 1
        log.warning("result buffer over %d; spilled %d result(s) to %s", self._limit, count, path)

    async def _replay_oldest_segment(self) -> None:
        segment = await asyncio.to_thread(self._spill.oldest)
        if segment is None:
            self.spilled_segments = 0
            return
        try:
            documents = await asyncio.to_thread(read_segment, segment)
        except FileNotFoundError:  # another worker sharing the directory took it
            return
        for start in range(0, len(documents), self._batch_size):
            await self._insert(documents[start : start + self._batch_size])
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(segment.unlink)
        self.spilled_segments = max(0, self.spilled_segments - 1)
        log.info("wrote %d spilled result(s) from %s", len(documents), segment.name)

    async def flush(self, timeout_s: float) -> bool:
        """Write everything in memory; call after ``run()`` is cancelled. What MongoDB does not
        take before the deadline goes to the spill directory, for the next start to write.
        Returns whether every result was written to MongoDB or saved to disk."""
        deadline = time.monotonic() + timeout_s
        while self._pending:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._write_batch()
            except (PyMongoError, TimeoutError) as exc:
                if time.monotonic() < deadline:
                    await asyncio.sleep(_RETRY_MIN_S)
                    continue
                log.error("MongoDB did not take %d result(s) (%s)", len(self._pending), exc)
                return await self._spill_all()
        return True

    async def _spill_all(self) -> bool:
        documents = list(self._pending)
        try:
            path = await asyncio.to_thread(self._spill.write, documents)
        except OSError:
            log.exception("cannot spill %d result(s): they are lost", len(documents))
            return False
        self._pending.clear()
        self.spilled_segments += 1
        log.warning("saved %d result(s) to %s for the next start to write", len(documents), path)
        return True
