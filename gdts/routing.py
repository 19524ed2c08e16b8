"""Where a job runs: worker labels, host groups (label selectors) and routing strategies. Pure.

A job with a ``hostGroup`` is run only by the live workers whose labels match it; its
``routing`` orders those workers for each tick. Every worker computes the order alike from
the same inputs (the job, the tick, the live workers as the watch shows them), so the first
claims at once and the second steps in ``takeoverDelay`` later if no claim appeared, as an
owner and its backup do. When views briefly differ, two workers may claim at once (one loses
in etcd) or none may think itself first (the second steps in: a later start); at most once
per tick rests on the claim transaction alone.

A job with neither (``routing`` hash, no ``hostGroup``) is not routed here: the buckets of
gdts.worker.partition place it, which costs nothing per tick.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gdts.errors import InvalidFieldError

ROUTINGS = ("hash", "random", "roundRobin", "weighted", "leastBusy")
DEFAULT_ROUTING = "hash"
MAX_LABELS = 16
MAX_WEIGHT = 1000
# Label keys and values as Kubernetes allows them (so a fleet's existing labels fit), minus
# the key prefix: letters, digits, '-', '_', '.', beginning and ending with a letter or digit.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: hashable, one spelling each


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live worker as routing sees it, from its registration."""

    worker_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    busy: int = 0  # its runs going on, as it last said (at most once a second)
    full: bool = False  # at its maxConcurrentRuns
    leaving: bool = False  # stopping: claims nothing new


def parse_labels(field_name: str, value: object, *, allow_empty: bool = True) -> Labels:
    """Labels (a worker's ``labels``, a job's ``hostGroup``): an object of key: value
    strings, checked, as sorted pairs."""
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise InvalidFieldError(field_name, f"must be an object of key: value, got {kind}")
    if not value and not allow_empty:
        raise InvalidFieldError(field_name, "must name at least one label (or leave it out)")
    if len(value) > MAX_LABELS:
        raise InvalidFieldError(field_name, f"must have at most {MAX_LABELS} labels")
    pairs = []
    for key, text in value.items():
        if not _LABEL.fullmatch(key):
            raise InvalidFieldError(field_name, f"{key!r} is not a label key: {_RULE}")
        if not isinstance(text, str):
            raise InvalidFieldError(
                f"{field_name}.{key}", f"must be a string, got {type(text).__name__}"
            )
        if not _LABEL.fullmatch(text):
            raise InvalidFieldError(f"{field_name}.{key}", f"{text!r} is not a label value: "
                                    f"{_RULE}")  # fmt: skip
        pairs.append((key, text))
    return tuple(sorted(pairs))


_RULE = "1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def registration_info(value: bytes) -> dict[str, Any]:
    """A worker's registration value, decoded: {} when it is not a JSON object."""
    try:
        info = json.loads(value)
    except ValueError:  # UnicodeDecodeError included
        return {}
    return info if isinstance(info, dict) else {}


def read_card(worker_id: str, registration: Any) -> Candidate:
    """A worker's registration (its decoded JSON) as a Candidate. What a worker of an older
    version or a damaged value leaves out reads as the defaults: no labels, weight 1."""
    info = registration if isinstance(registration, dict) else {}
    raw_labels = info.get("labels")
    labels: dict[str, str] = {}
    if isinstance(raw_labels, dict):
        labels = {k: v for k, v in raw_labels.items() if isinstance(v, str)}
    weight = info.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        weight = 1
    busy = info.get("busy")
    if isinstance(busy, bool) or not isinstance(busy, int) or busy < 0:
        busy = 0
    return Candidate(
        worker_id,
        labels,
        weight,
        busy,
        full=info.get("atCapacity") is True,
        leaving=info.get("leaving") is True,
    )


def matches(selector: Labels, labels: Mapping[str, str]) -> bool:
    """Whether a worker with ``labels`` belongs to the host group ``selector`` (every label
    the group names, with its value; an empty group: every worker)."""
    return all(labels.get(key) == value for key, value in selector)


def selector_text(selector: Labels) -> str:
    return "{" + ", ".join(f"{key}={value}" for key, value in selector) + "}"


def no_live_member(host_group: Labels) -> str:
    """Why a tick of a job in this host group cannot run (its missed record, /job/run's 409)."""
    return f"no live worker in host group {selector_text(host_group)}"


def stored_labels(value: object) -> Labels:
    """A stored job's hostGroup (its API view's JSON object) as sorted pairs, not checked
    again: it was when the job was saved. Anything but an object reads as no host group."""
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((str(key), str(text)) for key, text in value.items()))


def is_routed(host_group: Labels, routing: str) -> bool:
    """Whether a job's placement is decided here rather than by its bucket."""
    return bool(host_group) or routing != DEFAULT_ROUTING


def eligible(host_group: Labels, workers: Iterable[Candidate]) -> list[Candidate]:
    """The workers that may run a job of this host group: members, not leaving."""
    return [w for w in workers if not w.leaving and matches(host_group, w.labels)]


def rank(
    job_name: str, routing: str, plan_ms: int, step_ms: int, workers: Sequence[Candidate]
) -> list[str]:
    """The eligible workers in the order they are asked to claim the tick planned at
    ``plan_ms``: the first at once, the second after takeoverDelay. ``step_ms``: the time to
    the job's next tick (roundRobin's turn is the tick's number in steps of it). Workers at
    their maxConcurrentRuns come after the others, in the same order."""
    if not workers:
        return []
    if routing == "roundRobin":
        ordered = sorted(workers, key=lambda w: w.worker_id)
        turn = (plan_ms // max(1, step_ms) + _hash(job_name, "", "")) % len(ordered)
        ordered = ordered[turn:] + ordered[:turn]
    elif routing == "weighted":
        # Weighted rendezvous hashing: each worker draws an exponential time with its weight
        # as rate; the soonest wins, so a worker wins in proportion to its weight.
        ordered = sorted(
            workers, key=lambda w: -math.log(_unit(job_name, plan_ms, w.worker_id)) / w.weight
        )
    elif routing == "leastBusy":
        ordered = sorted(workers, key=lambda w: (w.busy, -_hash(job_name, plan_ms, w.worker_id)))
    else:
        # hash: one order per job (its runs stay on one worker while it lives); random: a new
        # draw per tick, the same on every worker.
        key = plan_ms if routing == "random" else ""
        ordered = sorted(workers, key=lambda w: -_hash(job_name, key, w.worker_id))
    return [w.worker_id for w in ordered if not w.full] + [w.worker_id for w in ordered if w.full]


def _hash(job_name: str, key: object, worker_id: str) -> int:
    text = f"{job_name}\0{key}\0{worker_id}".encode(errors="surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _unit(job_name: str, key: object, worker_id: str) -> float:
    """A number in (0, 1) drawn from the hash, never 0 (its log is taken)."""
    return (_hash(job_name, key, worker_id) + 0.5) / 2**64
