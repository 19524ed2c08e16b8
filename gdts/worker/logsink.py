"""Results on their way to MongoDB: batched, held while MongoDB is away (in memory up to a
limit, then on local disk), journaled on local disk meanwhile (see journal) and flushed on exit,
so no finished run's result is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pymongo.errors import PyMongoError

from gdts.cancellation import end_if_cancelling
from gdts.runlog import RunLog
from gdts.runrecord import RunRecord
from gdts.worker.journal import NOT_JOURNALED, ResultJournal
from gdts.worker.spill import SpillDir, read_segment

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 10.0


class LogSink:
    """``run()`` writes a batch when it is full or its oldest record has waited
    ``commit_timeout_s``; failed writes are retried with backoff. Past ``limit`` records or
    ``limit_bytes`` in memory, the oldest go to the spill directory, which is written back once
    MongoDB answers. The directory holds at most ``spill_limit_bytes``: past that the oldest
    segments are given up, loudly (an outage longer than the disk was meant for)."""

    def __init__(
        self,
        runlog: RunLog,
        batch_size: int,
        commit_timeout_s: float,
        limit: int,
        spill: SpillDir,
        limit_bytes: int = 64 * 1024 * 1024,
        spill_limit_bytes: int = 1024 * 1024 * 1024,
        journal: ResultJournal | None = None,
        on_stored: Callable[[Sequence[dict[str, Any]]], None] | None = None,
    ) -> None:
        """``on_stored(documents)``: these records are in MongoDB now (see liveflush)."""
        self._runlog = runlog
        self._batch_size = batch_size
        self._commit_timeout_s = commit_timeout_s
        self._limit = limit
        self._spill = spill
        self._limit_bytes = limit_bytes
        self._spill_limit_bytes = spill_limit_bytes
        self._journal = journal
        self._on_stored = on_stored
        # Each record waiting, with its size (roughly its JSON's) and its journal file, and the
        # sizes' sum.
        self._pending: deque[tuple[dict[str, Any], int, int]] = deque()
        self._pending_bytes = 0
        self._oldest_at = 0.0
        self._wake = asyncio.Event()
        self._indexed = False
        self.spilled_segments = 0
        self.written = 0
        self.write_errors = 0
        self.dropped = 0  # results given up to keep the spill directory within its limit

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, record: RunRecord) -> None:
        if not self._pending:
            self._oldest_at = time.monotonic()
        document = record.to_document()
        size = _size_of(document)
        journaled = NOT_JOURNALED if self._journal is None else self._journal.add(document)
        self._pending.append((document, size, journaled))
        self._pending_bytes += size
        # Wake the writer on the first record (its commit-timeout clock starts), on a full batch,
        # and when memory is over a limit (time to spill).
        if len(self._pending) in (1, self._batch_size) or self._over_limit():
            self._wake.set()

    def _over_limit(self) -> bool:
        return len(self._pending) > self._limit or self._pending_bytes > self._limit_bytes

    def _pop_oldest(self) -> tuple[dict[str, Any], int, int]:
        pending = self._pending.popleft()
        self._pending_bytes -= pending[1]
        return pending

    def _stored(self, entries: list[tuple[dict[str, Any], int, int]]) -> None:
        """These results are in MongoDB or a spill segment: their journal lines may go."""
        if self._journal is None:
            return
        per_file: dict[int, int] = {}
        for _, _, journaled in entries:
            per_file[journaled] = per_file.get(journaled, 0) + 1
        for journaled, count in per_file.items():
            self._journal.stored(journaled, count)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    async def run(self) -> None:
        if self._journal is not None:
            recovered = await asyncio.to_thread(self._journal.recover)
            if recovered:
                log.warning("%d journal(s) of results an earlier life did not store will be "
                            "written", recovered)  # fmt: skip
        self.spilled_segments = await asyncio.to_thread(self._spill.count)
        if self.spilled_segments:
            log.info("%d spilled result segment(s) wait to be written", self.spilled_segments)
        backoff = _RETRY_MIN_S
        retry_at = 0.0  # after a failed write, MongoDB is not asked again before this
        while True:
            await self._wait_for_work(retry_at)
            # Spilling needs no MongoDB: memory stays within its limits during a backoff too.
            if self._over_limit():
                await self._spill_excess()
            if time.monotonic() < retry_at:
                continue
            try:
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
                retry_at = time.monotonic() + backoff
                backoff = min(backoff * 2, _RETRY_MAX_S)
            end_if_cancelling()

    async def _wait_for_work(self, retry_at: float) -> None:
        while True:
            if self._over_limit():
                return
            now = time.monotonic()
            if now < retry_at:
                remaining: float | None = retry_at - now  # a backoff: only a spill wakes it
            elif len(self._pending) >= self._batch_size:
                return
            elif self._pending:
                remaining = self._oldest_at + self._commit_timeout_s - now
                if remaining <= 0:
                    return
            elif self.spilled_segments:
                return
            else:
                remaining = None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                if now < retry_at:
                    return  # the backoff is over

    async def _write_batch(self) -> None:
        batch = [self._pending[i][0] for i in range(min(self._batch_size, len(self._pending)))]
        await self._insert(batch)
        self._stored([self._pop_oldest() for _ in batch])
        self._oldest_at = time.monotonic()

    async def _insert(self, documents: list[dict[str, Any]]) -> None:
        if not self._indexed:
            await self._runlog.ensure_indexes()
            self._indexed = True
        duplicates = await self._runlog.insert(documents)
        if self._on_stored is not None:
            self._on_stored(documents)
        if duplicates:
            log.info("%d result(s) were already stored (unique job/tick/attempt)", duplicates)
        self.written += len(documents) - duplicates

    async def _spill_excess(self) -> None:
        # Keep the newest half of each limit in memory; the oldest go to disk in one segment.
        oldest = []
        while self._pending and (
            len(self._pending) > self._limit // 2 or self._pending_bytes > self._limit_bytes // 2
        ):
            oldest.append(self._pop_oldest())
        await self._to_disk(oldest)

    async def _to_disk(self, pending: list[tuple[dict[str, Any], int, int]]) -> bool:
        """One segment of these records; if it cannot be written they stay in memory."""
        size = sum(entry[1] for entry in pending)
        dropped = await asyncio.to_thread(self._spill.make_room, size, self._spill_limit_bytes)
        if dropped:
            self.dropped += dropped
            log.error(
                "spill directory %s over %d bytes: gave up the %d oldest result(s) waiting there",
                self._spill.path, self._spill_limit_bytes, dropped,
            )  # fmt: skip
        try:
            path = await asyncio.to_thread(self._spill.write, [entry[0] for entry in pending])
        except OSError:
            self._pending.extendleft(reversed(pending))
            self._pending_bytes += size
            log.exception("cannot spill results to %s; keeping them in memory", self._spill.path)
            return False
        self._stored(pending)
        self.spilled_segments = await asyncio.to_thread(self._spill.count)
        log.warning("result buffer full; spilled %d result(s) to %s", len(pending), path)
        return True

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
                saved = await self._spill_all()
                break
        else:
            saved = True
        if self._journal is not None:
            self._journal.close()  # what it still holds (nothing, if saved) waits for next start
        return saved

    async def _spill_all(self) -> bool:
        pending = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if not await self._to_disk(pending):
            log.error("cannot spill %d result(s): only the journal holds them now, for the "
                      "next start", len(pending))  # fmt: skip
            return False
        return True


def _size_of(document: dict[str, Any]) -> int:
    """About what the record takes as JSON: its texts and a little for the other fields."""
    texts = (document.get("output"), document.get("err"), document.get("command"))
    return 256 + sum(len(text) for text in texts if isinstance(text, str))
