"""Keeps the worker's view of the cluster current: jobs, kill markers, live workers, run
requests, and the running markers of the buckets this worker looks after.

One consistent read of ``jobs/``, ``workers/``, the running markers and the run requests (each
paged at a single revision), then watch streams from the revision after each read, so no change
in between is lost: one for the cluster's control keys, one for the running markers of this
worker's buckets (a watch per bucket). When the stream breaks the watch resumes from the next
revision it has not seen, per prefix; when that revision has been compacted away, it reads
everything again. When the worker's buckets change (a worker joined or left), the running
markers are read again, with the tick claims, and the new buckets followed from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gdts.errors import GdtsError, InvalidFieldError
from gdts.etcd import (
    ETCD_ERRORS,
    EtcdClient,
    WatchCanceledError,
    WatchCompactedError,
    WatchEvent,
    WatchSpec,
    read_prefix,
    scan_prefix,
    watch_prefixes,
)
from gdts.job import Job
from gdts.keys import KeyLayout, KillOrder, RunningKey, read_kill_marker
from gdts.routing import Candidate, read_card, registration_info
from gdts.worker.partition import runs_of

if TYPE_CHECKING:
    from aetcd import rpc

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
_JOBS, _KILLER, _WORKERS, _RUNNING, _RUN_REQUESTS = range(5)
_CONTROL = (_JOBS, _KILLER, _WORKERS, _RUN_REQUESTS)
YIELD_EVERY = 1000  # jobs decoded or scheduled between two yields to the event loop


class ClusterListener(Protocol):
    async def jobs_reset(self, jobs: list[Job]) -> None: ...
    def job_saved(self, job: Job) -> None: ...
    def job_deleted(self, name: str) -> None: ...
    def kill_requested(self, name: str, order: KillOrder) -> None: ...
    def workers_reset(self, workers: dict[str, int], cards: dict[str, Candidate]) -> None: ...
    def worker_registered(self, worker_id: str, lease: int, card: Candidate) -> None: ...
    def worker_gone(self, worker_id: str, lease: int, revision: int) -> None: ...
    def buckets(self) -> frozenset[int]: ...
    def running_marker_gone(self, marker: RunningKey) -> None: ...
    async def running_reset(
        self, markers: list[tuple[RunningKey, bytes]], claims: list[tuple[str, int, int]]
    ) -> None: ...
    def running_marker_put(self, marker: RunningKey, value: bytes) -> None: ...
    def run_requests_reset(self, requests: list[tuple[str, int, bytes, bytes]]) -> None: ...
    def run_requested(self, job_name: str, requested_ms: int, key: bytes, value: bytes) -> None: ...
    def run_request_gone(self, key: bytes) -> None: ...


class ClusterWatch:
    def __init__(self, client: EtcdClient, keys: KeyLayout, listener: ClusterListener) -> None:
        self._client = client
        self._keys = keys
        self._listener = listener
        self.synced = asyncio.Event()  # set once the first full read is applied
        self._rescoped = asyncio.Event()  # the listener's buckets changed
        self.full_reads = 0
        self.interruptions = 0
        self.marker_reads = 0  # the running markers read again for new buckets

    def rescope(self) -> None:
        """The listener's buckets changed: follow the running markers of the new ones."""
        self._rescoped.set()

    async def run(self) -> None:
        backoff = _RETRY_MIN_S
        while True:
            try:
                with _no_collection_while_loading():
                    next_revisions = await self._read_all()
            except (*ETCD_ERRORS, GdtsError) as exc:
                self.interruptions += 1
                log.warning("cannot read the cluster (%s); again in %.1fs", _brief(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)
                continue
            backoff = _RETRY_MIN_S
            try:
                async with asyncio.TaskGroup() as group:
                    # Job changes get a stream (and a task) of their own, so a delete never
                    # queues behind the running markers' two events per run.
                    group.create_task(
                        self._stream(functools.partial(self._follow_control, next_revisions))
                    )
                    group.create_task(self._runs(next_revisions[_RUNNING]))
            except* (WatchCompactedError, WatchCanceledError) as group:
                log.warning("cluster watch must start over: %s", group.exceptions[0])

    async def _stream(self, follow: Callable[[], Awaitable[None]]) -> None:
        """Follow some prefixes forever, resuming from the revisions seen after a broken stream;
        compaction or cancellation is raised for ``run`` to read everything again."""
        backoff = _RETRY_MIN_S
        while True:
            try:
                await follow()
                await asyncio.sleep(_RETRY_MIN_S)  # ended cleanly: resume, but never spin
                backoff = _RETRY_MIN_S
            except (*ETCD_ERRORS, GdtsError) as exc:
                self.interruptions += 1
                log.warning(
                    "cluster watch interrupted (%s); resuming in %.1fs", _brief(exc), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _runs(self, next_revision: int) -> None:
        """Follow the running markers of the listener's buckets from ``next_revision``; when
        its buckets change, read the markers and claims again and follow the new buckets."""
        self._rescoped.clear()  # the read before this one applied the listener's buckets
        while True:
            runs = runs_of(self._listener.buckets())
            next_by_run = [next_revision] * len(runs)
            follow = asyncio.create_task(
                self._stream(functools.partial(self._follow_runs, runs, next_by_run))
            )
            rescoped = asyncio.create_task(self._rescoped.wait())
            try:
                await asyncio.wait({follow, rescoped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (follow, rescoped):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rescoped
                with contextlib.suppress(asyncio.CancelledError):
                    await follow  # raises what ended it (compaction: ``run`` reads again)
            # Before the read: buckets that change during it are read again after it.
            self._rescoped.clear()
            next_revision = await self._read_runs()

    async def _read_runs(self) -> int:
        """The running markers and the tick claims, read again; returns the revision to
        follow the markers from."""
        backoff = _RETRY_MIN_S
        while True:
            try:
                running_kvs, revision = await read_prefix(self._client, self._keys.running_prefix)
                claim_kvs, _ = await read_prefix(
                    self._client, self._keys.tick_claim_prefix, keys_only=True
                )
                break
            except (*ETCD_ERRORS, GdtsError) as exc:
                self.interruptions += 1
                log.warning("cannot read the running markers (%s); again in %.1fs",
                            _brief(exc), backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)
        claims = []
        for kv in claim_kvs:
            with contextlib.suppress(ValueError):
                claims.append(self._keys.tick_claim_parts(kv.key))
        self.marker_reads += 1
        await self._listener.running_reset(self._markers(running_kvs), claims)
        return revision + 1

    def _markers(self, kvs: list[Any]) -> list[tuple[RunningKey, bytes]]:
        markers, foreign = [], []
        for kv in kvs:
            try:
                markers.append((self._keys.running_parts(kv.key), kv.value))
            except ValueError:
                foreign.append(kv.key)
        if foreign:
            # Workers of the layout before buckets write lock/running/<name>@<gen>: neither
            # kind sees the other's runs, so a job could run on both at once.
            log.error("%d running marker(s) not of this version's layout, e.g. %r: a worker of "
                      "an older version is running; stop every worker before starting this "
                      "version", len(foreign), foreign[0])  # fmt: skip
        return markers

    async def _read_all(self) -> list[int]:
        keys = self._keys
        jobs: list[Job] = []

        async def decode(page: Sequence[rpc.KeyValue], first: bool) -> None:
            # A page at a time: a million records are never all held at once beside their jobs.
            if first:
                jobs.clear()
            for index, kv in enumerate(page):
                job = self._decode(kv.key, kv.value, kv.mod_revision, kv.create_revision)
                if job is not None:
                    jobs.append(job)
                if index % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # 100,000 jobs must not stall lease renewals

        jobs_revision = await scan_prefix(self._client, keys.jobs_prefix, decode)
        worker_kvs, workers_revision = await read_prefix(self._client, keys.workers_prefix)
        running_kvs, running_revision = await read_prefix(self._client, keys.running_prefix)
        request_kvs, requests_revision = await read_prefix(self._client, keys.run_prefix)
        workers = {}
        cards = {}
        for kv in worker_kvs:
            with contextlib.suppress(ValueError):
                worker_id = keys.worker_id(kv.key)
                workers[worker_id] = kv.lease
                cards[worker_id] = card_of(worker_id, kv.value)
        requests = []
        for kv in request_kvs:
            with contextlib.suppress(ValueError):
                requests.append((*keys.run_request_parts(kv.key), kv.key, kv.value))
        # The workers first: they say which of the jobs this worker schedules.
        self._listener.workers_reset(workers, cards)
        await self._listener.jobs_reset(jobs)
        await self._listener.running_reset(self._markers(running_kvs), [])
        self._listener.run_requests_reset(requests)
        self.full_reads += 1
        self.synced.set()
        log.info("loaded %d jobs and %d workers at revision %d", len(jobs), len(workers),
                 jobs_revision)  # fmt: skip
        # Kill markers older than the read do not matter: nothing of theirs runs here yet.
        return [
            jobs_revision + 1,
            jobs_revision + 1,
            workers_revision + 1,
            running_revision + 1,
            requests_revision + 1,
        ]

    async def _follow_control(self, next_revisions: list[int]) -> None:
        keys = self._keys
        specs = {
            _JOBS: WatchSpec(keys.jobs_prefix, next_revisions[_JOBS]),
            _KILLER: WatchSpec(keys.killer_prefix, next_revisions[_KILLER]),
            _WORKERS: WatchSpec(keys.workers_prefix, next_revisions[_WORKERS], prev_kv=True),
            _RUN_REQUESTS: WatchSpec(keys.run_prefix, next_revisions[_RUN_REQUESTS]),
        }
        async for event in watch_prefixes(self._client, [specs[kind] for kind in _CONTROL]):
            kind = _CONTROL[event.spec_index]
            next_revisions[kind] = event.mod_revision + 1
            try:
                self._dispatch(kind, event)
            except ValueError as exc:  # a key that does not belong to this layout
                log.warning("ignoring %s", exc)

    async def _follow_runs(self, runs: list[tuple[int, int]], next_by_run: list[int]) -> None:
        """Follow the running markers of runs of adjacent buckets, one watch per run."""
        if not runs:
            await asyncio.Event().wait()  # nothing to follow until the buckets change
        keys, listener = self._keys, self._listener
        specs = []
        for index, (first, end) in enumerate(runs):
            key, range_end = keys.running_buckets_range(first, end)
            specs.append(WatchSpec(key, next_by_run[index], range_end=range_end))
        async for event in watch_prefixes(self._client, specs):
            next_by_run[event.spec_index] = event.mod_revision + 1
            try:
                marker = keys.running_parts(event.key)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            # Without prev_kv: a delete names the key alone, and etcd reads no old revision
            # for it (which runs died with their worker is read once per death: deadruns).
            if event.deleted:
                listener.running_marker_gone(marker)
            else:
                listener.running_marker_put(marker, event.value)

    def _dispatch(self, kind: int, event: WatchEvent) -> None:
        keys, listener = self._keys, self._listener
        if kind == _JOBS:
            name = keys.job_name(event.key)
            if event.deleted:
                listener.job_deleted(name)
            elif (
                job := self._decode(
                    event.key, event.value, event.mod_revision, event.create_revision
                )
            ) is not None:
                listener.job_saved(job)
            else:
                # Unreadable value: stop running whatever was there rather than a stale copy.
                listener.job_deleted(name)
        elif kind == _KILLER:
            if not event.deleted:
                listener.kill_requested(keys.killer_name(event.key), read_kill_marker(event.value))
        elif kind == _RUN_REQUESTS:
            if event.deleted:
                listener.run_request_gone(event.key)
            else:
                listener.run_requested(*keys.run_request_parts(event.key), event.key, event.value)
        elif kind == _WORKERS:
            worker_id = keys.worker_id(event.key)
            if event.deleted:
                listener.worker_gone(worker_id, event.lease, event.mod_revision)
            else:
                listener.worker_registered(worker_id, event.lease, card_of(worker_id, event.value))

    def _decode(self, key: bytes, value: bytes, revision: int, generation: int) -> Job | None:
        try:
            name = self._keys.job_name(key)
            job = Job.from_record(value, revision=revision, generation=generation)
        except (InvalidFieldError, ValueError) as exc:
            log.error("ignoring job at %r: %s", key.decode(errors="replace"), exc)
            return None
        if job.name != name:
            log.error("ignoring job at %r: its record names %r", key.decode(errors="replace"),
                      job.name)  # fmt: skip
            return None
        return job


@contextlib.contextmanager
def _no_collection_while_loading() -> Iterator[None]:
    """A million jobs are millions of new objects: the cycle collector would walk all of them
    again and again while they are made (a fifth of the load time). They form no cycles (their
    memory goes back when their last reference does), so it waits until they are made, and then
    leaves them out of its later walks (gc.freeze), which keeps an idle worker idle."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def card_of(worker_id: str, registration: bytes) -> Candidate:
    """What a worker's registration says routing needs: labels, weight, load, capacity."""
    return read_card(worker_id, registration_info(registration))
