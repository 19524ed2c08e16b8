"""The manager's notifier: takes the runs the workers marked, queues their events in the
outbox, and tells each channel, one message per stream at a time; it also turns a worker's
registration coming and going (seen in etcd) into the cluster's events. Every manager runs one;
the store makes each event queued once and each message sent by one manager (see store).

Delivery never touches a run or a claim: workers only mark the runs' records, which they write
anyway, and everything else happens here, on the manager's side of MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from gdts.cancellation import end_if_cancelling
from gdts.clock import now_ms
from gdts.config import ManagerConfig
from gdts.errors import GdtsError
from gdts.etcd import (
    ETCD_ERRORS,
    EtcdClient,
    WatchCanceledError,
    WatchCompactedError,
    WatchSpec,
    read_prefix,
    watch_prefixes,
)
from gdts.keys import KeyLayout
from gdts.notify.channels import Channel
from gdts.notify.notice import TEST_EVENT, Notice
from gdts.notify.policy import (
    merged,
    retry_delay_ms,
    run_link,
    send_at_ms,
    take_runs,
    worker_events,
)
from gdts.notify.send import DeliveryError, deliver
from gdts.notify.store import NotifyStore

log = logging.getLogger(__name__)

INTAKE_BATCH = 500
_HOLD_MARGIN_MS = 30_000  # a stream stays taken this long past one delivery's timeout
_PARALLEL_STREAMS = 8
_WATCH_RETRY_S = (0.5, 5.0)


class NotifierStats:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "gdts_notifications_total",
            "Notification messages by channel type and result (sent, retry, failed).",
            ["type", "result"],
            registry=registry,
        )
        self.events_failed = Counter(
            "gdts_notification_events_failed_total",
            "Events given up after notifyMaxTries, recorded failed in the outbox.",
            registry=registry,
        )


class Notifier:
    def __init__(
        self,
        store: NotifyStore,
        etcd: EtcdClient,
        keys: KeyLayout,
        config: ManagerConfig,
        stats: NotifierStats,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._etcd = etcd
        self._keys = keys
        self._config = config
        self._stats = stats
        self._clock = clock
        self._holder = uuid.uuid4().hex  # who holds a stream: this manager's life
        self._ssl: ssl.SSLContext | None = None  # made when first needed (inert constructor)
        self._poll_s = config.notify_poll_interval / 1000
        self._indexed = False

    def _tls(self) -> ssl.SSLContext:
        """Whom SMTP and HTTPS receivers are checked against: the system's CAs, and the
        configured extra bundle."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            if self._config.notify_ca_file:
                self._ssl.load_verify_locations(self._config.notify_ca_file)
        return self._ssl

    async def send_test(self, channel: Channel) -> str:
        """A test message through ``channel`` now: "" if it arrived, else what failed."""
        notice = Notice(id=f"test/{channel.name}/{self._clock()}", event=TEST_EVENT)
        async with aiohttp.ClientSession() as session:
            try:
                await deliver(channel, notice, session=session, ssl_context=self._tls(),
                              timeout_s=self._config.notify_timeout / 1000,
                              now_ms=self._clock)  # fmt: skip
            except DeliveryError as exc:
                return exc.problem
        return ""

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; a step under way (a delivery, a MongoDB call) finishes first:
        an operation cancelled halfway can leave the MongoDB client unable to close."""
        async with aiohttp.ClientSession() as session:
            watching = asyncio.create_task(self._follow_workers())
            try:
                await asyncio.gather(
                    self._every_poll(self.take_marked_runs, stop),
                    self._every_poll(lambda: self.deliver_due(session, stop), stop),
                )
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching

    async def _every_poll(self, step: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await step()
            except Exception as exc:  # a store that does not answer: again at the next poll
                end_if_cancelling(exc)
                if isinstance(exc, GdtsError):
                    log.warning("notifier: %s", exc)
                else:
                    log.exception("notifier: a step failed; again at the next poll")
                busy = 0
            end_if_cancelling()  # an answer after a swallowed cancellation
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    async def take_marked_runs(self) -> int:
        """One batch of marked runs into the outbox; returns how many runs it took."""
        if not self._indexed:
            await self._store.ensure_indexes()
            self._indexed = True
        runs = await self._store.marked_runs(INTAKE_BATCH)
        if not runs:
            return 0
        names = sorted({r["jobName"] for r in runs})
        states = await self._store.failing_jobs(names)
        failing = {name: bool(state.get("failing")) for name, state in states.items()}
        public_url = self._config.public_url
        intake = take_runs(runs, failing, lambda run: run_link(public_url, run))
        # Queued before unmarked: a manager that stops in between leaves the runs marked, and
        # the next look queues nothing twice (the outbox's ids).
        await self._store.enqueue(intake.queued, datetime.now(UTC))
        await self._store.note_outcomes(intake.outcomes)
        await self._store.unmark_runs(runs)
        return len(runs) if len(runs) == INTAKE_BATCH else 0

    async def deliver_due(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> int:
        """Send every stream whose time has come (none once ``stop`` is set); returns 0 (the
        next look is a poll away). A stream held back by its interval or a retry's backoff is
        not even taken."""
        now = self._clock()
        waiting = await self._store.streams_waiting()
        states = await self._store.stream_states(waiting)
        due = [s for s in waiting if now >= send_at_ms(states.get(s, {}), _interval(states, s))]
        gate = asyncio.Semaphore(_PARALLEL_STREAMS)

        async def one(stream: str) -> None:
            async with gate:
                if stop.is_set():
                    return  # stopping: a delivery not begun is left for the next manager
                try:
                    await self._deliver_stream(stream, session)
                except Exception as exc:  # one stream's trouble is not every stream's
                    end_if_cancelling(exc)
                    if isinstance(exc, GdtsError):
                        log.warning("notifier: stream %s: %s", stream, exc)
                    else:
                        log.exception("notifier: stream %s failed", stream)

        async with asyncio.TaskGroup() as group:
            for stream in due:
                group.create_task(one(stream))
        return 0

    async def _deliver_stream(self, stream: str, session: aiohttp.ClientSession) -> None:
        now = self._clock()
        hold = self._config.notify_timeout + _HOLD_MARGIN_MS
        state = await self._store.take_stream(stream, self._holder, now, hold)
        if state is None:
            return  # another manager is on it
        changes: dict[str, object] = {}
        try:
            batch = await self._store.queued_in(stream)
            if batch is None:
                return
            changes["minInterval"] = batch.latest.min_interval_s
            if now < send_at_ms(state, batch.latest.min_interval_s):
                return
            channel = await self._store.channel(batch.latest.channel)
            if channel is None:
                error = f"no channel named {batch.latest.channel!r}"
                await self._store.settle(batch.ids, "failed", datetime.now(UTC), error=error)
                self._stats.events_failed.inc(len(batch.ids))
                return
            notice = merged(batch)
            problem = await self._send(channel, notice, session)
            if problem is None:
                sent = self._clock()
                await self._store.settle(batch.ids, "sent", datetime.now(UTC), message=notice.id,
                                         standsFor=len(batch.ids))  # fmt: skip
                self._stats.messages.labels(channel.type, "sent").inc()
                changes |= {"lastSentAt": sent, "tries": 0, "nextTryAt": 0, "lastError": ""}
                return
            tries = int(state.get("tries") or 0) + 1
            changes |= {"lastError": problem}
            if tries >= self._config.notify_max_tries:
                log.error("notification to %s given up after %d tries: %s", channel.name, tries,
                          problem)  # fmt: skip
                await self._store.settle(batch.ids, "failed", datetime.now(UTC), error=problem,
                                         tries=tries)  # fmt: skip
                self._stats.messages.labels(channel.type, "failed").inc()
                self._stats.events_failed.inc(len(batch.ids))
                changes |= {"tries": 0, "nextTryAt": 0}
            else:
                log.warning("notification to %s not delivered (try %d): %s", channel.name, tries,
                            problem)  # fmt: skip
                self._stats.messages.labels(channel.type, "retry").inc()
                delay = retry_delay_ms(tries, self._config.notify_retry_backoff,
                                       self._config.notify_retry_max_backoff)  # fmt: skip
                changes |= {"tries": tries, "nextTryAt": now + delay}
        finally:
            with contextlib.suppress(GdtsError):
                await asyncio.shield(self._store.release_stream(stream, self._holder, changes))

    async def _send(
        self, channel: Channel, notice: Notice, session: aiohttp.ClientSession
    ) -> str | None:
        """None once the vendor took it; else what failed (a try that counts)."""
        try:
            await deliver(channel, notice, session=session,
                          timeout_s=self._config.notify_timeout / 1000,
                          ssl_context=self._tls(), now_ms=self._clock)  # fmt: skip
        except DeliveryError as exc:
            return exc.problem
        except Exception as exc:  # a bug of ours must not wedge the stream: it is tried again
            end_if_cancelling(exc)
            log.exception("notification to %s failed", channel.name)
            return f"internal error: {type(exc).__name__}"
        return None

    async def _follow_workers(self) -> None:
        """A registration created: worker_online; deleted without the worker's leaving mark
        (its lease expired: killed, frozen, cut off): worker_offline."""
        prefix = self._keys.workers_prefix
        start = 0
        pause = _WATCH_RETRY_S[0]
        while True:
            try:
                if not start:
                    _, revision = await read_prefix(self._etcd, prefix, limit=1)
                    start = revision + 1
                spec = WatchSpec(prefix, start, prev_kv=True)
                async for event in watch_prefixes(self._etcd, [spec]):
                    created = event.mod_revision == event.create_revision
                    await self._worker_event(
                        event.key, event.value, event.lease, event.deleted, created
                    )
                    # This revision again on a resume: an event of it not yet queued is seen
                    # again, and one queued already is queued once (its id).
                    start = event.mod_revision
                    pause = _WATCH_RETRY_S[0]
            except WatchCompactedError as exc:  # too far behind: from now on
                log.warning("notifier: worker watch starts over (%s)", exc)
                start = 0
            except (*ETCD_ERRORS, GdtsError, WatchCanceledError) as exc:
                end_if_cancelling(exc)
                log.info("notifier: worker watch interrupted (%r); resuming", exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _WATCH_RETRY_S[1])

    async def _worker_event(
        self, key: bytes, value: bytes, lease: int, deleted: bool, created: bool
    ) -> None:
        if not deleted and not created:
            return  # an update (atCapacity)
        if deleted and _leaving(value):
            return  # a clean stop says so before it goes
        worker = self._keys.worker_id(key)
        event = "worker_offline" if deleted else "worker_online"
        rules, min_interval = await self._store.cluster_rules()
        queued = worker_events(worker, lease, event, self._clock(), rules, min_interval)
        if queued:
            await self._store.enqueue(queued, datetime.now(UTC))
            log.info("%s: %s", event, worker)


def _interval(states: dict[str, dict[str, object]], stream: str) -> float:
    value = states.get(stream, {}).get("minInterval")
    return float(value) if isinstance(value, int | float) else 0.0


def _leaving(value: bytes) -> bool:
    try:
        return bool(json.loads(value).get("leaving"))
    except (ValueError, AttributeError):
        return False
