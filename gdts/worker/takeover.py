"""Whether this worker claims a tick of a job another worker owns. Pure: the tick, what the
watch showed (a ClusterView) and "now" in, a decision out.

The owner claims at once; any other worker looks ``takeoverDelay`` later and claims only if, as
far as the watch shows, nobody did and the job is not running anywhere. (The owner may have
changed meanwhile: the new owner's claim shows the same way.) When views briefly differ the
worst case is a claim that loses in etcd, never a second run: that rests on the claim alone.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from gdts.worker.clusterview import ClusterView
from gdts.worker.ticktable import DueTick


@dataclass(frozen=True)
class Decision:
    step_in: bool
    # Why not, as the claims counter counts it ("deferred", "busy"); None when not counted.
    outcome: str | None = None
    # When to look at the tick again (the owner is late, not gone); None: never.
    look_again_at: int | None = None


STEP_IN = Decision(True)
CAPACITY_RECHECK_MS = 250


def decide(
    tick: DueTick,
    view: ClusterView,
    now_ms: int,
    *,
    delay_ms: int,
    window_ends_ms: int,
    job_deleted: bool,
    stopping: bool,
    at_capacity: bool = False,
) -> Decision:
    """``delay_ms``: takeoverDelay; ``window_ends_ms``: the last instant the tick may start;
    ``at_capacity``: this worker runs maxConcurrentRuns already."""
    job_name = tick.job.name
    if job_deleted:
        return Decision(False)
    if tick.run_request is not None and tick.run_request not in view.run_requests:
        return Decision(False)  # another worker claimed the manual run (and deleted the request)
    if stopping or view.tick_claimed(job_name, tick.job.generation, tick.plan_ms):
        return Decision(False, "deferred")
    if (job_name, tick.job.generation) in view.running and tick.job.concurrency == "forbid":
        return Decision(False, "busy")
    if at_capacity:
        # A run may end meanwhile: look again soon, while the tick may still start.
        again = now_ms + CAPACITY_RECHECK_MS
        return Decision(False, "capacity", again if again < window_ends_ms else None)
    seen = view.last_claim_seen(job_name)
    if seen is not None and now_ms - seen < delay_ms:
        # The job's ticks are being claimed, only late (a loaded machine, a slow etcd): the
        # owner is alive and behind, and stepping in would add claims that mostly lose, and
        # load where there is already too much. Look again later, while the tick may start.
        again = now_ms + delay_ms
        return Decision(False, "deferred", again if again < window_ends_ms else None)
    return STEP_IN


class TakeoverQueue:
    """Ticks of jobs another worker owns, each with the instant to decide on it."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, DueTick]] = []  # (at, sequence, tick)
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, tick: DueTick, at_ms: int) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (at_ms, self._sequence, tick))

    def pop_due(self, now_ms: int) -> list[DueTick]:
        due = []
        while self._heap and self._heap[0][0] <= now_ms:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None
