"""The worker's lease and its ``workers/<id>`` key: how the cluster knows this worker is alive.

The lease is renewed every third of its TTL. The worker may claim ticks only while the lease is
known to be alive (``can_claim``): if renewals fail, it stops claiming before etcd could expire
the lease, so it never starts a tick on a lease that may already be gone (self-fencing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from gdts.errors import StoreUnavailableError
from gdts.etcd import ETCD_ERRORS, EtcdClient, etcd_errors
from gdts.keys import KeyLayout

log = logging.getLogger(__name__)

_FIRST_RETRY_S = 0.5
_LAST_RETRY_S = 5.0


class DuplicateWorkerError(RuntimeError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker id {worker_id!r} is already registered by a live worker; "
            "give each worker process its own workerId"
        )


class Registration:
    def __init__(
        self, client: EtcdClient, keys: KeyLayout, worker_id: str, info: dict[str, Any], ttl: int
    ) -> None:
        self._client = client
        self._key = keys.worker(worker_id)
        self._worker_id = worker_id
        self._info = dict(info)
        self.ttl = ttl
        self.lease_id = 0
        self._alive_until = 0.0  # monotonic time until which the lease is surely alive
        self.new_lease = asyncio.Event()  # set after re-registering on a new lease

    @property
    def fence_at(self) -> float:
        """The monotonic instant from which the lease may be gone, a full second early
        (etcd's clock and ours tick at slightly different rates); 0 without a lease."""
        return self._alive_until - 1.0 if self.lease_id else 0.0

    def can_claim(self) -> bool:
        return time.monotonic() < self.fence_at

    async def register(self, wait_for_old: float | None = None) -> None:
        """Grant a lease and create our key on it. A key left by an earlier process with the same
        id is waited out (its lease will expire) for up to ``wait_for_old`` seconds."""
        deadline = time.monotonic() + (self.ttl + 2 if wait_for_old is None else wait_for_old)
        while True:
            with etcd_errors():
                sent = time.monotonic()
                lease = await self._client.lease(self.ttl)
            try:
                with etcd_errors():
                    txn = self._client.transactions
                    created, _ = await self._client.transaction(
                        compare=[txn.create(self._key) == 0],
                        success=[txn.put(self._key, self._value(), lease=lease)],
                        failure=[],
                    )
            except StoreUnavailableError:
                with contextlib.suppress(*ETCD_ERRORS):
                    await self._client.revoke_lease(lease.id)  # do not leak it
                raise
            if created:
                self.lease_id = lease.id
                self._alive_until = sent + lease.ttl
                log.info(
                    "registered as %s (lease %x, ttl %ss)", self._worker_id, lease.id, self.ttl
                )
                return
            with etcd_errors():
                await self._client.revoke_lease(lease.id)
            if time.monotonic() > deadline:
                raise DuplicateWorkerError(self._worker_id)
            await asyncio.sleep(1.0)  # wait for the other registration's lease to expire

    async def register_when_reachable(self, stop: asyncio.Event) -> bool:
        """``register``, waiting out an etcd that cannot be reached (a worker started with or
        just after its etcd, or during an outage, must not exit: nothing would restart it
        everywhere). False if ``stop`` came first."""
        pause = _FIRST_RETRY_S
        while not stop.is_set():
            try:
                await self.register()
                return True
            except StoreUnavailableError as exc:
                log.warning("cannot register yet (%s); trying again in %.1fs", exc, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, _LAST_RETRY_S)
        return False

    def _value(self) -> bytes:
        return json.dumps(self._info).encode()

    async def update(self, **changes: Any) -> None:
        """Change what the registration says (e.g. atCapacity); kept for a later register."""
        self._info.update(changes)
        if self.lease_id:
            with etcd_errors():
                await self._client.put(self._key, self._value(), lease=self.lease_id)

    async def keep_alive(self) -> None:
        """Renew forever; re-register if the lease was lost (e.g. etcd was down past the TTL)."""
        failed = False
        while True:
            # After a failure, try again soon: every lost second brings the fence closer.
            await asyncio.sleep(0.5 if failed or not self.can_claim() else self.ttl / 3)
            try:
                sent = time.monotonic()
                with etcd_errors():
                    reply = await self._client.refresh_lease(self.lease_id)
                if reply is not None and reply.TTL > 0:
                    self._alive_until = sent + reply.TTL
                    failed = False
                    continue
                log.warning("lease %x expired; registering again", self.lease_id)
                self.lease_id = 0
                await self.register(wait_for_old=self.ttl + 2)
                self.new_lease.set()
                failed = False
            except StoreUnavailableError as exc:
                failed = True
                log.warning("cannot renew lease: %s", exc)

    async def revoke(self) -> None:
        """A clean stop: the registration says it is leaving, then goes with its lease (a
        registration that goes without saying so is a worker lost: worker_offline)."""
        if not self.lease_id:
            return
        self._info["leaving"] = True
        try:
            with etcd_errors():
                await asyncio.wait_for(
                    self._client.put(self._key, self._value(), lease=self.lease_id), 2
                )
        except (StoreUnavailableError, *ETCD_ERRORS) as exc:  # told as lost, but revoked still
            log.warning("could not say this worker is leaving (%s)", exc)
        try:
            with etcd_errors():
                await asyncio.wait_for(self._client.revoke_lease(self.lease_id), 5)
            log.info("lease %x revoked", self.lease_id)
        except (StoreUnavailableError, *ETCD_ERRORS) as exc:
            log.warning("could not revoke lease %x (%s); it expires by itself", self.lease_id, exc)
        self.lease_id = 0
