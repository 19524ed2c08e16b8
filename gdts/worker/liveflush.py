"""Live output: while a run goes on, what it printed reaches MongoDB (see gdts.livelog), so
the console can show it growing and a run lost with its worker keeps its partial output.

Cost stays flat at any rate of runs: one loop per worker wakes every ``liveOutputInterval``,
takes from each run going on for at least ``liveOutputAfter`` the bytes it captured since the
last flush (at most a chunk per run) and writes them all in one unordered bulk insert. A short
run (nearly every run at 500 a second) is never written: what it costs is a dict lookup when it
ends. Once a run's record is stored (the log sink says so), its chunks go in one delete per
batch; a delete that fails is left to the TTL index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from gdts.cancellation import end_if_cancelling
from gdts.errors import GdtsError
from gdts.livelog import MAX_CHUNK_BYTES, LiveLog, RunId, chunk_document
from gdts.worker.lostruns import LostRun
from gdts.worker.outputcap import OutputCap
from gdts.worker.runner import Runner

log = logging.getLogger(__name__)

# What one flush writes in all at most: a burst of chatty runs goes over several intervals.
MAX_FLUSH_BYTES = 8 * 1024 * 1024
# Ended runs' chunks waiting for a delete MongoDB did not take; past this the TTL index cleans.
_MAX_DELETES_HELD = 10_000
_WARN_EVERY_S = 60.0
_PARTIAL_READ_S = 3.0


@dataclass(frozen=True)
class GoingOn:
    """A run going on, as the flusher sees it."""

    runner: Runner
    run: RunId
    started: float  # the event loop's clock (monotonic seconds)
    capture: OutputCap | None  # None until the run has started capturing


def due_chunks(
    runs: Iterable[tuple[Runner, float, int, int]],
    now: float,
    after_s: float,
    chunk_max: int = MAX_CHUNK_BYTES,
    total_max: int = MAX_FLUSH_BYTES,
) -> list[tuple[Runner, int, int]]:
    """Which bytes to write now: of each run (runner, started, bytes captured, bytes already
    written) going on for at least ``after_s`` with new bytes, the range (runner, start, end)
    of at most ``chunk_max`` bytes, while the flush stays within ``total_max``. Pure."""
    due: list[tuple[Runner, int, int]] = []
    total = 0
    for runner, started, captured, written in runs:
        if captured <= written or now - started < after_s:
            continue
        size = min(captured - written, chunk_max, total_max - total)
        if size <= 0:
            break
        due.append((runner, written, written + size))
        total += size
    return due


class LiveOutput:
    def __init__(
        self,
        store: LiveLog,
        worker_id: str,
        going_on: Callable[[], Iterable[GoingOn]],
        interval_s: float,
        after_s: float,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._going_on = going_on
        self._interval_s = interval_s
        self._after_s = after_s
        # Runs going on that may have chunks in MongoDB: the bytes surely written. A run is
        # here from the flush that first plans a chunk of it, written or not yet.
        self._written: dict[Runner, int] = {}
        # Ended runs that may have chunks, until their record is stored; then their chunks go.
        self._awaiting_record: set[RunId] = set()
        self._deletable: list[RunId] = []
        self._indexed = False
        self._warned_at = 0.0
        self.flushes = 0  # bulk inserts made, for tests and diagnosis
        self.deletes = 0

    def ended(self, runner: Runner, name: str, plan_ms: int, attempt: int) -> None:
        """The run ended; its record is on its way to the log sink. A short run was never
        written: it costs this lookup only (no allocation)."""
        if self._written.pop(runner, None) is not None:
            self._awaiting_record.add((name, plan_ms, attempt))

    def stored(self, documents: Sequence[dict[str, Any]]) -> None:
        """The log sink stored these records: the chunks of those runs may go."""
        if not self._awaiting_record:
            return
        for document in documents:
            run = (document["jobName"], document["planTime"], document.get("attempt", 1))
            if run in self._awaiting_record:
                self._awaiting_record.discard(run)
                self._deletable.append(run)

    async def partial_output(self, run: LostRun) -> str | None:
        """What a dead worker wrote of ``run``'s output (for its lost record; its chunks go
        once that record is stored); None: MongoDB did not answer in time."""
        run_id = (run.job_name, run.plan_ms, run.attempt)
        try:
            async with asyncio.timeout(_PARTIAL_READ_S):
                chunks = await self._store.read(run_id, 0)
        except (GdtsError, TimeoutError) as exc:
            log.warning("cannot read the output of lost run %s@%d (%s)", run.job_name,
                        run.plan_ms, exc)  # fmt: skip
            return None
        if chunks is None:
            return ""
        self._awaiting_record.add(run_id)
        return chunks[0].decode(errors="replace")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._delete_stored()
                await self.flush(asyncio.get_running_loop().time())
            except PyMongoError as exc:
                end_if_cancelling(exc)
                if time.monotonic() - self._warned_at > _WARN_EVERY_S:
                    self._warned_at = time.monotonic()
                    log.warning("cannot write live output to MongoDB (%s); retrying", exc)
            end_if_cancelling()

    async def flush(self, now: float) -> None:
        """Write what is due at ``now`` in one bulk insert."""
        runs = {r.runner: r for r in self._going_on() if r.capture is not None}
        due = due_chunks(
            ((r.runner, r.started, r.capture.kept, self._written.get(r.runner, 0))
             for r in runs.values()),
            now, self._after_s,
        )  # fmt: skip
        if not due:
            return
        at = datetime.now(UTC)
        chunks = []
        for runner, start, end in due:
            going = runs[runner]
            assert going.capture is not None
            self._written.setdefault(runner, start)
            data = going.capture.kept_bytes(start, end)
            chunks.append(chunk_document(going.run, start, data, self._worker_id, at))
        if not self._indexed:
            await self._store.ensure_indexes()
            self._indexed = True
        await self._store.insert(chunks)
        self.flushes += 1
        for runner, _, end in due:
            if runner in self._written:  # not ended meanwhile
                self._written[runner] = end

    async def _delete_stored(self) -> None:
        if not self._deletable:
            return
        runs = self._deletable
        self._deletable = []
        try:
            await self._store.delete(runs)
            self.deletes += 1
        except PyMongoError:
            self._deletable = (runs + self._deletable)[-_MAX_DELETES_HELD:]
            raise

    async def close(self, timeout_s: float) -> None:
        """After the log sink's last flush: remove the chunks of the runs it stored (best
        effort; what is left, the TTL index removes)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._delete_stored()
        except (PyMongoError, TimeoutError) as exc:
            log.info("live output of %d run(s) left for the TTL index (%s)",
                     len(self._deletable), exc)  # fmt: skip
