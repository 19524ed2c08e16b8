"""A run never outlives its worker's lease.

Once the lease may be gone (renewals failed until one second before it could expire: the same
instant the worker stops claiming, see Registration.fence_at), other workers may start the
job's next tick, so the runs going on here must end: each is killed at once (SIGKILL, no grace)
and logged killed, "the worker's etcd lease may be gone"; no attempt starts until the lease is
renewed (see Runs). A worker that cannot act at all (frozen by SIGSTOP, a stalled event loop)
is covered by the guardian: it hears every new fence instant and kills the runs' uids itself
when one passes without another (see guardian).
"""

from __future__ import annotations

import asyncio
import logging
import time

from gdts.worker.guardian import Guardian
from gdts.worker.registration import Registration
from gdts.worker.runs import LEASE_MAY_BE_GONE, Runs

log = logging.getLogger(__name__)

# How often the fence instant is looked at: a renewal moves it by a third of the lease TTL.
_LOOK_EVERY_S = 0.25


class LeaseFence:
    def __init__(self, registration: Registration, runs: Runs, guardian: Guardian | None) -> None:
        self._registration = registration
        self._runs = runs
        self._guardian = guardian
        self._told = 0.0  # the fence instant the guardian last heard
        self._passed = -1.0  # the last fence instant seen to pass

    async def run(self) -> None:
        while True:
            fence = self._registration.fence_at
            if fence and fence != self._told and self._guardian is not None:
                self._guardian.extend(fence)
                self._told = fence
            now = time.monotonic()
            if (not fence or now >= fence) and len(self._runs):
                # Again at every look: a run that was still starting is killed once it has.
                killed = self._runs.kill_now(LEASE_MAY_BE_GONE)
                if fence != self._passed:
                    self._passed = fence
                    log.warning("the lease may be gone: %d run(s) killed", killed)
            wait = _LOOK_EVERY_S if not fence or now >= fence else min(_LOOK_EVERY_S, fence - now)
            await asyncio.sleep(wait)
