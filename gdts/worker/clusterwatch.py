"""Keeps the worker's view of the cluster current: jobs, kill markers, live workers, running
markers and run requests.

One consistent read of ``jobs/``, ``workers/`` and the running markers (each paged at a single
revision), then one
watch stream from the revision after each read, so no change in between is lost. When the stream
breaks the watch resumes from the next revision it has not seen, per prefix; when that revision
has been compacted away, it reads everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Protocol

from gdts.errors import GdtsError, InvalidFieldError
from gdts.etcd import (
    ETCD_ERRORS,
    EtcdClient,
    WatchCanceledError,
    WatchCompactedError,
    WatchEvent,
    WatchSpec,
    read_prefix,
    watch_prefixes,
)
from gdts.job import Job
from gdts.keys import KeyLayout, KillOrder, RunningKey, read_kill_marker

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
_JOBS, _KILLER, _WORKERS, _RUNNING, _RUN_REQUESTS = range(5)
_CONTROL = (_JOBS, _KILLER, _WORKERS, _RUN_REQUESTS)
_RUNS = (_RUNNING,)
YIELD_EVERY = 1000  # jobs decoded or scheduled between two yields to the event loop


class ClusterListener(Protocol):
    async def jobs_reset(self, jobs: list[Job]) -> None: ...
    def job_saved(self, job: Job) -> None: ...
    def job_deleted(self, name: str) -> None: ...
    def kill_requested(self, name: str, order: KillOrder) -> None: ...
    def workers_reset(self, workers: dict[str, int], full: set[str]) -> None: ...
    def worker_registered(self, worker_id: str, lease: int, at_capacity: bool) -> None: ...
    def worker_gone(self, worker_id: str, lease: int, revision: int) -> None: ...
    def running_marker_gone(self, marker: RunningKey) -> None: ...
    def running_reset(self, markers: list[tuple[RunningKey, bytes]]) -> None: ...
    def running_marker_put(self, marker: RunningKey, value: bytes) -> None: ...
    def run_requests_reset(self, requests: list[tuple[str, int, bytes]]) -> None: ...
    def run_requested(self, job_name: str, requested_ms: int, key: bytes) -> None: ...
    def run_request_gone(self, key: bytes) -> None: ...


class ClusterWatch:
    def __init__(self, client: EtcdClient, keys: KeyLayout, listener: ClusterListener) -> None:
        self._client = client
        self._keys = keys
        self._listener = listener
        self.synced = asyncio.Event()  # set once the first full read is applied
        self.full_reads = 0
        self.interruptions = 0

    async def run(self) -> None:
        backoff = _RETRY_MIN_S
        while True:
            try:
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
                    group.create_task(self._stream(_CONTROL, next_revisions))
                    group.create_task(self._stream(_RUNS, next_revisions))
            except* (WatchCompactedError, WatchCanceledError) as group:
                log.warning("cluster watch must start over: %s", group.exceptions[0])

    async def _stream(self, kinds: tuple[int, ...], next_revisions: list[int]) -> None:
        """Follow some prefixes forever, resuming from the revisions seen after a broken stream;
        compaction or cancellation is raised for ``run`` to read everything again."""
        backoff = _RETRY_MIN_S
        while True:
            try:
                await self._follow(kinds, next_revisions)
                await asyncio.sleep(_RETRY_MIN_S)  # ended cleanly: resume, but never spin
                backoff = _RETRY_MIN_S
            except (*ETCD_ERRORS, GdtsError) as exc:
                self.interruptions += 1
                log.warning(
                    "cluster watch interrupted (%s); resuming in %.1fs", _brief(exc), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _read_all(self) -> list[int]:
        keys = self._keys
        job_kvs, jobs_revision = await read_prefix(self._client, keys.jobs_prefix)
        worker_kvs, workers_revision = await read_prefix(self._client, keys.workers_prefix)
        running_kvs, running_revision = await read_prefix(self._client, keys.running_prefix)
        request_kvs, requests_revision = await read_prefix(self._client, keys.run_prefix)
        jobs = []
        for index, kv in enumerate(job_kvs):
            job = self._decode(kv.key, kv.value, kv.mod_revision, kv.create_revision)
            if job is not None:
                jobs.append(job)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # 100,000 jobs must not stall lease renewals
        workers, markers = {}, []
        full = set()
        for kv in worker_kvs:
            with contextlib.suppress(ValueError):
                worker_id = keys.worker_id(kv.key)
                workers[worker_id] = kv.lease
                if at_capacity(kv.value):
                    full.add(worker_id)
        for kv in running_kvs:
            with contextlib.suppress(ValueError):
                markers.append((keys.running_parts(kv.key), kv.value))
        requests = []
        for kv in request_kvs:
            with contextlib.suppress(ValueError):
                requests.append((*keys.run_request_parts(kv.key), kv.key))
        await self._listener.jobs_reset(jobs)
        self._listener.workers_reset(workers, full)
        self._listener.running_reset(markers)
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

    async def _follow(self, kinds: tuple[int, ...], next_revisions: list[int]) -> None:
        keys = self._keys
        all_specs = {
            _JOBS: WatchSpec(keys.jobs_prefix, next_revisions[_JOBS]),
            _KILLER: WatchSpec(keys.killer_prefix, next_revisions[_KILLER]),
            _WORKERS: WatchSpec(keys.workers_prefix, next_revisions[_WORKERS], prev_kv=True),
            _RUNNING: WatchSpec(keys.running_prefix, next_revisions[_RUNNING]),
            _RUN_REQUESTS: WatchSpec(keys.run_prefix, next_revisions[_RUN_REQUESTS]),
        }
        specs = [all_specs[kind] for kind in kinds]
        async for event in watch_prefixes(self._client, specs):
            kind = kinds[event.spec_index]
            next_revisions[kind] = event.mod_revision + 1
            try:
                self._dispatch(kind, event)
            except ValueError as exc:  # a key that does not belong to this layout
                log.warning("ignoring %s", exc)

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
                listener.run_requested(*keys.run_request_parts(event.key), event.key)
        elif kind == _WORKERS:
            worker_id = keys.worker_id(event.key)
            if event.deleted:
                listener.worker_gone(worker_id, event.lease, event.mod_revision)
            else:
                listener.worker_registered(worker_id, event.lease, at_capacity(event.value))
        else:
            marker = keys.running_parts(event.key)
            # Without prev_kv: a delete names the key alone, and etcd reads no old revision
            # for it (which runs died with their worker is read once per death: deadruns).
            if event.deleted:
                listener.running_marker_gone(marker)
            else:
                listener.running_marker_put(marker, event.value)

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


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def at_capacity(registration: bytes) -> bool:
    """Whether a worker's registration says it runs its maxConcurrentRuns already."""
    try:
        info = json.loads(registration)
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("atCapacity") is True
