"""The managers' clean-up of the run log beyond its TTL index: each job's ``keepRuns`` (keep its
last N runs), the purges ``/job/delete?purgeLogs=true`` records, and ``endedAt`` for runs
written before it existed (so the TTL index sees them).

Everything is deleted in bounded batches of ids with a pause between them, so no delete holds
MongoDB, the manager's event loop or the workers' writes for long. A purge is a document in
MongoDB: it survives a manager's restart and any manager carries it on. One manager works at a
time, holding a lease document it renews while it works and gives back when done; the work is
idempotent anyway (deletes by id, conditions re-read each pass), so a lease lost halfway only
means another manager repeats a few finds."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from gdts.cancellation import end_if_cancelling
from gdts.errors import GdtsError, InvalidFieldError
from gdts.etcd import EtcdClient, etcd_errors, prefix_changed_since, read_prefix
from gdts.job import api_view
from gdts.keys import KeyLayout
from gdts.livelog import COLLECTION as LIVE_CHUNKS
from gdts.mongo import mongo_errors
from gdts.runlog import (
    COLLECTION,
    ENDED_AT,
    ENDED_INDEX,
    LAST_RUNS,
    PAGE_INDEX,
    PAGE_KEYS,
    TICK_INDEX,
)

log = logging.getLogger(__name__)

PURGES = "log_purges"  # one document per purge asked for and not finished
LEASES = "retention_lease"  # one document: which manager cleans up now, and until when
_LEASE_ID = "retention"
# Measured with bench/purge.py (bench/README.md): with 100 ms between batches of 1,000 ids a
# purge of 1,000,000 runs took 135 s and left /job/log's and a worker's insert latencies as they
# were; with 20 ms it took 55 s and the inserts' median rose by a third.
BATCH = 1000
PAUSE_S = 0.1
LEASE_S = 30.0
_ORDER = PAGE_KEYS[1:]  # /job/log's order within one job: startTime desc, then _id


@dataclass(frozen=True)
class Target:
    """Documents a purge removes: where, which, and the index that finds them (None: no hint)."""

    collection: str
    query: dict[str, Any]
    hint: str | None


def purge_targets(job: str, before_ms: int) -> list[Target]:
    """Everything a purge of ``job`` removes: its runs planned before ``before_ms`` (the
    deletion), and its last-run summary unless a job of the same name saved since has run.
    What else a job leaves in MongoDB goes here too."""
    planned_before = {"jobName": job, "planTime": {"$lt": before_ms}}
    return [
        Target(COLLECTION, planned_before, TICK_INDEX),
        # A dead worker's chunks of a run's live output (the others go with their run's
        # record). No hint: the workers make that collection's indexes, the managers do not,
        # and a hint on an index not there yet would fail every pass.
        Target(LIVE_CHUNKS, planned_before, None),
        Target(LAST_RUNS, {"_id": job, "planTime": {"$lt": before_ms}}, None),
    ]


def listed_from(job: str, first_dropped: Mapping[str, Any]) -> dict[str, Any]:
    """The runs of ``job`` that /job/log lists from ``first_dropped`` on (it included), in its
    order: startTime descending (a run that never started, startTime null, last), then _id."""
    start, run_id = first_dropped.get("startTime"), first_dropped["_id"]
    if start is None:
        return {"jobName": job, "startTime": None, "_id": {"$gte": run_id}}
    return {
        "jobName": job,
        "$or": [
            {"startTime": start, "_id": {"$gte": run_id}},
            {"startTime": {"$lt": start}},
            {"startTime": None},
        ],
    }


class _LeaseLost(Exception):
    """Another manager holds the clean-up now (this one stalled past its lease)."""


class Retention:
    """The clean-up loop of one manager; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        mongo: AsyncMongoClient[dict[str, Any]],
        database: str,
        etcd: EtcdClient,
        keys: KeyLayout,
        *,
        interval_s: float,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
        lease_s: float = LEASE_S,
    ) -> None:
        self._db: AsyncDatabase[dict[str, Any]] = mongo[database]
        self._purges = self._db[PURGES]
        self._leases = self._db[LEASES]
        self._etcd = etcd
        self._keys = keys
        self._interval_s = interval_s
        self._batch = batch
        self._pause_s = pause_s
        self._lease_s = lease_s
        self._holder = uuid.uuid4().hex
        self._renewed_at = -float("inf")
        self._stop = asyncio.Event()
        # The jobs with keepRuns as of an etcd revision; read again only when jobs changed.
        self._keeping: dict[str, int] = {}
        self._read_at: tuple[int, int] | None = None  # (revision, how many jobs)

    async def start_purge(self, job: str, before_ms: int, user: str) -> dict[str, Any]:
        """Record a purge of ``job``'s runs planned before ``before_ms``; the loop does it."""
        purge = {"job": job, "before": before_ms, "user": user, "at": datetime.now(UTC)}
        with mongo_errors():
            inserted = await self._purges.insert_one(purge)
        return {"id": str(inserted.inserted_id), "job": job, "before": before_ms}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Pass after pass until stopped; a failing store is logged and tried again next pass.
        Stopping ends the pass between two batches, never inside a MongoDB call."""
        while not self._stop.is_set():
            try:
                await self.pass_once()
                end_if_cancelling()
            except (GdtsError, PyMongoError) as exc:
                end_if_cancelling(exc)
                log.warning("log clean-up pass failed (%s); trying again in %g s", exc,
                            self._interval_s)  # fmt: skip
            except _LeaseLost:
                log.warning("log clean-up: another manager took over (this one stalled)")
            try:
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
            except TimeoutError:
                pass

    async def pass_once(self) -> None:
        """One pass, if no other manager is doing one: backfill endedAt, carry on the purges
        (oldest first), then trim each job with keepRuns."""
        if not await self._take_lease():
            return
        try:
            await self._backfill_ended()
            for purge in await self._purges.find().sort("_id").to_list():
                if await self._purge(purge):
                    return
            for job, keep in (await self._jobs_keeping()).items():
                if await self._keep_last(job, keep):
                    return
        finally:
            await self._give_lease_back()

    async def _purge(self, purge: dict[str, Any]) -> bool:
        """Returns whether it stopped halfway."""
        for target in purge_targets(purge["job"], int(purge["before"])):
            if await self._delete(self._db[target.collection], target.query, target.hint):
                return True
        await self._purges.delete_one({"_id": purge["_id"]})
        log.info("purged the runs of %r planned before %d (asked by %s)", purge["job"],
                 purge["before"], purge.get("user", "?"))  # fmt: skip
        return False

    async def _keep_last(self, job: str, keep: int) -> bool:
        """Drop the runs of ``job`` that /job/log lists after its first ``keep``. The first
        run to drop is found in the page index alone; nothing to do costs that one look."""
        runs = self._db[COLLECTION]
        cursor = runs.find({"jobName": job}, {"startTime": 1}).sort(_ORDER).hint(PAGE_INDEX)
        found = await cursor.skip(keep).limit(1).to_list()
        if not found:
            return False
        return await self._delete(runs, listed_from(job, found[0]), PAGE_INDEX)

    async def _delete(
        self, collection: AsyncCollection[dict[str, Any]], query: dict[str, Any], hint: str | None
    ) -> bool:
        """Delete what ``query`` matches, a batch of ids at a time; returns whether it was
        stopped halfway. Runs written meanwhile that match go too (they are as old)."""
        while not self._stop.is_set():
            cursor = collection.find(query, {"_id": 1}).limit(self._batch)
            if hint is not None:
                cursor = cursor.hint(hint)
            ids = [document["_id"] for document in await cursor.to_list()]
            if ids:
                await collection.delete_many({"_id": {"$in": ids}})
            end_if_cancelling()  # a cancel the driver swallowed must still end the pass
            if len(ids) < self._batch:
                return False
            await self._renew_lease()
            await asyncio.sleep(self._pause_s)
        return True

    async def _backfill_ended(self) -> None:
        """Runs written before endedAt existed (or by a worker of that time still running)
        have none, so the TTL index never removes them: give them one. The TTL index finds
        them (a missing field is indexed as null), so a pass with none left costs one seek."""
        runs = self._db[COLLECTION]
        ended = {"$convert": {"input": "$endTime", "to": "date", "onError": "$$NOW",
                              "onNull": "$$NOW"}}  # fmt: skip
        while not self._stop.is_set():
            try:
                cursor = runs.find({ENDED_AT: None}, {"_id": 1}).hint(ENDED_INDEX)
                ids = [document["_id"] for document in await cursor.limit(self._batch).to_list()]
            except OperationFailure:
                return  # no TTL index yet (made at start, see bootstrap): next pass
            if ids:
                await runs.update_many({"_id": {"$in": ids}}, [{"$set": {ENDED_AT: ended}}])
            end_if_cancelling()
            if len(ids) < self._batch:
                return
            await self._renew_lease()
            await asyncio.sleep(self._pause_s)

    async def _jobs_keeping(self) -> dict[str, int]:
        """The jobs with keepRuns and their N, read from etcd only when jobs changed."""
        prefix = self._keys.jobs_prefix
        with etcd_errors():
            if self._read_at is not None:
                changed, _ = await prefix_changed_since(self._etcd, prefix, *self._read_at)
                if not changed:
                    return self._keeping
            kvs, revision = await read_prefix(self._etcd, prefix)
        keeping = {}
        for kv in kvs:
            if b'"keepRuns"' not in kv.value:  # a record leaves out the fields it does not set
                continue
            try:
                view = api_view(kv.value)
            except InvalidFieldError:
                continue  # not a job this manager can read: /job/list shows it
            if view.get("keepRuns"):
                keeping[view["name"]] = int(view["keepRuns"])
        self._keeping, self._read_at = keeping, (revision, len(kvs))
        return keeping

    async def _take_lease(self) -> bool:
        """Hold the lease (or renew it); False if another manager holds it. Its expiry is on
        MongoDB's clock, so managers' clocks need not agree."""
        expired = {"$expr": {"$lt": ["$until", "$$NOW"]}}  # a lease without one too
        lease_ms = int(self._lease_s * 1000)
        for _ in range(2):
            taken = await self._leases.update_one(
                {"_id": _LEASE_ID, "$or": [{"holder": self._holder}, expired]},
                [{"$set": {"holder": self._holder, "until": {"$add": ["$$NOW", lease_ms]}}}],
            )
            if taken.matched_count:
                self._renewed_at = time.monotonic()
                return True
            try:  # no lease document yet ($expr cannot go in an upsert): make an expired one
                await self._leases.insert_one({"_id": _LEASE_ID})
            except DuplicateKeyError:
                return False  # there is one, held by another manager
        return False

    async def _renew_lease(self) -> None:
        if time.monotonic() - self._renewed_at >= self._lease_s / 3:
            if not await self._take_lease():
                raise _LeaseLost

    async def _give_lease_back(self) -> None:
        try:
            await self._leases.delete_one({"_id": _LEASE_ID, "holder": self._holder})
        except PyMongoError as exc:  # it expires by itself
            log.info("log clean-up lease not given back (%s); it expires in %g s", exc,
                     self._lease_s)  # fmt: skip
