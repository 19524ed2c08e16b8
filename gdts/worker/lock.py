"""Claiming a tick: one etcd transaction decides which worker runs it.

The transaction succeeds only if the job is still the version the worker scheduled the tick
from (``jobs/<job>`` unchanged since: a save, disable or delete that etcd acknowledged makes
every claim made from the version before it fail), nobody has claimed this tick
(``lock/tick/<job>@<gen>/<ms>``) and no run of the job is going anywhere
(``lock/running/<job>@<gen>``; a job whose runs may overlap has one marker per run instead).
It writes both keys (gdts.keys has the layout):

* the tick claim goes on a *claim lease* that is never kept alive and lives longer than the start
  window plus clock-skew margin. Whatever happens to the claiming worker, the claim outlives every
  moment at which another worker would still try that tick, so an expired lease can never reopen
  a tick that already ran. Claim leases are shared by all claims made in one rotation period, so
  the lease costs one grant per period, not one per tick.
* the running marker goes on the worker's own lease, so it vanishes if the worker dies and the
  job's next tick can run elsewhere.

Claims (and releases) made at the same moment go to etcd as one transaction each way; see
``TickClaimer``.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gdts.etcd import EtcdClient
from gdts.keys import KeyLayout, kill_marker
from gdts.markers import running_marker
from gdts.runrecord import ChainStep
from gdts.worker.coalescer import Coalescer

log = logging.getLogger(__name__)

# How far apart two workers' clocks may be before a lagging worker could find a tick's claim gone.
SKEW_MARGIN_S = 30.0
ROTATE_EVERY_S = 10.0
_WINDOW_BUCKETS_S = (10.0, 60.0, 600.0, 3600.0, 86_400.0)


class ClaimOutcome(enum.Enum):
    WON = "won"
    TAKEN = "taken"  # another worker claimed this tick first
    BUSY = "busy"  # the previous run of this job is still going somewhere
    STALE = "stale"  # the job changed (or went) since the version the claim was made from


@dataclass(frozen=True)
class StoredJob:
    """A job's etcd entry as a failed claim read it: its record and where etcd holds it."""

    record: bytes
    revision: int
    generation: int


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
    # False for a job whose runs may overlap (policy allow): its marker is this run's own.
    exclusive: bool = True
    generation: int = 0  # the job's generation (see gdts.keys)
    # STALE: the job as etcd holds it now (None: deleted), for the caller to claim again from
    current: StoredJob | None = None


# etcd refuses a transaction with more than --max-txn-ops (default 128) compares or operations
# in a branch; a claim takes up to four compares and four operations (the job's version, a
# one-shot job's done marker, a manual run's request to delete).
MAX_BATCH = 32


@dataclass(frozen=True)
class _ClaimRequest:
    job_name: str
    plan_ms: int
    worker_lease: int
    marker: bytes
    window_s: float  # how long after its planned time the tick may still be claimed
    once: bool  # a one-shot job: the claim also marks it done for good
    exclusive: bool  # the job's one running marker (forbid, replace) or this run's (allow)
    run_request: bytes | None  # a manual run's request key, deleted by the claim
    generation: int
    revision: int  # the job's version the tick was scheduled from (0: not compared)


