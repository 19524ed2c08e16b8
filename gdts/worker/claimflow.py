"""A tick's way through etcd on this worker: claim it (in order with the job's earlier tick
here, retrying passing failures until its start window closes), hold the claim while the run
goes on, then release it; and put running markers back after the lease was lost.

``ClaimFlow.hold(tick)`` is the whole interface the scheduler sees: ``async with`` gives the
tick to run (or None: not ours to run) and releases its claim on the way out. The tick given
may carry a newer version of the job than the one asked with: a claim made from a version that
is no longer current fails in etcd, and is made again from the current one if that version
still runs the tick (see current_tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from gdts.config import WorkerConfig
from gdts.errors import GdtsError
from gdts.etcd import ETCD_ERRORS, etcd_errors
from gdts.job import Job
from gdts.logs import event
from gdts.routing import matches
from gdts.worker.lock import Claim, ClaimOutcome, StoredJob, TickClaimer
from gdts.worker.registration import Registration
from gdts.worker.stats import WorkerStats
from gdts.worker.ticktable import DueTick, next_plan

log = logging.getLogger(__name__)

_RELEASE_RETRY_MAX_S = 5.0
# How often a tick waiting for the one before it checks that our lease is still confirmed.
_FENCE_CHECK_S = 1.0
# At shutdown, how long releases still on their way may take before they are given up (the
# lease's revoke removes their markers anyway).
_CLOSE_WAIT_S = 5.0


class ClaimFlow:
    def __init__(
        self,
        config: WorkerConfig,
        claimer: TickClaimer,
        registration: Registration,
        stats: WorkerStats,
        clock: Callable[[], int],
        stopping: asyncio.Event,
        on_missed: Callable[[DueTick], None],
    ) -> None:
        """``on_missed`` hears of a tick whose start window closed before any claim won."""
        self._config = config
        self._claimer = claimer
        self._registration = registration
        self._stats = stats
        self._now_ms = clock
        self._stopping = stopping
        self._on_missed = on_missed
        # (job, planned ms) -> the claim of a run going here (a job whose runs may overlap can
        # have several)
        self._held: dict[tuple[str, int], Claim] = {}
        self._turns: dict[str, _Turn] = {}  # job -> its latest tick going through here
        # job -> the removal of its last run's running marker, while etcd has not confirmed it
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._releases: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def hold(self, tick: DueTick) -> AsyncIterator[DueTick | None]:
        """The tick to run, claimed, while the body runs it; None if this worker is not to run
        it. The tick may come with a newer version of its job (see current_tick)."""
        name = tick.job.name
        turn = _Turn()
        try:
            claimed = await self._claim(tick, turn)
            if claimed is None:
                yield None
                return
            claim, tick = claimed
            held = (name, tick.plan_ms)
            self._held[held] = claim
            try:
                yield tick
            finally:
                claim = self._held.pop(held, claim)  # its marker may have been rewritten
                release = self._track_release(claim)
                turn.end()
                # Shielded: even on cancellation the marker must go, or the job never runs again.
                await asyncio.shield(release)
        finally:
            turn.end()
            if self._turns.get(name) is turn:
                del self._turns[name]

    async def mark_attempt(self, tick: DueTick, attempt: int) -> None:
        """A retry of the run held for ``tick`` begins: its running marker says so, so that a
        run lost during it is recorded as that attempt. Best effort: if etcd does not answer,
        such a loss is recorded as the first attempt."""
        held = (tick.job.name, tick.plan_ms)
        claim = self._held.get(held)
        if claim is None:
            return
        marker = self._claimer.marker(tick.plan_ms, self._now_ms(), attempt, tick.chain)
        try:
            with etcd_errors():
                marked = await self._claimer.mark(claim, marker, self._registration.lease_id)
        except GdtsError as exc:
            log.warning("running marker not rewritten for attempt %d: %s", attempt, exc,
                        extra=event(job=claim.job_name, tick=claim.plan_ms))  # fmt: skip
            return
        if marked and self._held.get(held) is claim:
            self._held[held] = dataclasses.replace(claim, marker=marker)

    async def close(self) -> None:
        """Wait a little for releases still on their way, then give them up."""
        if self._releases:
            await asyncio.wait(self._releases, timeout=_CLOSE_WAIT_S)
        for task in list(self._releases):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _claim(self, tick: DueTick, turn: _Turn) -> tuple[Claim, DueTick] | None:
        exclusive = tick.exclusive
        if not exclusive:
            claimed = await self._claim_now(tick, exclusive)
            turn.claimed(claimed is not None)
            return claimed
        name = tick.job.name
        earlier = self._turns.get(name)
        self._turns[name] = turn
        claimed = None
        try:
            if earlier is None or await self._after(earlier, tick):
                claimed = await self._claim_now(tick, exclusive)
            return claimed
        finally:
            turn.claimed(claimed is not None)

    async def _after(self, earlier: _Turn, tick: DueTick) -> bool:
        """Wait for the job's earlier tick here to be out of the way: its claim answered, its
        run ended, its running marker removed. Ticks of one job then claim in order, and each
        claim finds the marker gone instead of asking etcd again and again while the run before
        goes on (under load, those retries were most of etcd's work). False: that run is still
        going ``busyWait`` later (policy forbid), so this tick is skipped, as a claim that found
        it would have been."""
        window_ends = tick.start_deadline(self._config.start_window)

        def left_s() -> float:
            return max(0, window_ends - self._now_ms()) / 1000

        await self._wait_while_claimable(earlier.won, left_s())
        # Under "replace" the claim goes ahead and has the run before killed.
        replacing = tick.job.concurrency == "replace"
        if not replacing and earlier.won.done() and earlier.won.result():
            busy_wait_s = self._config.busy_wait / 1000
            await asyncio.wait({earlier.ended}, timeout=min(left_s(), busy_wait_s))
            if not earlier.ended.done():
                self._stats.claim("busy")
                return False
        releasing = self._releasing.get(tick.job.name)
        if releasing is not None:
            # The run before has ended, but its marker is still on its way out (etcd is slow,
            # or the release waits behind a slow batch).
            await self._wait_while_claimable(releasing, left_s())
        return True

    async def _wait_while_claimable(self, waited: asyncio.Future[Any], timeout_s: float) -> None:
        """Wait for ``waited``, but not once our lease is in doubt (cut off from etcd): what we
        wait for may then never come, and the claim that follows fences itself and says so."""
        deadline = time.monotonic() + timeout_s
        while not waited.done() and self._registration.can_claim():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.wait({waited}, timeout=min(left, _FENCE_CHECK_S))

    async def _claim_now(self, tick: DueTick, exclusive: bool) -> tuple[Claim, DueTick] | None:
        marker = self._claimer.marker(tick.plan_ms, self._now_ms(), chain=tick.chain)
        outcome, tick, unanswered = await self._try_claim(tick, marker)
        job = tick.job
        claim = Claim(ClaimOutcome.WON, job.name, tick.plan_ms, marker, exclusive, job.generation)
        if outcome is ClaimOutcome.WON:
            return claim, tick
        if outcome is None and unanswered:
            # Every attempt failed, and one whose answer was lost may have committed all the
            # same: its running marker would block this job on every worker for as long as our
            # lease lives. Remove it (only if it is ours, as on any release).
            self._track_release(claim)
        return None

    async def _try_claim(
        self, tick: DueTick, marker: bytes
    ) -> tuple[ClaimOutcome | None, DueTick, bool]:
        """(WON, TAKEN, BUSY or STALE as etcd answered, or None when no answer came in time;
        the tick as claimed, with the job's version the claim was made from; whether an attempt
        went out and got no answer)."""
        tags = event(job=tick.job.name, tick=tick.plan_ms)
        attempt = _Attempts(tick, self._config, self._now_ms)
        unanswered = False
        while not self._stopping.is_set():
            if attempt.window_closed():
                self._stats.missed_ticks.inc()
                log.warning("tick not claimed within its start window", extra=tags)
                self._on_missed(tick)
                return None, tick, unanswered
            if not self._registration.can_claim():
                # Self-fencing: our lease may already be gone in etcd; claim nothing on it.
                self._stats.claim("fenced")
                log.warning("not claiming: lease not confirmed alive", extra=tags)
            else:
                try:
                    claim = await self._ask(tick, marker, attempt)
                except GdtsError as exc:
                    unanswered = True
                    self._stats.claim("error")
                    self._stats.etcd_errors.labels(operation="claim").inc()
                    log.warning("cannot claim (%s); retrying", exc, extra=tags)
                else:
                    if claim is None:  # won after the window closed: released, not run
                        return None, tick, True
                    if claim.outcome is ClaimOutcome.STALE:
                        self._stats.claim("stale")
                        current = current_tick(tick, claim.current, self._config.labels)
                        if current is None:
                            log.info("not run: the job changed since this tick was due",
                                     extra=tags)  # fmt: skip
                            return ClaimOutcome.STALE, tick, False
                        tick = current  # claim again from the job's current version
                        continue
                    if claim.outcome is not ClaimOutcome.BUSY or not attempt.wait_longer():
                        self._stats.claim(claim.outcome.value)
                        return claim.outcome, tick, False
            await attempt.pause()
        return None, tick, unanswered

    async def _ask(self, tick: DueTick, marker: bytes, attempt: _Attempts) -> Claim | None:
        """One claim transaction; None if it won too late to start."""
        job = tick.job
        # No deadline of our own: each etcd call has its timeout, and a claim given up while
        # its batch is in flight could still commit, leaving a running marker that nobody
        # runs or removes.
        with etcd_errors():
            claim = await self._claimer.claim(
                job.name, tick.plan_ms, self._registration.lease_id, marker,
                once=job.one_shot and tick.run_request is None,
                run_request=tick.run_request,
                exclusive=tick.exclusive,
                window_s=(attempt.window_ends - tick.plan_ms) / 1000,
                generation=job.generation, revision=job.revision,
            )  # fmt: skip
        tags = event(job=job.name, tick=tick.plan_ms)
        if claim.outcome is ClaimOutcome.WON and self._now_ms() > attempt.window_ends:
            self._stats.claim("late")
            self._stats.missed_ticks.inc()
            log.warning("tick claimed after its start window; not run", extra=tags)
            return None
        if claim.outcome is ClaimOutcome.BUSY:
            if attempt.replacing and not attempt.kill_sent:
                with etcd_errors():
                    await self._claimer.request_kill(
                        job.name, job.generation, before_plan_ms=tick.plan_ms
                    )
                attempt.kill_sent = True
                log.info("replacing the run going on", extra=tags)
            attempt.busy()
        return claim

    def _track_release(self, claim: Claim) -> asyncio.Task[None]:
        """Release the claim in a task the job's next claim can wait for (see _after)."""
        release = asyncio.get_running_loop().create_task(self._release(claim))
        name = claim.job_name
        self._releasing[name] = release
        self._releases.add(release)

        def forget(task: asyncio.Task[None]) -> None:
            self._releases.discard(task)
            if self._releasing.get(name) is task:
                del self._releasing[name]

        release.add_done_callback(forget)
        return release

    async def _release(self, claim: Claim) -> None:
        delay = 0.2
        while True:
            try:
                await self._claimer.release(claim)
                return
            except ETCD_ERRORS as exc:
                if not self._registration.lease_id or self._stopping.is_set():
                    # Lease gone: the marker went with it; stopping: the revoke removes it.
                    return
                self._stats.etcd_errors.labels(operation="release").inc()
                log.warning(
                    "cannot release running marker (%s); retrying", exc,
                    extra=event(job=claim.job_name, tick=claim.plan_ms),
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RELEASE_RETRY_MAX_S)

    async def restore_markers(self) -> None:
        """After the lease was lost and a new one granted, put back the running markers of runs
        still going here, so the cluster keeps skipping those jobs' next ticks."""
        while True:
            await self._registration.new_lease.wait()
            self._registration.new_lease.clear()
            for claim in list(self._held.values()):
                tags = event(job=claim.job_name, tick=claim.plan_ms)
                try:
                    with etcd_errors():
                        restored = await self._claimer.restore(claim, self._registration.lease_id)
                except GdtsError as exc:
                    log.warning("cannot restore running marker: %s", exc, extra=tags)
                    continue
                if not restored:
                    log.warning("another worker started this job while our lease was lost; "
                                "both runs go on", extra=tags)  # fmt: skip


def current_tick(
    tick: DueTick, stored: StoredJob | None, labels: Mapping[str, str]
) -> DueTick | None:
    """The tick as the job's current version (``stored``, None: deleted) runs it on a worker
    with ``labels``, or None if that version does not run it: deleted, or deleted and saved
    again (a new job, with ticks of its own), or a scheduled tick that the version no longer
    plans (disabled, schedule changed), or a host group this worker is not in. A run asked for
    with /job/run still runs, as /job/run on that version would."""
    if stored is None or stored.generation != tick.job.generation:
        return None
    try:
        job = Job.from_record(stored.record, revision=stored.revision, generation=stored.generation)
    except (GdtsError, ValueError):
        return None  # unreadable: the watch stops running it too
    if tick.run_request is None and next_plan(job, tick.plan_ms - 1) != tick.plan_ms:
        return None
    if not matches(job.host_group, labels):
        return None
    return dataclasses.replace(tick, job=job)


class _Attempts:
    """The timing of one tick's claim attempts: its start window, how long a busy answer is
    waited out, and the backoff between attempts."""

    def __init__(self, tick: DueTick, config: WorkerConfig, clock: Callable[[], int]) -> None:
        self._config = config
        self._now_ms = clock
        self.window_ends = tick.start_deadline(config.start_window)
        self.replacing = tick.job.concurrency == "replace"
        # Set at the first busy answer: a tick waits busyWait for the run before it from when
        # it could first ask, so a claim that etcd answers late (the same stall also made the
        # run before it late) still gets its wait. Under "replace" the run going on is being
        # killed for this one: wait for it as long as the tick may start.
        self._busy_until: int | None = self.window_ends if self.replacing else None
        self.kill_sent = False
        self._delay_s = 0.1

    def window_closed(self) -> bool:
        return self.window_ends - self._now_ms() <= 0

    def busy(self) -> None:
        if self._busy_until is None:
            self._busy_until = self._now_ms() + min(
                self._config.busy_wait, self._config.start_window
            )

    def wait_longer(self) -> bool:
        """After a busy answer: whether to ask again. Runs that end a moment after the next
        tick (or a worker whose clock is ahead starting a later tick at the same instant) would
        otherwise turn into a skipped tick: retry a little."""
        busy_until = self._busy_until
        return busy_until is not None and self._now_ms() + self._delay_s * 1000 <= busy_until

    async def pause(self) -> None:
        await asyncio.sleep(
            min(self._delay_s, max(0.0, (self.window_ends - self._now_ms()) / 1000))
        )
        self._delay_s = min(self._delay_s * 2, 1.0)


class _Turn:
    """One tick of a job going through this worker, for the job's next tick to wait on."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.won: asyncio.Future[bool] = loop.create_future()  # the claim's answer
        self.ended: asyncio.Future[None] = loop.create_future()  # no run, or the run is over

    def claimed(self, won: bool) -> None:
        if not self.won.done():
            self.won.set_result(won)
        if not won:
            self.end()

    def end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
