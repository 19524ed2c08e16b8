"""The live workers as the manager reads them: the registrations under ``workers/``, read once
per request, each with what routing makes of it (gdts.routing.read_card, the one source of the
defaults an older worker's registration leaves out: no labels, weight 1, busy 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gdts.etcd import EtcdClient, etcd_errors, read_prefix
from gdts.keys import KeyLayout
from gdts.routing import Candidate, Labels, eligible, read_card, registration_info


@dataclass(frozen=True, slots=True)
class LiveWorker:
    """One registration: as the worker wrote it, and as routing reads it."""

    info: dict[str, Any]  # its decoded JSON ({} when it is not a JSON object)
    card: Candidate

    @property
    def id(self) -> str:
        """The id it says (what its running markers name), else its key's."""
        return str(self.info.get("id", self.card.worker_id))

    def listed(self, running: list[str]) -> dict[str, Any]:
        """What /worker/list shows of it: the registration with labels, weight and busy as
        routing reads them (so an older worker's shows the defaults it is routed by), and the
        jobs it runs now."""
        return {
            **self.info,
            "id": self.id,
            "labels": dict(self.card.labels),
            "weight": self.card.weight,
            "busy": self.card.busy,
            "running": running,
        }


def live_worker(worker_id: str, registration: bytes) -> LiveWorker:
    info = registration_info(registration)
    return LiveWorker(info, read_card(worker_id, info))


async def read_live_workers(client: EtcdClient, keys: KeyLayout) -> list[LiveWorker]:
    with etcd_errors():
        kvs, _ = await read_prefix(client, keys.workers_prefix)
    workers = []
    for kv in kvs:
        try:
            worker_id = keys.worker_id(kv.key)
        except ValueError:
            continue  # a key nested under ours: not a registration
        workers.append(live_worker(worker_id, kv.value))
    return workers


def count_members(host_group: Labels, workers: list[LiveWorker]) -> int:
    """How many of the live workers may run a job of this host group (as routing counts them:
    members not leaving)."""
    return len(eligible(host_group, (worker.card for worker in workers)))


def membership(workers: list[LiveWorker]) -> frozenset[tuple[str, Labels, bool]]:
    """What every host group's count depends on (each worker's id, labels and whether it is
    leaving; not its load): equal twice, every count is too."""
    return frozenset(
        (w.card.worker_id, tuple(sorted(w.card.labels.items())), w.card.leaving) for w in workers
    )
