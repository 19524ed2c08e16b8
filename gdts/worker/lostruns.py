"""Telling a run whose worker died from a run that finished. Pure: no I/O, "now" passed in.

A running marker is deleted either by its worker (the run finished) or by etcd when the worker's
lease expires. In the second case etcd deletes every key on the lease in one revision, so the
worker's registration disappears at exactly the same revision. Joining the two deletions on
(lease, revision) tells the cases apart with no extra etcd request. The two events come through
different watches, in either order, so each side waits a while for the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

Join = tuple[int, int]  # (lease id, revision)


@dataclass(frozen=True)
class LostRun:
    job_name: str
    plan_ms: int
    worker: str
    claimed_ms: int | None


class LostRunDetector:
    def __init__(self, horizon_ms: int) -> None:
        self._horizon_ms = horizon_ms
        self._markers: dict[Join, list[tuple[LostRun, int]]] = {}
        self._registrations: dict[Join, int] = {}

    def marker_deleted(
        self, job_name: str, lease: int, revision: int, value: bytes, now_ms: int
    ) -> LostRun | None:
        """A running marker vanished; returns the lost run if its lease is known to be dead."""
        run = _decode(job_name, value)
        if run is None or lease == 0:
            return None
        if (lease, revision) in self._registrations:
            return run
        self._markers.setdefault((lease, revision), []).append((run, now_ms))
        return None

    def registration_deleted(self, lease: int, revision: int, now_ms: int) -> list[LostRun]:
        """A worker's registration vanished; returns the runs that went with its lease."""
        waiting = self._markers.pop((lease, revision), [])
        self._registrations[(lease, revision)] = now_ms
        return [run for run, _ in waiting]

    def expire(self, now_ms: int) -> None:
        """Forget deletions too old to be joined any more (markers released by their worker)."""
        oldest = now_ms - self._horizon_ms
        self._markers = {
            join: kept
            for join, runs in self._markers.items()
            if (kept := [(run, at) for run, at in runs if at >= oldest])
        }
        self._registrations = {j: at for j, at in self._registrations.items() if at >= oldest}

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._markers.values()) + len(self._registrations)


def running_marker(worker: str, plan_ms: int, claimed_ms: int) -> bytes:
    return json.dumps({"worker": worker, "planTime": plan_ms, "claimedAt": claimed_ms}).encode()


def _decode(job_name: str, value: bytes) -> LostRun | None:
    try:
        data = json.loads(value)
        return LostRun(job_name, int(data["planTime"]), str(data["worker"]), data.get("claimedAt"))
    except (ValueError, KeyError, TypeError):
        return None


def marker_plan(value: bytes) -> int | None:
    """The planned tick a running marker names, or None if it is not one of ours."""
    try:
        return int(json.loads(value)["planTime"])
    except (ValueError, KeyError, TypeError):
        return None
