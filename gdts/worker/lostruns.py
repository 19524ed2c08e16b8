"""Telling a run whose worker died from a run that finished. Pure: no I/O, "now" passed in.

A running marker is deleted either by its worker (the run finished) or by etcd when the worker's
lease expires. In the second case etcd deletes every key on the lease in one revision, so the
worker's registration disappears at exactly the same revision. Joining the two deletions on
(lease, revision) tells the cases apart with no extra etcd request. The two events come through
different watches, in either order, so each side waits a while for the other.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

Join = tuple[int, int]  # (lease id, revision)


@dataclass(frozen=True)
class LostRun:
    job_name: str
    plan_ms: int
    worker: str
    claimed_ms: int | None
    attempt: int = 1  # the attempt going on when the worker died (see running_marker)


class LostRunDetector:
    def __init__(self, horizon_ms: int) -> None:
        self._horizon_ms = horizon_ms
        self._markers: dict[Join, list[LostRun]] = {}
        self._registrations: set[Join] = set()
        # Arrival order, so expiry pops the old end instead of scanning everything: it runs on
        # every marker deletion, hundreds a second under load.
        self._arrivals: deque[tuple[int, bool, Join]] = deque()  # (at, is_marker, join)

    def marker_deleted(
        self, job_name: str, lease: int, revision: int, value: bytes, now_ms: int
    ) -> LostRun | None:
        """A running marker vanished; returns the lost run if its lease is known to be dead."""
        run = _decode(job_name, value)
        if run is None or lease == 0:
            return None
        join = (lease, revision)
        if join in self._registrations:
            return run
        self._markers.setdefault(join, []).append(run)
        self._arrivals.append((now_ms, True, join))
        return None

    def registration_deleted(self, lease: int, revision: int, now_ms: int) -> list[LostRun]:
        """A worker's registration vanished; returns the runs that went with its lease."""
        join = (lease, revision)
        waiting = self._markers.pop(join, [])
        self._registrations.add(join)
        self._arrivals.append((now_ms, False, join))
        return waiting

    def expire(self, now_ms: int) -> None:
        """Forget deletions too old to be joined any more (markers released by their worker)."""
        oldest = now_ms - self._horizon_ms
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] < oldest:
            _, is_marker, join = arrivals.popleft()
            if not is_marker:
                self._registrations.discard(join)
                continue
            runs = self._markers.get(join)
            if runs is None:  # already joined with its registration
                continue
            runs.pop(0)
            if not runs:
                del self._markers[join]

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._markers.values()) + len(self._registrations)


def running_marker(
    worker: str, plan_ms: int, claimed_ms: int, attempt: int = 1, claim: str | None = None
) -> bytes:
    """A running marker's value; a retry rewrites it with its attempt, so a run lost in the
    middle of one is recorded as that attempt. ``claim``: an id no other claim has (see
    TickClaimer)."""
    marker: dict[str, object] = {"worker": worker, "planTime": plan_ms, "claimedAt": claimed_ms}
    if attempt > 1:
        marker["attempt"] = attempt
    if claim is not None:
        marker["claim"] = claim
    return json.dumps(marker).encode()


def _decode(job_name: str, value: bytes) -> LostRun | None:
    try:
        data = json.loads(value)
        return LostRun(
            job_name, int(data["planTime"]), str(data["worker"]), data.get("claimedAt"),
            int(data.get("attempt", 1)),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def marker_plan(value: bytes) -> int | None:
    """The planned tick a running marker names, or None if it is not one of ours."""
    try:
        return int(json.loads(value)["planTime"])
    except (ValueError, KeyError, TypeError):
        return None
