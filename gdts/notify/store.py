"""Where notifications live in MongoDB: the channels, the cluster's rules, the outbox of events
waiting to be told, and the state of each rule's stream of messages. The only module of the
notifier that talks to MongoDB.

Exactly once rests on the store, not on the code: every event has an id made from what it is
about (a run's job, planned time and attempt; a worker's lease), and the outbox's ``_id`` is
that id and the channel, so however many managers take the same run, one entry is queued."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from gdts.mongo import mongo_errors
from gdts.notify.channels import Channel
from gdts.notify.notice import Notice
from gdts.notify.policy import Batch, Queued, outbox_id
from gdts.notify.rules import DEFAULT_MIN_INTERVAL_S, Rule
from gdts.plans import to_ms
from gdts.runlog import COLLECTION
from gdts.runrecord import NOTIFY_PENDING

CHANNELS = "notify_channels"
SETTINGS = "notify_settings"
OUTBOX = "notify_outbox"
STREAMS = "notify_streams"
JOB_STATES = "notify_job_state"
_CLUSTER = "cluster"
_DUPLICATE_KEY = 11000
# What the notifier reads of a marked run: everything a message says, not the whole output.
_RUN_FIELDS = {"jobName": 1, "planTime": 1, "attempt": 1, "status": 1, "startTime": 1,
               "endTime": 1, "worker": 1, "exitCode": 1, "err": 1, "notify": 1,
               "output": {"$substrCP": [{"$ifNull": ["$output", ""]}, 0, 64 * 1024]}}  # fmt: skip


class NotifyStore:
    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, retention_s: int
    ) -> None:
        self._retention_s = retention_s  # how long a settled event stays in the outbox
        db = client[database]
        self._channels = db[CHANNELS]
        self._settings = db[SETTINGS]
        self._outbox = db[OUTBOX]
        self._streams = db[STREAMS]
        self._job_states = db[JOB_STATES]
        self._runs = db[COLLECTION]

    async def ensure_indexes(self) -> None:
        with mongo_errors():
            await self._outbox.create_index(
                [("state", ASCENDING), ("stream", ASCENDING), ("at", ASCENDING)], name="queue"
            )
            await self._outbox.create_index([("queuedAt", DESCENDING)], name="recent")
            # Sent and failed events go after a while; a queued one (no settledAt) never does.
            try:
                await self._settled_ttl()
            except OperationFailure:  # made before with another retention
                await self._outbox.drop_index("settled_ttl")
                await self._settled_ttl()

    async def _settled_ttl(self) -> None:
        await self._outbox.create_index(
            [("settledAt", ASCENDING)], name="settled_ttl", expireAfterSeconds=self._retention_s
        )

    # -- channels and the cluster's rules ---------------------------------------------------

    async def channels(self) -> list[Channel]:
        with mongo_errors():
            found = await self._channels.find({}).sort("_id", ASCENDING).to_list()
        return [Channel.from_document(d) for d in found]

    async def channel(self, name: str) -> Channel | None:
        with mongo_errors():
            found = await self._channels.find_one({"_id": name})
        return None if found is None else Channel.from_document(found)

    async def save_channel(self, channel: Channel) -> Channel | None:
        """Store the channel; returns the one it replaced."""
        document = channel.to_document()
        with mongo_errors():
            before = await self._channels.find_one_and_replace(
                {"_id": channel.name}, document, upsert=True
            )
        return None if before is None else Channel.from_document(before)

    async def delete_channel(self, name: str) -> Channel | None:
        with mongo_errors():
            before = await self._channels.find_one_and_delete({"_id": name})
        return None if before is None else Channel.from_document(before)

    async def missing_channels(self, names: Sequence[str]) -> list[str]:
        """Which of ``names`` no channel has, in the order given."""
        if not names:
            return []
        with mongo_errors():
            found = await self._channels.distinct("_id", {"_id": {"$in": list(names)}})
        return [name for name in names if name not in set(found)]

    async def cluster_rules(self) -> tuple[tuple[Rule, ...], float]:
        with mongo_errors():
            found = await self._settings.find_one({"_id": _CLUSTER})
        if found is None:
            return (), DEFAULT_MIN_INTERVAL_S
        rules = tuple(Rule(r["channel"], frozenset(r["on"])) for r in found.get("rules", []))
        return rules, float(found.get("minInterval", DEFAULT_MIN_INTERVAL_S))

    async def save_cluster_rules(self, rules: Sequence[Rule], min_interval_s: float) -> None:
        document = {"rules": [r.to_api() for r in rules], "minInterval": min_interval_s}
        with mongo_errors():
            await self._settings.replace_one({"_id": _CLUSTER}, document, upsert=True)

    # -- intake: the runs the workers marked ---------------------------------------------------

    async def marked_runs(self, limit: int) -> list[dict[str, Any]]:
        with mongo_errors():
            cursor = await self._runs.aggregate([
                {"$match": {NOTIFY_PENDING: True}},
                {"$sort": {NOTIFY_PENDING: 1, "endTime": 1}},
                {"$limit": limit},
                {"$project": _RUN_FIELDS},
            ])  # fmt: skip
            return await cursor.to_list()

    async def unmark_runs(self, runs: Sequence[dict[str, Any]]) -> None:
        """Unmark the runs as they were read: a record replaced meanwhile (a lost run written
        after all) keeps its new mark, for the next look."""
        updates = [
            UpdateOne({"_id": r["_id"], "status": r.get("status"), "endTime": r.get("endTime"),
                       NOTIFY_PENDING: True}, {"$unset": {NOTIFY_PENDING: ""}})
            for r in runs
        ]  # fmt: skip
        if updates:
            with mongo_errors():
                await self._runs.bulk_write(updates, ordered=False)

    async def failing_jobs(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The jobs' last seen outcome (for ``recovered``): name -> {failing, planTime}."""
        with mongo_errors():
            found = await self._job_states.find({"_id": {"$in": list(names)}}).to_list()
        return {d["_id"]: d for d in found}

    async def note_outcomes(self, outcomes: dict[str, tuple[bool, int]]) -> None:
        """Each job's latest outcome seen, unless a later planned run's is stored already."""
        with mongo_errors():
            for name, (failing, plan_ms) in outcomes.items():
                try:
                    await self._job_states.update_one(
                        {"_id": name, "$or": [{"planTime": {"$lte": plan_ms}},
                                              {"planTime": {"$exists": False}}]},
                        {"$set": {"failing": failing, "planTime": plan_ms}},
                        upsert=True,
                    )  # fmt: skip
                except DuplicateKeyError:
                    pass  # a later run's outcome is stored: it stands

    # -- the outbox ---------------------------------------------------------------------------

    async def enqueue(self, entries: Sequence[Queued], now: datetime) -> int:
        """Queue events; returns how many were new (the rest were queued before: by another
        manager, or by this one before it stopped halfway)."""
        if not entries:
            return 0
        documents = [_outbox_document(e, now) for e in entries]
        with mongo_errors():
            try:
                result = await self._outbox.insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if exc.details.get("writeConcernErrors") or any(
                    e.get("code") != _DUPLICATE_KEY for e in errors
                ):
                    raise
                return len(documents) - len(errors)
        return len(result.inserted_ids)

    async def streams_waiting(self) -> list[str]:
        with mongo_errors():
            return list(await self._outbox.distinct("stream", {"state": "queued"}))

    async def take_stream(
        self, stream: str, holder: str, now_ms: int, hold_ms: int
    ) -> dict[str, Any] | None:
        """The stream's state, taken for ``hold_ms`` by ``holder``; None if another holds it.
        One manager at a time sends a stream's message."""
        free = {"$or": [{"heldUntil": {"$lt": now_ms}}, {"heldUntil": {"$exists": False}}]}
        with mongo_errors():
            try:
                return await self._streams.find_one_and_update(
                    {"_id": stream, **free},
                    {"$set": {"heldUntil": now_ms + hold_ms, "heldBy": holder}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                return None  # it exists and is held

    async def release_stream(self, stream: str, holder: str, changes: dict[str, Any]) -> None:
        with mongo_errors():
            await self._streams.update_one(
                {"_id": stream, "heldBy": holder},
                {"$set": {**changes, "heldUntil": 0}, "$unset": {"heldBy": ""}},
            )

    async def queued_in(self, stream: str, limit: int = 100_000) -> Batch | None:
        """The stream's queued events: their ids and times (from the index alone), and the
        latest one whole; None if none is queued."""
        with mongo_errors():
            cursor = self._outbox.find({"state": "queued", "stream": stream}, {"at": 1})
            found = await cursor.sort("at", ASCENDING).limit(limit).to_list()
            if not found:
                return None
            latest = await self._outbox.find_one({"_id": found[-1]["_id"]})
        if latest is None:
            return None  # settled meanwhile by a manager whose hold ran out
        return Batch([d["_id"] for d in found], _queued(latest), int(found[0]["at"]))

    async def stream_states(self, streams: Sequence[str]) -> dict[str, dict[str, Any]]:
        """When each stream last sent, its tries and interval: who is due, without taking."""
        if not streams:
            return {}
        with mongo_errors():
            found = await self._streams.find({"_id": {"$in": list(streams)}}).to_list()
        return {d["_id"]: d for d in found}

    async def settle(self, ids: Sequence[str], state: str, now: datetime, **fields: Any) -> None:
        """Mark events sent (or failed for good), with what their message said."""
        with mongo_errors():
            await self._outbox.update_many(
                {"_id": {"$in": list(ids)}, "state": "queued"},
                {"$set": {"state": state, "settledAt": now, **fields}},
            )

    async def recent(self, limit: int, state: str | None = None) -> list[dict[str, Any]]:
        query = {} if state is None else {"state": state}
        with mongo_errors():
            cursor = self._outbox.find(query, {"notice.outputHead": 0, "notice.outputTail": 0})
            found = await cursor.sort("queuedAt", DESCENDING).limit(limit).to_list()
            # A queued event's tries so far are its stream's: shown with it, with the last error.
            waiting = list({d["stream"] for d in found if d.get("state") == "queued"})
            streams = {}
            if waiting:
                streams = {d["_id"]: d for d in await self._streams.find(
                    {"_id": {"$in": waiting}}, {"tries": 1, "lastError": 1, "nextTryAt": 1}
                ).to_list()}  # fmt: skip
        views = []
        for document in found:
            view = _entry_view(document)
            stream = streams.get(document["stream"]) if view["state"] == "queued" else None
            if stream is not None and stream.get("tries"):
                view.update(tries=stream["tries"], error=stream.get("lastError", ""),
                            nextTryAt=stream.get("nextTryAt"))  # fmt: skip
            views.append(view)
        return views

    async def count_by_state(self) -> dict[str, int]:
        counts = {}
        with mongo_errors():
            for state in ("queued", "sent", "failed"):  # each counted in the queue index
                counts[state] = await self._outbox.count_documents({"state": state})
        return {state: n for state, n in counts.items() if n}


def _outbox_document(entry: Queued, now: datetime) -> dict[str, Any]:
    return {
        "_id": outbox_id(entry.id, entry.channel),
        "event": entry.id,
        "stream": entry.stream,
        "channel": entry.channel,
        "notice": _camel(dataclasses.asdict(entry.notice)),
        "minInterval": entry.min_interval_s,
        "at": entry.at_ms,
        "state": "queued",
        "queuedAt": now,
    }


def _queued(document: dict[str, Any]) -> Queued:
    notice = _snake(document["notice"])
    for name in ("output_head", "output_tail"):
        notice[name] = tuple(notice.get(name) or ())
    return Queued(
        document["event"], document["stream"], document["channel"], Notice(**notice),
        float(document.get("minInterval", DEFAULT_MIN_INTERVAL_S)), int(document["at"]),
    )  # fmt: skip


def _entry_view(document: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in document.items() if k not in ("_id", "notice")}
    notice = document.get("notice", {})
    view["title"] = Notice(**{**_snake(notice), "output_head": (), "output_tail": ()}).title()
    view["kind"] = notice.get("event")  # failed, recovered, worker_offline, ...
    view["job"] = notice.get("job") or None
    view["worker"] = notice.get("worker") or None
    view["planTime"] = notice.get("planMs")  # the run it is about (none for a worker's)
    view["attempt"] = _attempt_of(str(document.get("event", "")))
    for key in ("queuedAt", "settledAt"):
        if isinstance(view.get(key), datetime):
            view[key] = to_ms(view[key])
    return view


def _attempt_of(event_id: str) -> int | None:
    """A run's event id ends with its attempt (``run/<job>/<planTime>/<attempt>``)."""
    head, _, last = event_id.rpartition("/")
    return int(last) if event_id.startswith("run/") and last.isdigit() else None


_CAMEL = {f.name: "".join(w.capitalize() if i else w for i, w in enumerate(f.name.split("_")))
          for f in dataclasses.fields(Notice)}  # fmt: skip
_SNAKE = {v: k for k, v in _CAMEL.items()}


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    return {_CAMEL[k]: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def _snake(fields: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE[k]: v for k, v in fields.items() if k in _SNAKE}
