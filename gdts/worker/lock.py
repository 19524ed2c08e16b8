"""Claiming a tick: one etcd transaction decides which worker runs it.

The transaction succeeds only if nobody has claimed this tick (``lock/<job>/tick/<ms>``) and no run
of the job is going anywhere (``lock/<job>/running``). It writes both keys:

* the tick claim goes on a *claim lease* that is never kept alive and lives longer than the start
  window plus clock-skew margin. Whatever happens to the claiming worker, the claim outlives every
  moment at which another worker would still try that tick, so an expired lease can never reopen
  a tick that already ran. Claim leases are shared by all claims made in one rotation period, so
  the lease costs one grant per period, not one per tick.
* the running marker goes on the worker's own lease, so it vanishes if the worker dies and the
  job's next tick can run elsewhere.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from dataclasses import dataclass

from gdts.etcd import EtcdClient
from gdts.keys import KeyLayout
from gdts.worker.lostruns import running_marker

log = logging.getLogger(__name__)

# How far apart two workers' clocks may be before a lagging worker could find a tick's claim gone.
SKEW_MARGIN_S = 30.0
ROTATE_EVERY_S = 10.0


class ClaimOutcome(enum.Enum):
    WON = "won"
    TAKEN = "taken"  # another worker claimed this tick first
    BUSY = "busy"  # the previous run of this job is still going somewhere


class ClaimLease:
    """A lease for tick claims, replaced every ROTATE_EVERY_S and left to expire on its own."""

    def __init__(self, client: EtcdClient, start_window_s: float) -> None:
        self._client = client
        self.ttl = math.ceil(start_window_s + ROTATE_EVERY_S + SKEW_MARGIN_S)
        self._lease_id = 0
        self._granted_at = -math.inf
        self._lock = asyncio.Lock()

    async def current(self) -> int:
        async with self._lock:
            if time.monotonic() - self._granted_at >= ROTATE_EVERY_S:
                granted_at = time.monotonic()
                lease = await self._client.lease(self.ttl)
                self._lease_id, self._granted_at = lease.id, granted_at
            return self._lease_id


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job_name: str
    plan_ms: int
    marker: bytes  # the running marker this claim wrote, if it won; release compares it


class TickClaimer:
    def __init__(self, client: EtcdClient, keys: KeyLayout, worker_id: str, start_window_s: float):
        self._client = client
        self._keys = keys
        self._worker_id = worker_id
        self._claim_lease = ClaimLease(client, start_window_s)

    def marker(self, plan_ms: int, now_ms: int) -> bytes:
        return running_marker(self._worker_id, plan_ms, now_ms)

    async def claim(self, job_name: str, plan_ms: int, worker_lease: int, marker: bytes) -> Claim:
        """Try to claim a tick. Safe to repeat with the same ``marker`` after an error: a first
        attempt that committed although its answer was lost is recognised as a win."""
        tick_key = self._keys.tick_claim(job_name, plan_ms)
        running_key = self._keys.running(job_name)
        txn = self._client.transactions
        claim_lease = await self._claim_lease.current()
        won, replies = await self._client.transaction(
            compare=[txn.create(tick_key) == 0, txn.create(running_key) == 0],
            success=[
                txn.put(tick_key, marker, lease=claim_lease),
                txn.put(running_key, marker, lease=worker_lease),
            ],
            failure=[txn.get(tick_key)],
        )
        holder = replies[0][0][0] if not won and replies and replies[0] else None
        if won or holder == marker:
            outcome = ClaimOutcome.WON
        elif holder is not None:
            outcome = ClaimOutcome.TAKEN
        else:
            outcome = ClaimOutcome.BUSY
        return Claim(outcome, job_name, plan_ms, marker)

    async def restore(self, claim: Claim, worker_lease: int) -> bool:
        """Put a running run's marker back on a new lease (the old one expired while the run
        went on); fails if another worker has started the job since."""
        running_key = self._keys.running(claim.job_name)
        txn = self._client.transactions
        restored, _ = await self._client.transaction(
            compare=[txn.create(running_key) == 0],
            success=[txn.put(running_key, claim.marker, lease=worker_lease)],
            failure=[],
        )
        return bool(restored)

    async def release(self, claim: Claim) -> None:
        """Remove this claim's running marker; only ours, in case the lease was lost and another
        worker's run has since put its own."""
        running_key = self._keys.running(claim.job_name)
        txn = self._client.transactions
        await self._client.transaction(
            compare=[txn.value(running_key) == claim.marker],
            success=[txn.delete(running_key)],
            failure=[],
        )
