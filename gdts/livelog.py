"""The output of runs still going on, in MongoDB: each long run's captured bytes in chunks by
byte offset, written by its worker's flusher (see gdts.worker.liveflush), read by the manager's
/job/output, removed once the run's record is stored. A dead worker's chunks stay (its lost
run's partial output) until the TTL index takes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError

from gdts.mongo import DUPLICATE_KEY, mongo_errors

COLLECTION = "job_output_live"
# The most one chunk holds: what a flusher writes per run per interval, and how far before an
# offset a reader looks for the chunk that holds it.
MAX_CHUNK_BYTES = 64 * 1024
# Chunks nobody removed (their worker died, or MongoDB was away when the record was stored).
LEFTOVER_TTL_S = 3 * 24 * 3600

RunId = tuple[str, int, int]  # job name, planned time, attempt


def chunk_document(run: RunId, offset: int, data: bytes, worker: str, at: datetime) -> dict:
    name, plan_ms, attempt = run
    return {"jobName": name, "planTime": plan_ms, "attempt": attempt, "offset": offset,
            "data": Binary(data), "worker": worker, "at": at}  # fmt: skip


class LiveLog:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._chunks = client[database][COLLECTION]

    async def ensure_indexes(self) -> None:
        # Unique: a flush retried after a partial failure cannot store a chunk twice.
        await self._chunks.create_index(
            [("jobName", ASCENDING), ("planTime", ASCENDING), ("attempt", ASCENDING),
             ("offset", ASCENDING)],
            name="run_offset", unique=True,
        )  # fmt: skip
        await self._chunks.create_index("at", name="leftovers", expireAfterSeconds=LEFTOVER_TTL_S)

    async def insert(self, chunks: Sequence[dict[str, Any]]) -> None:
        """One unordered bulk insert; chunks already stored (a retry) are not an error."""
        try:
            await self._chunks.insert_many(list(chunks), ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") != DUPLICATE_KEY for e in errors
            ):
                raise

    async def delete(self, runs: Sequence[RunId]) -> None:
        """The chunks of these runs, in one delete."""
        await self._chunks.delete_many(
            {"$or": [{"jobName": n, "planTime": p, "attempt": a} for n, p, a in runs]}
        )

    async def read(self, run: RunId, offset: int) -> tuple[bytes, int] | None:
        """The run's bytes from ``offset`` on, as far as they are contiguous, and the offset
        after them; None: the run has no chunks at all (it never printed for long enough, or
        they are gone)."""
        name, plan_ms, attempt = run
        query = {"jobName": name, "planTime": plan_ms, "attempt": attempt,
                 "offset": {"$gt": offset - MAX_CHUNK_BYTES}}  # fmt: skip
        with mongo_errors():
            found = await self._chunks.find(query, {"offset": 1, "data": 1, "_id": 0}).sort(
                "offset", ASCENDING
            ).to_list()  # fmt: skip
            if not found and offset > 0:
                found_any = await self._chunks.find_one(
                    {"jobName": name, "planTime": plan_ms, "attempt": attempt}, {"_id": 1}
                )
                if found_any is not None:
                    return b"", offset
        if not found:
            return None
        return contiguous_from(((c["offset"], bytes(c["data"])) for c in found), offset)


def contiguous_from(chunks: Any, offset: int) -> tuple[bytes, int]:
    """The bytes from ``offset`` of chunks (offset, data) sorted by offset, up to the first
    gap, and the offset after them. Pure."""
    parts: list[bytes] = []
    at = offset
    for start, data in chunks:
        end = start + len(data)
        if end <= at:
            continue
        if start > at:
            break  # a gap: what follows it waits until the gap is filled
        parts.append(data[at - start :])
        at = end
    return b"".join(parts), at
