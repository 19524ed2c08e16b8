"""A running marker's value (see gdts.keys: ``lock/running/<bb>/<name>@<gen>[/<ms>]``): the
worker that runs the run writes it, other workers (who died with whom, which ticks are taken)
and managers (what runs where) read it. Pure: the one place its format is written down."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gdts.runrecord import ChainStep


@dataclass(frozen=True)
class RunningMarker:
    worker: str
    plan_ms: int
    claimed_ms: int | None
    attempt: int = 1
    chain: ChainStep | None = None  # the chain run's step it is, if one


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


def read_marker(value: bytes) -> RunningMarker | None:
    """A running marker's value read back; None if it is not one of ours."""
    try:
        data = json.loads(value)
        chain = data.get("chain")
        return RunningMarker(
            str(data["worker"]), int(data["planTime"]), data.get("claimedAt"),
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
