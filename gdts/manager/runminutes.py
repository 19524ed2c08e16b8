"""The dashboard's rollups in MongoDB: each minute's runs (``run_minutes``, computed from the
run log's ``ended_at`` index) and each quarter hour's (``run_quarters``, merged from its
minutes: the day's window reads 96 of them, not 1,440 minutes), how far they are computed
(``rollup_progress``), the minutes late results changed (``run_minutes_dirty``, noted by
RunLog.insert) and the workers online each minute (``worker_minutes``). The rollups keep two
days (a TTL index)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, DeleteMany, UpdateOne

from gdts.mongo import mongo_errors
from gdts.plans import from_ms, to_ms
from gdts.runlog import COLLECTION, DIRTY_MINUTES, ENDED_AT
from gdts.runstats import (
    FAILING,
    LAG_BUCKETS,
    LAG_SCALE,
    MINUTE_MS,
    NO_LAG,
    MinuteRollup,
    assemble_minutes,
    split_by_team,
)

RUN_MINUTES = "run_minutes"
RUN_QUARTERS = "run_quarters"
WORKER_MINUTES = "worker_minutes"
PROGRESS = "rollup_progress"
KEEP_S = 2 * 86400  # the day's window, and a day of slack for a manager catching up
_AT = "at"  # a minute's start as a date: the TTL indexes read it

_MS = {"$toLong": "$" + ENDED_AT}
_LAG = {"$subtract": ["$startTime", "$planTime"]}
_STARTED = {
    "$and": [
        {"$not": [{"$in": ["$status", sorted(NO_LAG)]}]},
        {"$ne": [{"$ifNull": ["$startTime", None]}, None]},
    ]
}
# gdts.runstats.lag_bucket, in MongoDB.
_LAG_BUCKET = {
    "$cond": [
        {"$lt": ["$lag", 1]},
        0,
        {"$min": [LAG_BUCKETS - 1,
                  {"$add": [{"$floor": {"$multiply": [{"$ln": "$lag"}, LAG_SCALE]}}, 1]}]},
    ]
}  # fmt: skip


def _group(key: Any) -> list[dict[str, Any]]:
    return [
        {"$group": {"_id": {"minute": "$minute", "key": key}, "n": {"$sum": 1}}},
        {"$project": {"_id": 0, "minute": "$_id.minute", "key": "$_id.key", "n": 1}},
    ]


class RunMinutes:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._runs = client[database][COLLECTION]
        self._minutes = client[database][RUN_MINUTES]
        self._quarters = client[database][RUN_QUARTERS]
        self._workers = client[database][WORKER_MINUTES]
        self._progress = client[database][PROGRESS]
        self._dirty = client[database][DIRTY_MINUTES]

    async def ensure_indexes(self) -> None:
        with mongo_errors():
            for collection in (self._minutes, self._quarters, self._workers):
                await collection.create_index([(_AT, ASCENDING)], name="at_ttl",
                                              expireAfterSeconds=KEEP_S)  # fmt: skip

    async def compute(
        self,
        start_ms: int,
        end_ms: int,
        jobs: list[str] | None = None,
        team_of: Callable[[str], str | None] | None = None,
    ) -> dict[int, MinuteRollup]:
        """Every minute in [start_ms, end_ms) from the runs that ended in it (found through
        the ended_at index; each run read once); ``jobs``: only the runs of these jobs;
        ``team_of``: each minute also split by its jobs' teams (what the rollups keep, so a
        non-admin's dashboard reads its teams' parts instead of the run log)."""
        match: dict[str, Any] = {ENDED_AT: {"$gte": from_ms(start_ms), "$lt": from_ms(end_ms)}}
        if jobs is not None:
            match["jobName"] = {"$in": jobs}
        facets: dict[str, Any] = {
            "counts": _group("$status"),
            "lag": [{"$match": {"lag": {"$ne": None}}}, *_group(_LAG_BUCKET)],
            "failing": [{"$match": {"status": {"$in": sorted(FAILING)}}}, *_group("$jobName")],
        }
        if team_of is not None:
            facets["jobCounts"] = _group(["$jobName", "$status"])
            facets["jobLag"] = [{"$match": {"lag": {"$ne": None}}},
                                *_group(["$jobName", _LAG_BUCKET])]  # fmt: skip
        pipeline = [
            {"$match": match},
            {"$project": {
                "_id": 0, "status": 1, "jobName": 1,
                "minute": {"$subtract": [_MS, {"$mod": [_MS, MINUTE_MS]}]},
                "lag": {"$cond": [_STARTED, _LAG, None]},
            }},
            {"$facet": facets},
        ]  # fmt: skip
        with mongo_errors():
            # No hint: the planner takes ended_at for the range, and a hint would fail every
            # request until the managers made the index.
            cursor = await self._runs.aggregate(pipeline)
            (groups,) = await cursor.to_list()
        for row in groups["lag"]:
            row["key"] = int(row["key"])
        minutes = assemble_minutes(groups["counts"], groups["lag"], groups["failing"], start_ms,
                                   end_ms)  # fmt: skip
        if team_of is not None:
            for row in groups["jobLag"]:
                row["key"] = [row["key"][0], int(row["key"][1])]
            by_team = split_by_team(groups["jobCounts"], groups["jobLag"], groups["failing"],
                                    team_of, start_ms, end_ms)  # fmt: skip
            for team, its_minutes in by_team.items():
                for minute, part in its_minutes.items():
                    if part.counts:
                        minutes[minute].teams[team] = part
        return minutes

    async def first_end(self, since_ms: int) -> int | None:
        """When the first run that ended at or after ``since_ms`` ended (ended_at index)."""
        with mongo_errors():
            found = await self._runs.find_one(
                {ENDED_AT: {"$gte": from_ms(since_ms)}}, {ENDED_AT: 1}, sort=[(ENDED_AT, 1)]
            )
        return None if found is None else to_ms(found[ENDED_AT])

    async def store(
        self,
        start_ms: int,
        end_ms: int,
        minutes: Mapping[int, MinuteRollup],
        quarters: bool = False,
    ) -> None:
        """Write the minutes (or quarters) of [start_ms, end_ms) whole: managers computing the
        same one write the same thing. Those without runs are not kept (one computed again
        after its runs expired is removed), so a first pass over an empty day writes nothing."""
        kept = {m: r for m, r in minutes.items() if r.counts}
        writes: list[Any] = [
            UpdateOne(
                {"_id": from_ms(m)}, {"$set": {_AT: from_ms(m), **r.to_document()}}, upsert=True
            )
            for m, r in kept.items()
        ]
        span = {"$gte": from_ms(start_ms), "$lt": from_ms(end_ms)}
        writes.append(DeleteMany({"_id": {**span, "$nin": [from_ms(m) for m in kept]}}))
        with mongo_errors():
            await (self._quarters if quarters else self._minutes).bulk_write(writes, ordered=False)

    async def read(
        self, start_ms: int, end_ms: int, quarters: bool = False
    ) -> dict[int, MinuteRollup]:
        with mongo_errors():
            found = (
                await (self._quarters if quarters else self._minutes)
                .find({"_id": {"$gte": from_ms(start_ms), "$lt": from_ms(end_ms)}})
                .to_list()
            )
        return {to_ms(doc["_id"]): MinuteRollup.from_document(doc) for doc in found}

    async def rolled_up_to(self) -> int | None:
        """Every minute before this is in run_minutes (None: none computed yet)."""
        with mongo_errors():
            found = await self._progress.find_one({"_id": RUN_MINUTES})
        return None if found is None else to_ms(found["upTo"])

    async def advance(self, up_to_ms: int) -> None:
        with mongo_errors():
            await self._progress.update_one(
                {"_id": RUN_MINUTES}, {"$max": {"upTo": from_ms(up_to_ms)}}, upsert=True
            )

    async def dirty(self) -> list[tuple[int, int]]:
        """The minutes late results were written into: (minute, how many times noted)."""
        with mongo_errors():
            found = await self._dirty.find().to_list()
        return [(to_ms(doc["_id"]), int(doc["marks"])) for doc in found]

    async def clean(self, minute_ms: int, marks: int) -> None:
        """Forget a dirty minute, unless a late result was noted in it since it was read."""
        with mongo_errors():
            await self._dirty.delete_one({"_id": from_ms(minute_ms), "marks": marks})

    async def note_workers(self, minute_ms: int, online: int) -> None:
        """The workers online in a minute: the most any sample in it saw (several managers
        sample the same minute)."""
        with mongo_errors():
            await self._workers.update_one(
                {"_id": from_ms(minute_ms)},
                {"$max": {"online": online}, "$set": {_AT: from_ms(minute_ms)}},
                upsert=True,
            )

    async def workers_online(self, start_ms: int, end_ms: int) -> dict[int, int]:
        with mongo_errors():
            found = await self._workers.find(
                {"_id": {"$gte": from_ms(start_ms), "$lt": from_ms(end_ms)}}
            ).to_list()
        return {to_ms(doc["_id"]): int(doc["online"]) for doc in found}
