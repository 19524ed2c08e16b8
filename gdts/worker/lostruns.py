"""Which runs died with their worker. Pure: no I/O.

A running marker is deleted either by its worker (the run finished) or by etcd when the worker's
lease expires. In the second case etcd deletes every key on the lease in one revision, the
worker's registration among them: the markers that were on that lease one revision earlier are
exactly the runs that died with it. The worker that speaks for the dead reads them there (see
deadruns), once per death, so no worker has to follow every marker's deletion to tell the cases
apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gdts.keys import RunningKey
from gdts.markers import read_marker
from gdts.runrecord import ChainStep


@dataclass(frozen=True)
class LostRun:
    job_name: str
    plan_ms: int
    worker: str
    claimed_ms: int | None
    attempt: int = 1  # the attempt going on when the worker died (see running_marker)
    chain: ChainStep | None = None  # the chain run's step it was, if one
    output: str = ""  # what its worker wrote of its output before it died (see liveflush)


def lost_with(lease: int, markers: Iterable[tuple[RunningKey, int, bytes]]) -> list[LostRun]:
    """The runs whose markers (key, lease, value), as they were the revision before ``lease``
    expired, were on that lease. Values that are not our markers are skipped."""
    if lease == 0:  # a key without a lease is not deleted by a lease expiry
        return []
    lost = []
    for marker, marker_lease, value in markers:
        if marker_lease == lease and (run := _decode(marker.name, value)) is not None:
            lost.append(run)
    return lost


def _decode(job_name: str, value: bytes) -> LostRun | None:
    marker = read_marker(value)
    if marker is None:
        return None
    return LostRun(job_name, marker.plan_ms, marker.worker, marker.claimed_ms, marker.attempt,
                   marker.chain)  # fmt: skip
