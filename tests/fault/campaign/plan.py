"""What a fault campaign does, decided up front from its seed. Pure: no I/O, no clock.

The jobs: a mix of concurrency policies, retries and timeouts, every second, each command
writing a start and an end line (see commands). The nemesis: faults at random moments and of
random kinds and lengths, never more than the cluster can lose and still have a healthy,
connected worker and a quorum (one etcd member, one MongoDB member, two workers at a time).
The same seed gives the same jobs, the same faults at the same offsets and the same API
traffic, so a campaign that found something can be replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKERS = 4
MANAGERS = 2
ETCD_MEMBERS = 3
MONGO_MEMBERS = 3

# kind -> (shortest, longest) seconds it lasts
FAULT_LENGTHS: dict[str, tuple[float, float]] = {
    "kill-worker": (1.0, 6.0),  # SIGKILL, restarted after this long
    "stop-worker": (1.0, 15.0),  # SIGSTOP, SIGCONT after this long
    "kill-etcd-leader": (1.0, 8.0),  # SIGKILL the leader, restarted after this long
    "cut-worker-etcd": (1.0, 12.0),  # the worker's connections to etcd dropped
    "stall-worker-etcd": (1.0, 12.0),  # the worker's connections to etcd stop moving
    "kill-mongo-primary": (2.0, 15.0),  # SIGKILL the primary, restarted after this long
    "restart-manager": (0.5, 3.0),  # SIGKILL a manager, started again after this long
    "skew-worker-clock": (10.0, 30.0),  # a worker restarted with its clock off by up to 3 s
}
# What each kind takes away while it lasts: at most one etcd member, one MongoDB member and two
# workers may be out at once (a manager: one of two).
_TAKES = {
    "kill-worker": "worker",
    "stop-worker": "worker",
    "cut-worker-etcd": "worker",
    "stall-worker-etcd": "worker",
    "skew-worker-clock": "worker",
    "kill-etcd-leader": "etcd",
    "kill-mongo-primary": "mongo",
    "restart-manager": "manager",
}
_AT_MOST = {"worker": 2, "etcd": 1, "mongo": 1, "manager": 1}
MAX_SKEW_MS = 3000


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float  # from the campaign's start
    length_s: float
    target: int  # which worker or manager (etcd and MongoDB: whoever leads then)
    skew_ms: int = 0  # skew-worker-clock only

    @property
    def ends_s(self) -> float:
        return self.at_s + self.length_s


@dataclass(frozen=True)
class JobSpec:
    name: str
    policy: str  # forbid, allow or replace
    sleep_s: float  # how long its command runs
    retries: int = 0  # its first attempt fails, so each tick retries once
    timeout_s: float | None = None
    # Whether every tick of it should run while it is enabled: not for a forbid job whose runs
    # outlast the second (its ticks are skipped while the one before goes on, by design).
    every_tick: bool = True


@dataclass(frozen=True)
class ApiCall:
    at_s: float
    action: str  # disable, enable, delete, save, kill, run
    job: str


@dataclass(frozen=True)
class Plan:
    seed: int
    duration_s: float
    jobs: list[JobSpec]
    faults: list[Fault]
    calls: list[ApiCall]


def make_plan(seed: int, duration_s: float, jobs: int = 50, mean_gap_s: float = 6.0) -> Plan:
    rng = random.Random(seed)
    specs = _jobs(rng, jobs)
    return Plan(seed, duration_s, specs, _faults(rng, duration_s, mean_gap_s),
                _calls(rng, duration_s, specs))  # fmt: skip


def _jobs(rng: random.Random, count: int) -> list[JobSpec]:
    kinds = [
        lambda n: JobSpec(n, "forbid", 0.2),
        lambda n: JobSpec(n, "forbid", rng.uniform(1.2, 2.5), every_tick=False),
        lambda n: JobSpec(n, "allow", 2.0),
        lambda n: JobSpec(n, "replace", 3.0),
        lambda n: JobSpec(n, "forbid", 0.1, retries=1),
        lambda n: JobSpec(n, "forbid", 5.0, timeout_s=0.5),
    ]
    return [kinds[i % len(kinds)](f"c{i:02d}") for i in range(count)]


def _faults(rng: random.Random, duration_s: float, mean_gap_s: float) -> list[Fault]:
    """Faults from 10 s in until 15 s before the end (the cluster settles first, and the last
    ticks are checked with every part up)."""
    faults: list[Fault] = []
    at = 10.0
    kinds = sorted(FAULT_LENGTHS)
    while True:
        at += rng.expovariate(1 / mean_gap_s)
        kind = rng.choice(kinds)
        low, high = FAULT_LENGTHS[kind]
        length = round(rng.uniform(low, high), 1)
        if at + length > duration_s - 15:
            return faults
        takes = _TAKES[kind]
        going = [f for f in faults if f.ends_s > at and _TAKES[f.kind] == takes]
        if len(going) >= _AT_MOST[takes]:
            continue
        busy = {f.target for f in going}
        pool = range(WORKERS if takes == "worker" else MANAGERS if takes == "manager" else 1)
        free = [t for t in pool if t not in busy]
        if not free:
            continue
        target = rng.choice(free)
        skew = rng.randint(-MAX_SKEW_MS, MAX_SKEW_MS) if kind == "skew-worker-clock" else 0
        faults.append(Fault(kind, round(at, 1), length, target, skew))


def _calls(rng: random.Random, duration_s: float, jobs: list[JobSpec]) -> list[ApiCall]:
    """API traffic throughout: a call every 2 s on average. A job once deleted is not saved
    again under its name (a new name would be): each name is one job's whole life."""
    calls = []
    deleted: set[str] = set()
    at = 5.0
    while True:
        at += rng.expovariate(1 / 2.0)
        if at > duration_s - 10:
            return calls
        alive = [j.name for j in jobs if j.name not in deleted]
        if not alive:
            return calls
        job = rng.choice(alive)
        action = rng.choices(
            ["disable", "enable", "save", "kill", "run", "delete"], [4, 4, 3, 3, 3, 1]
        )[0]
        if action == "delete":
            deleted.add(job)
        calls.append(ApiCall(round(at, 2), action, job))
