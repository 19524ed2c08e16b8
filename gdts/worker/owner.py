"""Which worker should claim a job's ticks first: rendezvous (highest-random-weight) hashing
over the live workers. Pure.

Only the owner claims a tick when it falls due; the others wait a moment and step in only if no
claim appeared (the owner is gone or late). This keeps etcd requests per run constant however
many workers there are. It is an optimisation only: at-most-once still rests on the claim
transaction in etcd, so two workers that briefly disagree on the owner cost a request, never a
duplicate. When a worker joins or leaves, only the jobs it owned (about 1/n) change owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(worker_id: str, job_name: str) -> int:
    # Deterministic across processes (unlike hash()), and spread well for similar names.
    digest = hashlib.blake2b(f"{worker_id}\0{job_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(job_name: str, workers: Iterable[str]) -> str | None:
    best: tuple[int, str] | None = None
    for worker_id in workers:
        candidate = (_weight(worker_id, job_name), worker_id)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None
