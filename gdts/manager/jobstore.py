"""The manager's side of etcd: jobs, kill markers and the worker registry."""

from __future__ import annotations

import json
import logging
from typing import Any

from gdts.errors import InvalidFieldError
from gdts.etcd import EtcdClient, etcd_errors, read_prefix
from gdts.job import Job, api_view
from gdts.keys import KeyLayout

log = logging.getLogger(__name__)


class JobStore:
    def __init__(self, client: EtcdClient, keys: KeyLayout, kill_marker_ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._kill_marker_ttl = kill_marker_ttl

    async def save(self, job: Job) -> dict[str, Any] | None:
        """Create or replace; returns the previous job (API form) or None."""
        with etcd_errors():
            reply = await self._client.put(self._keys.job(job.name), job.to_record(), prev_kv=True)
        return _previous(_value_of(reply.prev_kv))

    async def delete(self, name: str) -> dict[str, Any] | None:
        with etcd_errors():
            reply = await self._client.delete(self._keys.job(name), prev_kv=True)
        return _previous(_value_of(reply.prev_kv) if reply else None)

    async def list(
        self, after: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Jobs in name order; ``after`` and ``limit`` page through them."""
        with etcd_errors():
            kvs, _ = await read_prefix(
                self._client,
                self._keys.jobs_prefix,
                start_after=None if after is None else self._keys.job(after),
                limit=limit,
            )
        jobs = []
        for kv in kvs:
            try:
                jobs.append(api_view(kv.value))
            except InvalidFieldError as exc:
                log.error("skipping unreadable job at %r: %s", kv.key, exc)
        return jobs

    async def kill(self, name: str) -> None:
        """Every worker watches ``killer/``; the marker's lease removes it after a few seconds."""
        with etcd_errors():
            lease = await self._client.lease(self._kill_marker_ttl)
            await self._client.put(self._keys.killer(name), b"", lease=lease)

    async def workers(self) -> list[dict[str, Any]]:
        with etcd_errors():
            kvs, _ = await read_prefix(self._client, self._keys.workers_prefix)
        workers = []
        for kv in kvs:
            try:
                info = json.loads(kv.value)
            except ValueError:
                info = {}
            if not isinstance(info, dict):
                info = {}
            info.setdefault("id", kv.key[len(self._keys.workers_prefix) :].decode())
            workers.append(info)
        return workers

    async def ping(self) -> None:
        with etcd_errors():
            await self._client.get(self._keys.jobs_prefix)


def _value_of(kv: Any) -> bytes | None:
    # aetcd wraps an absent prev_kv as an empty KeyValue; a real key always has create_revision.
    return kv.value if kv is not None and kv.create_revision else None


def _previous(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return Job.from_record(raw).to_api()
    except InvalidFieldError:
        # The old value was not a job we can read; report it raw rather than fail the write.
        return {"raw": raw.decode(errors="replace")}
