"""The run log in MongoDB: one document per run, and each job's last run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from gdts.clock import now_ms
from gdts.errors import StoreUnavailableError
from gdts.mongo import keep_for_days
from gdts.plans import from_ms
from gdts.runrecord import NOTIFY_PENDING
from gdts.runstats import late_minutes

log = logging.getLogger(__name__)

COLLECTION = "job_log"
# One document per job: its latest run's status and times, kept by the workers as they write
# runs, so /job/list can show every job's last run without searching the log for each.
LAST_RUNS = "job_last_run"
# The worker: the one /job/list's host filter finds a job by when no run of it goes on.
LAST_RUN_FIELDS = ("status", "planTime", "startTime", "endTime", "attempt", "trigger", "worker")
_DUPLICATE_KEY = 11000
# Records written for a run nobody saw finish (its worker was lost) or start (missed): a real
# result for the same run replaces them.
_PLACEHOLDERS = ("lost", "missed")


# Every run's end as a date (its endTime is epoch ms, which TTL indexes cannot read): the
# retention TTL index and the time ranges of the dashboard's figures both use this one index.
ENDED_AT = "endedAt"
ENDED_INDEX = "ended_at"
# The minutes late results were written into (see gdts.runstats.LATE_MS): the managers' rollup
# loop computes them again (gdts.manager.runminutes).
DIRTY_MINUTES = "run_minutes_dirty"

# /job/log's order, which keepRuns keeps the head of (see gdts.manager.retention).
PAGE_INDEX = "job_start_id"
PAGE_KEYS = [("jobName", ASCENDING), ("startTime", DESCENDING), ("_id", ASCENDING)]
# One run per (job, planned time, attempt); a purge finds a job's runs planned before a time.
TICK_INDEX = "job_tick_attempt"
# /job/log?chainId=: one chain run's steps in plan order, each step's attempts in order.
_CHAIN_INDEX = "chain_step_attempt"
_CHAIN_KEYS = [("chainId", ASCENDING), ("chainStep", ASCENDING), ("attempt", ASCENDING),
               ("_id", ASCENDING)]  # fmt: skip


class RunOutput(NamedTuple):
    output: str
    status: str


class RunLog:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._runs = client[database][COLLECTION]
        self._last_runs = client[database][LAST_RUNS]
        self._dirty_minutes = client[database][DIRTY_MINUTES]

    async def ensure_indexes(self, retention_days: int | None = None) -> None:
        """``retention_days``: how long runs are kept (0: for ever), from a manager's config;
        None (a worker): leave the retention index to the managers, whose setting it is."""
        # /job/log: one job's runs, newest first, a page found in the index alone (with _id:
        # skipping runs must not read their outputs). It replaces job_start, its prefix.
        await self._runs.create_index(PAGE_KEYS, name=PAGE_INDEX)
        with contextlib.suppress(OperationFailure):  # gone already, or never made
            await self._runs.drop_index("job_start")
        # A tick run twice would be a second document for the same (job, tick, attempt): the
        # store refuses it, so a double run can never pass unseen.
        await self._runs.create_index(
            [("jobName", ASCENDING), ("planTime", ASCENDING), ("attempt", ASCENDING)],
            name=TICK_INDEX,
            unique=True,
        )
        # The notifier's queue: only the runs marked for it are in this index, and a run
        # leaves it when the mark is removed, so looking costs nothing when there is nothing.
        await self._runs.create_index(
            [(NOTIFY_PENDING, ASCENDING), ("endTime", ASCENDING)],
            name="notify_pending",
            partialFilterExpression={NOTIFY_PENDING: True},
        )
        # Only the runs of chain runs' steps are in this index: the other runs cost it nothing.
        await self._runs.create_index(
            _CHAIN_KEYS,
            name=_CHAIN_INDEX,
            partialFilterExpression={"chainId": {"$exists": True}},
        )
        # The manager reads the last runs that changed since its previous look.
        await self._last_runs.create_index([("at", ASCENDING)], name="at")
        if retention_days is not None:
            # Runs older than that go, through a TTL index on their end (see keep_for_days).
            await keep_for_days(self._runs, ENDED_AT, ENDED_INDEX, retention_days)

    async def insert(self, documents: Sequence[dict[str, Any]]) -> int:
        """Insert runs; returns how many the unique index refused as duplicates (already stored
        by an earlier, partly failed attempt of the same batch, or a tick that ran twice).

        A real result for a run already recorded as ``lost`` (its worker was cut off, not dead,
        and finished after all) replaces the lost record: the real outcome is what happened."""
        documents = [_dated(document) for document in documents]
        late = late_minutes(documents, now_ms())
        try:
            await self._runs.insert_many(documents, ordered=False)
            await self._note_last_runs(documents)
            await self._note_late(late)
            return 0
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            errors = exc.details.get("writeErrors", [])
            for error in errors:
                if error.get("code") != _DUPLICATE_KEY:
                    # A per-document error is the server's final word on that document (e.g.
                    # too large); retrying would block every result behind it forever.
                    document = documents[error["index"]]
                    log.error(
                        "MongoDB refused the result of %s@%s for good: %s",
                        document.get("jobName"), document.get("planTime"), error.get("errmsg"),
                    )  # fmt: skip
            refused = [documents[e["index"]] for e in errors if e.get("code") == _DUPLICATE_KEY]
        duplicates = 0
        for document in refused:
            if document.get("status") in _PLACEHOLDERS or not await self._replace_lost(document):
                duplicates += 1
        await self._note_last_runs(documents)
        await self._note_late(late)
        return duplicates

    async def _note_late(self, minutes: set[int]) -> None:
        """Note the minutes of late results as dirty, in one write; nothing (no write at all)
        in the normal flow, where results arrive within seconds of their end."""
        if not minutes:
            return
        dates = sorted(from_ms(m) for m in minutes)
        notes = [UpdateOne({"_id": d}, {"$inc": {"marks": 1}}, upsert=True) for d in dates]
        await self._dirty_minutes.bulk_write(notes, ordered=False)

    async def _note_last_runs(self, documents: Sequence[dict[str, Any]]) -> None:
        """Move each job's last-run summary forward to the newest of these runs (by start time,
        then attempt). Runs reach MongoDB out of order from several workers, so the update keeps
        whichever is newer, in the server, in one step."""
        newest: dict[str, dict[str, Any]] = {}
        for document in documents:
            name = document["jobName"]
            if name not in newest or _order(document) >= _order(newest[name]):
                newest[name] = document
        if not newest:
            return
        names = list(newest)
        updates = [UpdateOne(*_newer_than_stored(n, newest[n]), upsert=True) for n in names]
        try:
            await self._last_runs.bulk_write(updates, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") != _DUPLICATE_KEY for e in errors
            ):
                raise
            # The filter missed and the insert found the summary there: stored newer (nothing
            # to do), or put there a moment ago by another worker (look again, without insert).
            missed = (names[e["index"]] for e in errors)
            again = [UpdateOne(*_newer_than_stored(n, newest[n])) for n in missed]
            await self._last_runs.bulk_write(again, ordered=False)

    async def last_runs_of(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The last-run summaries of these jobs, by name (jobs that never ran are absent)."""
        try:
            found = await self._last_runs.find({"_id": {"$in": list(names)}}).to_list()
        except PyMongoError as exc:
            raise StoreUnavailableError("MongoDB", type(exc).__name__ + ": " + str(exc)) from exc
        return {str(summary["_id"]): summary for summary in found}

    async def last_runs_since(self, since: datetime | None) -> list[dict[str, Any]]:
        """Last-run summaries changed at or after ``since`` (all of them for None)."""
        query = {} if since is None else {"at": {"$gte": since}}
        try:
            return await self._last_runs.find(query).to_list()
        except PyMongoError as exc:
            raise StoreUnavailableError("MongoDB", type(exc).__name__ + ": " + str(exc)) from exc

    async def _replace_lost(self, document: dict[str, Any]) -> bool:
        fields = {k: v for k, v in document.items() if k != "_id"}
        result = await self._runs.replace_one(
            {
                "jobName": fields["jobName"],
                "planTime": fields["planTime"],
                "attempt": fields["attempt"],
                "status": {"$in": list(_PLACEHOLDERS)},
            },
            fields,
        )
        return result.modified_count == 1

    async def find(
        self, job_name: str, skip: int, limit: int, output_chars: int
    ) -> list[dict[str, Any]]:
        """A page of the job's runs, newest first, each output cut in MongoDB to its first
        ``output_chars`` characters (``outputBytes``: the whole output's size, when cut), so a
        page's size is bounded whatever the runs printed. The page's runs are found in the
        index alone, so the runs skipped are never read; of those on the page only the head of
        each output is sent (the whole one's size is in its BSON header)."""
        return await self._page({"jobName": job_name}, PAGE_KEYS[1:], PAGE_INDEX, skip, limit,
                                output_chars)  # fmt: skip

    async def find_chain(
        self, chain_id: str, skip: int, limit: int, output_chars: int
    ) -> list[dict[str, Any]]:
        """A page of one chain run's step runs, by step then attempt, outputs cut as find's.
        No index hint: the planner takes the partial index for an equality on chainId, and a
        hint would fail every request until the index exists."""
        return await self._page({"chainId": chain_id}, _CHAIN_KEYS[1:], None, skip, limit,
                                output_chars)  # fmt: skip

    async def _page(
        self,
        query: dict[str, Any],
        order: list[tuple[str, int]],
        hint: str | None,
        skip: int,
        limit: int,
        output_chars: int,
    ) -> list[dict[str, Any]]:
        text = {"$ifNull": ["$output", ""]}
        try:
            cursor = self._runs.find(query, {"_id": 1}).sort(order)
            if hint is not None:
                cursor = cursor.hint(hint)
            ids = [doc["_id"] for doc in await cursor.skip(skip).limit(limit).to_list()]
            cursor = await self._runs.aggregate([
                {"$match": {"_id": {"$in": ids}}},
                {"$set": {"outputBytes": {"$strLenBytes": text},
                          "output": {"$substrCP": [text, 0, output_chars]}}},
                # The notifier's, not the run's; endedAt is endTime as a date, for MongoDB.
                {"$unset": ["notify", NOTIFY_PENDING, ENDED_AT]},
            ])  # fmt: skip
            found = {doc.pop("_id"): doc for doc in await cursor.to_list()}
        except PyMongoError as exc:
            raise StoreUnavailableError("MongoDB", type(exc).__name__ + ": " + str(exc)) from exc
        runs = [found[run_id] for run_id in ids if run_id in found]
        for run in runs:
            if run["outputBytes"] <= len(run["output"].encode()):
                del run["outputBytes"]  # whole: only a cut output says how long it was
        return runs

    async def output_of(self, job_name: str, plan_time: int, attempt: int) -> RunOutput | None:
        """One run's whole output (at most the worker's outputLimit) and status; None: no
        such run."""
        try:
            found = await self._runs.find_one(
                {"jobName": job_name, "planTime": plan_time, "attempt": attempt},
                {"_id": 0, "output": 1, "status": 1},
            )
        except PyMongoError as exc:
            raise StoreUnavailableError("MongoDB", type(exc).__name__ + ": " + str(exc)) from exc
        if found is None:
            return None
        return RunOutput(str(found.get("output") or ""), str(found.get("status") or ""))

    async def ping(self) -> None:
        try:
            await self._runs.database.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailableError("MongoDB", str(exc)) from exc


def _dated(document: dict[str, Any]) -> dict[str, Any]:
    # Added here, not in the record: results wait in JSON on disk, which has no dates.
    ended = from_ms(int(document["endTime"]))
    return {**document, ENDED_AT: ended}


def _order(document: dict[str, Any]) -> int:
    # Start time (planned time for a run that never started), then attempt, as one number.
    started = document.get("startTime") or document.get("planTime") or 0
    return int(started) * 16 + min(int(document.get("attempt") or 1), 15)


def _newer_than_stored(name: str, document: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The filter and update that move a job's summary to this run unless the one stored is
    newer (a plain update: an aggregation pipeline with a condition per field cost the worker
    and mongod twice as much per run)."""
    order = _order(document)
    fields = {field: document.get(field) for field in LAST_RUN_FIELDS}
    return (
        {"_id": name, "order": {"$not": {"$gt": order}}},  # older, equal, or none stored
        {"$set": {"order": order, **fields}, "$currentDate": {"at": True}},
    )