class TickClaimer:
    """Claims and releases made at the same moment share one transaction (see coalescer). A
    batch commits only if every claim in it would have won alone; otherwise the same atomic
    reply says which did not, and the rest go again, so no claim's outcome depends on its
    neighbours."""

    def __init__(self, client: EtcdClient, keys: KeyLayout, worker_id: str, start_window_s: float):
        self._client = client
        self._keys = keys
        self._worker_id = worker_id
        self._start_window_s = start_window_s
        self._claim_leases: dict[float, ClaimLease] = {}
        # Each marker names its claim, unique to this process: a worker restarted under the
        # same id, its clock set differently, could otherwise write a byte-identical marker for
        # a tick its earlier life claimed, and take that claim for its own (see _failed_claim).
        nonce = secrets.token_hex(6)
        self._claim_ids = (f"{nonce}.{n}" for n in itertools.count())
        self._claims = Coalescer(self._claim_batch, max_batch=MAX_BATCH, key=lambda r: r.job_name)
        self._releases = Coalescer(
            self._release_batch, max_batch=MAX_BATCH, key=lambda c: c.job_name
        )

    def marker(
        self, plan_ms: int, now_ms: int, attempt: int = 1, chain: ChainStep | None = None
    ) -> bytes:
        return running_marker(
            self._worker_id, plan_ms, now_ms, attempt, next(self._claim_ids), chain
        )

    @property
    def transactions_sent(self) -> int:
        return self._claims.batches + self._releases.batches

    async def close(self) -> None:
        await self._claims.close()
        await self._releases.close()

    async def claim(
        self,
        job_name: str,
        plan_ms: int,
        worker_lease: int,
        marker: bytes,
        *,
        once: bool = False,
        run_request: bytes | None = None,
        exclusive: bool = True,
        window_s: float | None = None,
        generation: int = 0,
        revision: int = 0,
    ) -> Claim:
        """Try to claim a tick. Safe to repeat with the same ``marker`` after an error: a first
        attempt that committed although its answer was lost is recognised as a win. With
        ``once`` (a one-shot job) the claim also writes a done marker without a lease, so the
        run can never be claimed again, whatever the clocks say, until the job is deleted.
        Without ``exclusive`` (a job whose runs may overlap) the running marker is this run's
        own, so another run going on does not block the claim. ``revision``: the job's
        version the tick comes from; the claim fails (STALE, with the job as it is now) if
        the job has changed since."""
        request = _ClaimRequest(
            job_name,
            plan_ms,
            worker_lease,
            marker,
            self._start_window_s if window_s is None else window_s,
            once,
            exclusive,
            run_request,
            generation,
            revision,
        )
        outcome, current = await self._claims.submit(request)
        return Claim(outcome, job_name, plan_ms, marker, exclusive, generation, current)

    async def _claim_batch(
        self, requests: list[_ClaimRequest]
    ) -> list[tuple[ClaimOutcome, StoredJob | None]]:
        txn = self._client.transactions
        leases = {w: await self._claim_lease(w) for w in {r.window_s for r in requests}}
        outcomes: dict[int, tuple[ClaimOutcome, StoredJob | None]] = {}
        undecided = list(range(len(requests)))
        while undecided:
            compare, success = [], []
            for i in undecided:
                request = requests[i]
                gen = request.generation
                tick_key = self._keys.tick_claim(request.job_name, gen, request.plan_ms)
                running_key = self._running_key(request.job_name, gen, request.plan_ms,
                                                request.exclusive)  # fmt: skip
                compare += [txn.create(tick_key) == 0, txn.create(running_key) == 0]
                success += [
                    txn.put(tick_key, request.marker, lease=leases[request.window_s]),
                    txn.put(running_key, request.marker, lease=request.worker_lease),
                ]
                if request.revision:
                    compare.append(txn.mod(self._keys.job(request.job_name)) == request.revision)
                if request.run_request is not None:
                    success.append(txn.delete(request.run_request))
                if request.once:
                    done_key = self._keys.done(request.job_name, request.plan_ms)
                    compare.append(txn.create(done_key) == 0)
                    success.append(txn.put(done_key, request.marker))
            # No failure branch: most batches win, and building its reads for every claim cost
            # the worker more than a second request for the few that lose.
            won, _ = await self._client.transaction(compare=compare, success=success, failure=[])
            if won:
                outcomes.update(dict.fromkeys(undecided, (ClaimOutcome.WON, None)))
                break
            replies = await self._read_claim_keys([requests[i] for i in undecided])
            again = []
            for position, i in enumerate(undecided):
                outcome = _failed_claim(requests[i], *replies[4 * position : 4 * position + 4])
                if outcome is None:  # would win alone: the batch failed on another claim
                    again.append(i)
                else:
                    outcomes[i] = outcome
            undecided = again
        return [outcomes[i] for i in range(len(requests))]

    async def _read_claim_keys(self, requests: list[_ClaimRequest]) -> list[Any]:
        """For each claim, at one revision: its tick claim, running marker, done marker and
        job (four replies a claim), read after its batch failed. Later than the failed compare,
        so a claim whose obstacle has gone since is tried again rather than given up."""
        txn = self._client.transactions
        reads = []
        for request in requests:
            gen = request.generation
            reads += [
                txn.get(self._keys.tick_claim(request.job_name, gen, request.plan_ms)),
                txn.get(self._running_key(request.job_name, gen, request.plan_ms,
                                          request.exclusive)),
                txn.get(self._keys.done(request.job_name, request.plan_ms)),
                txn.get(self._keys.job(request.job_name)),
            ]  # fmt: skip
        _, replies = await self._client.transaction(compare=[], success=reads, failure=[])
        return list(replies)

    async def request_kill(self, job_name: str, generation: int, *, before_plan_ms: int) -> None:
        """Kill the job's runs planned before ``before_plan_ms``, on every worker (the policy
        "replace"): a kill marker like /job/kill's, naming the planned time. It lives on the
        claim lease, so it goes away by itself."""
        lease = await self._claim_lease(self._start_window_s)
        value = kill_marker(generation, str(before_plan_ms).encode())
        await self._client.put(self._keys.killer(job_name), value, lease=lease)

    async def _claim_lease(self, window_s: float) -> int:
        """A claim lease that outlives a tick's window (jobs with a long misfireGrace get one of
        their own, in a few sizes, so short-window ticks' claims do not linger)."""
        size = next((b for b in _WINDOW_BUCKETS_S if b >= window_s), window_s)
        size = max(size, self._start_window_s)
        lease = self._claim_leases.get(size)
        if lease is None:
            lease = self._claim_leases[size] = ClaimLease(self._client, size)
        return await lease.current()

    def _running_key(self, job_name: str, generation: int, plan_ms: int, exclusive: bool) -> bytes:
        return self._keys.running(job_name, generation, None if exclusive else plan_ms)

    async def restore(self, claim: Claim, worker_lease: int) -> bool:
        """Put a running run's marker back on a new lease (the old one expired while the run
        went on); fails if another worker has started the job since."""
        running_key = self._running_key(
            claim.job_name, claim.generation, claim.plan_ms, claim.exclusive
        )
        txn = self._client.transactions
        restored, _ = await self._client.transaction(
            compare=[txn.create(running_key) == 0],
            success=[txn.put(running_key, claim.marker, lease=worker_lease)],
            failure=[],
        )
        return bool(restored)

    async def mark(self, claim: Claim, marker: bytes, worker_lease: int) -> bool:
        """Rewrite a held claim's running marker (a retry says its attempt); False if the
        marker is no longer this claim's."""
        running_key = self._running_key(
            claim.job_name, claim.generation, claim.plan_ms, claim.exclusive
        )
        txn = self._client.transactions
        rewritten, _ = await self._client.transaction(
            compare=[txn.value(running_key) == claim.marker],
            success=[txn.put(running_key, marker, lease=worker_lease)],
            failure=[],
        )
        return bool(rewritten)

    async def release(self, claim: Claim) -> None:
        """Remove this claim's running marker; only ours, in case the lease was lost and another
        worker's run has since put its own."""
        await self._releases.submit(claim)

    async def _release_batch(self, claims: list[Claim]) -> list[None]:
        txn = self._client.transactions
        ours = claims
        while ours:
            keys = [
                self._running_key(c.job_name, c.generation, c.plan_ms, c.exclusive) for c in ours
            ]
            released, replies = await self._client.transaction(
                compare=[txn.value(key) == c.marker for key, c in zip(keys, ours, strict=True)],
                success=[txn.delete(key) for key in keys],
                failure=[txn.get(key) for key in keys],
            )
            if released:
                break
            # Markers that are gone or another run's are not ours to delete: drop them.
            ours = [
                claim
                for claim, reply in zip(ours, replies, strict=True)
                if reply and reply[0][0] == claim.marker
            ]
        return [None] * len(claims)


def _failed_claim(
    request: _ClaimRequest,
    tick: list[Any],
    running: list[Any],
    done: list[Any],
    job: list[Any],
) -> tuple[ClaimOutcome, StoredJob | None] | None:
    """Why a claim failed, from what the failed transaction read (each a list of (value,
    metadata)); None if it would have won alone."""
    holder = tick or (done if request.once else [])
    if holder:
        # Ours: an earlier attempt committed although its answer was lost.
        mine = holder[0][0] == request.marker
        return (ClaimOutcome.WON if mine else ClaimOutcome.TAKEN), None
    if request.revision and (not job or job[0][1].mod_revision != request.revision):
        current = (
            StoredJob(job[0][0], job[0][1].mod_revision, job[0][1].create_revision) if job else None
        )
        return ClaimOutcome.STALE, current
    if running:
        return ClaimOutcome.BUSY, None
    return None
