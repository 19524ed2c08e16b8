"""Keeps the worker's view of ``jobs/`` and ``killer/`` current.

One consistent read (paged at a single revision), then a watch on both prefixes from the revision
after that read, so no change between the read and the watch is lost. When the stream breaks the
watch resumes from the next revision it has not seen, per prefix; when that revision has been
compacted away, it reads everything again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gdts.errors import GdtsError, InvalidFieldError
from gdts.etcd import (
    ETCD_ERRORS,
    EtcdClient,
    WatchCanceledError,
    WatchCompactedError,
    read_prefix,
    watch_prefixes,
)
from gdts.job import Job
from gdts.keys import KeyLayout

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
_JOBS, _KILLER = 0, 1


class JobListener(Protocol):
    def jobs_reset(self, jobs: list[Job]) -> None: ...
    def job_saved(self, job: Job) -> None: ...
    def job_deleted(self, name: str) -> None: ...
    def kill_requested(self, name: str) -> None: ...


class JobSync:
    def __init__(self, client: EtcdClient, keys: KeyLayout, listener: JobListener) -> None:
        self._client = client
        self._keys = keys
        self._listener = listener
        self.synced = asyncio.Event()  # set once the first full read is applied
        self.resyncs = 0

    async def run(self) -> None:
        next_revisions: list[int] | None = None
        backoff = _RETRY_MIN_S
        while True:
            try:
                if next_revisions is None:
                    next_revisions = await self._read_all()
                await self._follow(next_revisions)
                backoff = _RETRY_MIN_S  # the stream ended cleanly: resume at once
            except (WatchCompactedError, WatchCanceledError) as exc:
                log.warning("job watch must start over: %s", exc)
                next_revisions = None
            except (*ETCD_ERRORS, GdtsError) as exc:
                log.warning("job watch interrupted (%s); resuming in %.1fs", _brief(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _read_all(self) -> list[int]:
        kvs, revision = await read_prefix(self._client, self._keys.jobs_prefix)
        jobs = [job for kv in kvs if (job := self._decode(kv.key, kv.value)) is not None]
        self._listener.jobs_reset(jobs)
        self.resyncs += 1
        self.synced.set()
        log.info("loaded %d jobs at revision %d", len(jobs), revision)
        return [revision + 1, revision + 1]

    async def _follow(self, next_revisions: list[int]) -> None:
        prefixes = [self._keys.jobs_prefix, self._keys.killer_prefix]
        async for event in watch_prefixes(self._client, prefixes, list(next_revisions)):
            next_revisions[event.prefix_index] = event.mod_revision + 1
            is_job = event.prefix_index == _JOBS
            try:
                name = (self._keys.job_name if is_job else self._keys.killer_name)(event.key)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            if not is_job:
                if not event.deleted:
                    self._listener.kill_requested(name)
            elif event.deleted:
                self._listener.job_deleted(name)
            elif (job := self._decode(event.key, event.value)) is not None:
                self._listener.job_saved(job)
            else:
                # Unreadable value: stop running whatever was there rather than a stale copy.
                self._listener.job_deleted(name)

    def _decode(self, key: bytes, value: bytes) -> Job | None:
        try:
            name = self._keys.job_name(key)
            job = Job.from_record(value)
        except (InvalidFieldError, ValueError) as exc:
            log.error("ignoring job at %r: %s", key.decode(errors="replace"), exc)
            return None
        if job.name != name:
            log.error(
                "ignoring job at %r: its record names %r", key.decode(errors="replace"), job.name
            )
            return None
        return job


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
