"""Which runs died with their worker. Pure: no I/O.

A running marker is deleted either by its worker (the run finished) or by etcd when the worker's
lease expires. In the second case etcd deletes every key on the lease in one revision, the
worker's registration among them: the markers that were on that lease one revision earlier are
exactly the runs that died with it. The worker that speaks for the dead reads them there (see
deadruns), once per death, so no worker has to follow every marker's deletion to tell the cases
apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from gdts.keys import RunningKey
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


def running_marker(
    worker: str,
    plan_ms: int,
    claimed_ms: int,
    attempt: int = 1,
    claim: str | None = None,
    chain: ChainStep | None = None,
) -> bytes:
    """A running marker's value; a retry rewrites it with its attempt, so a run lost in the
    middle of one is recorded as that attempt. ``claim``: an id no other claim has (see
    TickClaimer); ``chain``: the chain run's step it is, so its loss moves that run on."""
    marker: dict[str, object] = {"worker": worker, "planTime": plan_ms, "claimedAt": claimed_ms}
    if attempt > 1:
        marker["attempt"] = attempt
    if claim is not None:
        marker["claim"] = claim
    if chain is not None:
        marker["chain"] = [chain.chain_id, chain.step, chain.steps]
    return json.dumps(marker).encode()


def _decode(job_name: str, value: bytes) -> LostRun | None:
    try:
        data = json.loads(value)
        chain = data.get("chain")
        return LostRun(
            job_name, int(data["planTime"]), str(data["worker"]), data.get("claimedAt"),
            int(data.get("attempt", 1)),
            None if chain is None else ChainStep(str(chain[0]), int(chain[1]), int(chain[2])),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def marker_plan(value: bytes) -> int | None:
    """The planned tick a running marker names, or None if it is not one of ours."""
    try:
        return int(json.loads(value)["planTime"])
    except (ValueError, KeyError, TypeError):
        return None


def marker_worker(value: bytes) -> str | None:
    """The worker a running marker names, or None if it is not one of ours."""
    try:
        return str(json.loads(value)["worker"])
    except (ValueError, KeyError, TypeError):
        return None
