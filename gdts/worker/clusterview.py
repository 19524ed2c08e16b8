"""What this worker knows of the rest of the cluster, as the watch shows it: the live workers
(and so which buckets of jobs this one looks after, and which it owns), the runs going on in
those buckets, the ticks already claimed, when each job was last seen claimed, and the manual
runs asked for. Pure: no I/O, "now" passed in.

The scheduler reads it to decide, without asking etcd, whether to claim a tick (see takeover);
at-most-once never rests on it, only on the claim transaction.
"""

from __future__ import annotations

from collections import deque

from gdts.job import Job
from gdts.keys import RunningKey, bucket_of
from gdts.markers import marker_plan
from gdts.routing import Candidate, Labels, eligible, rank
from gdts.worker.partition import Partition
from gdts.worker.ticktable import next_plan


class ClusterView:
    def __init__(self, worker_id: str, claim_memory_ms: int) -> None:
        """``claim_memory_ms``: how long a claimed tick is remembered (two start windows: past
        that, nobody would claim the tick any more)."""
        self.worker_id = worker_id
        self._claim_memory_ms = claim_memory_ms
        self.workers: dict[str, int] = {}  # live worker id -> its lease
        self.cards: dict[str, Candidate] = {}  # live worker id -> what its registration says
        self.full: set[str] = set()  # live workers that said they are at maxConcurrentRuns
        self._groups: dict[Labels, list[Candidate]] = {}  # host group -> its live members
        self._partition: Partition | None = None  # for the current workers, made when asked
        self._owned: dict[str, bool] = {}  # job -> whether we own it, for the current workers
        # (job, generation) -> its one running marker: it runs somewhere (blocks a takeover)
        self.running: dict[tuple[str, int], bytes] = {}
        # (job, generation, planned ms) seen claimed, and in the order seen
        self._claimed: set[tuple[str, int, int]] = set()
        self._claimed_order: deque[tuple[int, tuple[str, int, int]]] = deque()
        self._last_claim_seen: dict[str, int] = {}  # job -> when (our clock) a claim was seen
        self.run_requests: set[bytes] = set()  # POST /job/run requests not yet claimed

    # -- workers --------------------------------------------------------------------------------

    def workers_reset(self, workers: dict[str, int], cards: dict[str, Candidate]) -> None:
        self.workers = dict(workers)
        self.cards = {worker_id: cards[worker_id] for worker_id in workers if worker_id in cards}
        self.full = {worker_id for worker_id, card in self.cards.items() if card.full}
        self._groups.clear()
        self._workers_changed()

    def worker_registered(self, worker_id: str, lease: int, card: Candidate) -> None:
        if worker_id not in self.workers:
            self._workers_changed()
        self.workers[worker_id] = lease
        self.cards[worker_id] = card
        self._groups.clear()
        if card.full:
            self.full.add(worker_id)
        else:
            self.full.discard(worker_id)

    def worker_gone(self, worker_id: str, lease: int) -> None:
        if self.workers.get(worker_id) == lease:
            del self.workers[worker_id]
            self.cards.pop(worker_id, None)
            self.full.discard(worker_id)
            self._groups.clear()
            self._workers_changed()

    def _workers_changed(self) -> None:
        self._partition = None
        self._owned.clear()

    @property
    def partition(self) -> Partition:
        if self._partition is None:
            self._partition = Partition(self.worker_id, self.workers)
        return self._partition

    def others_full(self) -> bool:
        """Whether every other live worker said it is at its cap (true when there is none)."""
        return all(w in self.full for w in self.workers if w != self.worker_id)

    def owns(self, job_name: str) -> bool:
        """Whether this worker claims the job's ticks first (see partition)."""
        owned = self._owned.get(job_name)
        if owned is None:
            owned = self._owned[job_name] = self.partition.owns(bucket_of(job_name))
        return owned

    def handles(self, job_name: str) -> bool:
        """Whether this worker schedules the job: as its owner or as its backup."""
        return self.partition.handles(bucket_of(job_name))

    def route(self, job: Job, plan_ms: int) -> list[str]:
        """The live workers that may run a routed job, in the order they are asked to claim the
        tick planned at ``plan_ms`` (see gdts.routing); empty: no live member of its group."""
        members = self._groups.get(job.host_group)
        if members is None:
            members = self._groups[job.host_group] = eligible(job.host_group, self.cards.values())
        step_ms = 1
        if job.routing == "roundRobin":
            following = next_plan(job, plan_ms)
            step_ms = 1 if following is None else following - plan_ms
        return rank(job.name, job.routing, plan_ms, step_ms, members)

    def note_claimed(self, claims: list[tuple[str, int, int]], now_ms: int) -> None:
        """Ticks (job, generation, planned ms) read as claimed in etcd: a bucket that comes to
        this worker brings ticks it never saw claimed, and must not claim them again."""
        for claim in claims:
            self._remember_claimed(claim, now_ms)

    def speaks_for_the_dead(self) -> bool:
        """Whether this worker records the runs of a dead worker: the lowest live id, as every
        worker sees it (should two views differ for a moment, the run log's unique index keeps
        a single record)."""
        return min([*self.workers, self.worker_id]) == self.worker_id

    # -- running markers ------------------------------------------------------------------------

    def running_reset(self, markers: list[tuple[RunningKey, bytes]], now_ms: int) -> None:
        self.running.clear()
        for marker, value in markers:
            self.marker_put(marker, value, now_ms)

    def marker_put(self, marker: RunningKey, value: bytes, now_ms: int) -> None:
        # Only a job's one marker says "the job is running"; a run of a job whose runs may
        # overlap has its own, which still tells its tick was claimed.
        if marker.plan_ms is None:
            self.running[marker.name, marker.generation] = value
        self._note_claimed(marker, value, now_ms)

    def marker_gone(self, marker: RunningKey) -> None:
        if marker.plan_ms is None:
            self.running.pop((marker.name, marker.generation), None)

    def _note_claimed(self, marker: RunningKey, value: bytes, now_ms: int) -> None:
        plan_ms = marker_plan(value)
        if plan_ms is None:
            return
        self._last_claim_seen[marker.name] = now_ms
        self._remember_claimed((marker.name, marker.generation, plan_ms), now_ms)
        horizon = now_ms - self._claim_memory_ms
        while self._claimed_order and self._claimed_order[0][0] < horizon:
            self._claimed.discard(self._claimed_order.popleft()[1])

    def _remember_claimed(self, key: tuple[str, int, int], now_ms: int) -> None:
        if key not in self._claimed:
            self._claimed.add(key)
            self._claimed_order.append((now_ms, key))

    def tick_claimed(self, job_name: str, generation: int, plan_ms: int) -> bool:
        return (job_name, generation, plan_ms) in self._claimed

    def last_claim_seen(self, job_name: str) -> int | None:
        return self._last_claim_seen.get(job_name)

    def job_deleted(self, job_name: str) -> None:
        self._last_claim_seen.pop(job_name, None)
