"""The teams' secrets as a worker holds them: their sealed records, kept current by a watch on
``secrets/`` (one read, then a watch from the revision after it; read again when the watch's
revision is compacted), so a run that needs a secret makes no etcd round trip. A secret is
opened at the start of a run that names it, and only then (see gdts.secretbox)."""

from __future__ import annotations

import asyncio
import logging

from gdts.cancellation import end_if_cancelling
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
from gdts.job import Job
from gdts.keys import KeyLayout
from gdts.secretbox import CONFIG_KEY, KeyRing, SecretError, SecretRecord

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0


class SecretWatch:
    def __init__(self, client: EtcdClient, keys: KeyLayout, ring: KeyRing) -> None:
        self._client = client
        self._keys = keys
        self._ring = ring
        self._sealed: dict[tuple[str, str], bytes] = {}  # (team, name) -> its record
        self.synced = asyncio.Event()  # set once the first read is applied

    @property
    def can_open(self) -> bool:
        """Whether this worker has a key to open secrets with."""
        return bool(self._ring)

    async def run(self) -> None:
        backoff = _RETRY_MIN_S
        while True:
            try:
                next_revision = await self._read_all()
                backoff = _RETRY_MIN_S
                while True:
                    next_revision = await self._follow(next_revision)
                    await asyncio.sleep(_RETRY_MIN_S)  # ended cleanly: resume, never spin
            except (WatchCompactedError, WatchCanceledError) as exc:
                end_if_cancelling(exc)
                log.warning("secrets watch must start over: %s", exc)
            except (*ETCD_ERRORS, GdtsError) as exc:
                end_if_cancelling(exc)
                log.warning("cannot follow the secrets (%s); again in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_S)

    async def _read_all(self) -> int:
        kvs, revision = await read_prefix(self._client, self._keys.secrets_prefix)
        sealed = {}
        for kv in kvs:
            try:
                sealed[self._keys.secret_parts(kv.key)] = kv.value
            except ValueError as exc:
                log.warning("ignoring %s", exc)
        self._sealed = sealed
        self.synced.set()
        return revision + 1

    async def _follow(self, next_revision: int) -> int:
        spec = WatchSpec(self._keys.secrets_prefix, next_revision)
        async for event in watch_prefixes(self._client, [spec]):
            next_revision = event.mod_revision + 1
            try:
                where = self._keys.secret_parts(event.key)
            except ValueError as exc:
                log.warning("ignoring %s", exc)
                continue
            if event.deleted:
                self._sealed.pop(where, None)
            else:
                self._sealed[where] = event.value
        return next_revision

    async def open_for(self, job: Job, wait_s: float) -> dict[str, str]:
        """The values of the secrets ``job`` names, by secret name; SecretError (naming the
        secret and the field, never a value) when one cannot be had. Waits up to ``wait_s``
        for the first read (a worker just started)."""
        if not self.can_open:
            raise SecretError(f"no secret key configured on this worker ({CONFIG_KEY})")
        if not self.synced.is_set():
            try:
                await asyncio.wait_for(self.synced.wait(), wait_s)
            except TimeoutError:
                raise SecretError("the worker has not read the secrets from etcd yet") from None
        values: dict[str, str] = {}
        for field_name, name in job.secret_refs():
            if name in values:
                continue
            raw = self._sealed.get((job.team, name))
            if raw is None:
                raise SecretError(f"no secret {name!r} in team {job.team!r} ({field_name})")
            values[name] = self._ring.open(job.team, name, SecretRecord.from_bytes(raw).sealed)
        return values
