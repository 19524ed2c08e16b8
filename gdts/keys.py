"""The etcd key layout, in one place. Pure: no I/O.

Layout under the prefix (default ``/gdts/``)::

    jobs/<name>                   job JSON (no lease)
    killer/<name>                 kill marker, on a short lease so it expires by itself
    lock/tick/<name>@<gen>/<ms>   claim of one planned tick, on a lease that outlives the window
    lock/running/<bb>/<name>@<gen>  "a run of <name> is going", on the running worker's lease
    lock/running/<bb>/<name>@<gen>/<ms>  the same for one run of a job whose runs may overlap
    done/<name>/<ms>              a one-shot job's run at <ms> was claimed: never again (no lease)
    run/<name>/<ms>               "run <name> now" (POST /job/run), on a lease; the claim deletes it
    workers/<worker-id>           registration, on the worker's lease
    linked/<name>/<by>            "job <by> names <name> in its parents or children" (no lease)
    secrets/<team>/<name>         a team's secret, sealed (see gdts.secretbox; no lease)

``<gen>`` is the job's generation: the etcd revision that created ``jobs/<name>``. A job deleted
and saved again under the same name is a new generation, so its claims and running markers
never meet the old job's (a run kept going with keepRunning, say); kill markers name the
generation they kill (see kill_marker). ``done/`` and ``run/`` are removed with the job.

``<bb>`` is the job's bucket (bucket_of: two hex digits, from a hash of its name). Workers split
the buckets among themselves (see gdts.worker.partition), and each watches the running markers
of its own buckets alone, not every run in the cluster.

``linked/`` is an index of the chains' links, written in the same transaction as the job that
names them (see gdts.manager.chainlinks), so a delete finds who names a job without reading
every job.

Job names never contain ``/``, so ``lock/tick/<name>@<gen>/`` cannot collide between two jobs
(the generation is the digits after the last ``@``). Running markers have a prefix of their own
so workers can watch them alone, without the tick claims.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from gdts.errors import ConfigError

BUCKETS = 256  # part of the key layout: every worker and manager must agree on it

# A kill marker's payload when the job was deleted (its runs die with it, and say so).
KILLED_BY_DELETE = b"deleted"


@dataclass(frozen=True)
class KillOrder:
    """What a kill marker asks: kill the runs of one generation of the job (None: of any,
    as markers written before generations did), those planned before ``before_plan_ms`` (None:
    every run), and whether the job was deleted."""

    generation: int | None
    before_plan_ms: int | None = None
    deleted: bool = False


def kill_marker(generation: int, payload: bytes = b"") -> bytes:
    """A kill marker's value: ``<gen>:`` then empty (/job/kill), a planned time in ms (policy
    replace: the runs planned before it) or KILLED_BY_DELETE."""
    return str(generation).encode() + b":" + payload


def read_kill_marker(value: bytes) -> KillOrder:
    head, colon, payload = value.partition(b":")
    generation = int(head) if colon and head.isdigit() else None
    if generation is None:
        payload = value
    before = int(payload) if payload.isdigit() else None
    return KillOrder(generation, before, payload == KILLED_BY_DELETE)


@dataclass(frozen=True)
class RunningKey:
    """What a running marker's key names."""

    name: str
    generation: int
    plan_ms: int | None  # the run's own marker (policy allow), or None for the job's one


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "/gdts/"

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/") or "//" in self.prefix:
            raise ConfigError("etcdPrefix", f"must start and end with '/' (got {self.prefix!r})")

    def _key(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    @functools.cached_property
    def jobs_prefix(self) -> bytes:
        return self._key("jobs", "")

    @functools.cached_property
    def killer_prefix(self) -> bytes:
        return self._key("killer", "")

    @functools.cached_property
    def workers_prefix(self) -> bytes:
        return self._key("workers", "")

    @functools.cached_property
    def lock_prefix(self) -> bytes:
        return self._key("lock", "")

    def job(self, name: str) -> bytes:
        return self._key("jobs", name)

    def killer(self, name: str) -> bytes:
        """Kill marker (its value: see kill_marker)."""
        return self._key("killer", name)

    def worker(self, worker_id: str) -> bytes:
        return self._key("workers", worker_id)

    def chain(self, chain_id: str) -> bytes:
        """A chain run under way (see gdts.worker.chainruns): its plan and its steps' ends."""
        return self._key("chains", chain_id)

    @functools.cached_property
    def chains_prefix(self) -> bytes:
        return self._key("chains", "")

    def link(self, name: str, by: str) -> bytes:
        """Job ``by`` names job ``name`` in its parents or children (the value says which)."""
        return self._key("linked", name, by)

    def links_to(self, name: str) -> bytes:
        """The prefix of the links that name one job."""
        return self._key("linked", name, "")

    def link_by(self, name: str, key: bytes) -> str:
        """The job that holds a link to ``name``, from the link's key."""
        return _strip(key, self.links_to(name))

    @functools.cached_property
    def run_prefix(self) -> bytes:
        return self._key("run", "")

    def run_request(self, name: str, requested_ms: int) -> bytes:
        return self._key("run", name, str(requested_ms))

    def run_requests_of(self, name: str) -> bytes:
        """The prefix of one job's run requests."""
        return self._key("run", name, "")

    def run_request_parts(self, key: bytes) -> tuple[str, int]:
        """(job name, requested ms) of a run request key."""
        rest = key[len(self.run_prefix) :].decode(errors="replace")
        name, _, ms = rest.rpartition("/")
        if not key.startswith(self.run_prefix) or not name or "/" in name or not ms.isdigit():
            raise ValueError(f"key {key!r} is not a run request under {self.run_prefix!r}")
        return name, int(ms)

    @functools.cached_property
    def running_prefix(self) -> bytes:
        return self._key("lock", "running", "")

    def running_bucket_prefix(self, bucket: int) -> bytes:
        """The prefix of the running markers of one bucket's jobs."""
        return self._key("lock", "running", f"{bucket:02x}", "")

    def running_buckets_range(self, first: int, end: int) -> tuple[bytes, bytes]:
        """(key, range end) of the running markers of buckets ``first`` to ``end`` - 1."""
        if end < BUCKETS:
            return self.running_bucket_prefix(first), self.running_bucket_prefix(end)
        prefix = self.running_prefix  # to the end of it: "/" + 1 is "0"
        return self.running_bucket_prefix(first), prefix[:-1] + bytes([prefix[-1] + 1])

    def tick_claim(self, name: str, generation: int, plan_ms: int) -> bytes:
        return self._key("lock", "tick", _of(name, generation), str(plan_ms))

    @functools.cached_property
    def tick_claim_prefix(self) -> bytes:
        return self._key("lock", "tick", "")

    def tick_claim_parts(self, key: bytes) -> tuple[str, int, int]:
        """(job name, generation, planned ms) of a tick claim's key."""
        if not key.startswith(self.tick_claim_prefix):
            raise ValueError(f"key {key!r} is not under {self.tick_claim_prefix!r}")
        of, _, plan = key[len(self.tick_claim_prefix) :].decode(errors="replace").rpartition("/")
        name, at, generation = of.rpartition("@")
        if not name or not at or not generation.isdigit() or not plan.isdigit():
            raise ValueError(f"key {key!r} is not a tick claim")
        return name, int(generation), int(plan)

    def done(self, name: str, plan_ms: int) -> bytes:
        return self._key("done", name, str(plan_ms))

    def done_prefix(self, name: str) -> bytes:
        return self._key("done", name, "")

    def running(self, name: str, generation: int, plan_ms: int | None = None) -> bytes:
        """The running marker of the job's generation; with ``plan_ms``, the marker of that one
        run (a job whose runs may overlap has one per run)."""
        bucket = f"{bucket_of(name):02x}"
        if plan_ms is None:
            return self._key("lock", "running", bucket, _of(name, generation))
        return self._key("lock", "running", bucket, _of(name, generation), str(plan_ms))

    def running_parts(self, key: bytes) -> RunningKey:
        if not key.startswith(self.running_prefix):
            raise ValueError(f"key {key!r} is not under {self.running_prefix!r}")
        rest = key[len(self.running_prefix) :].decode(errors="replace")
        bucket, _, rest = rest.partition("/")
        of, slash, plan = rest.partition("/")
        name, at, generation = of.rpartition("@")
        if (
            not name
            or not at
            or not generation.isdigit()
            or (slash and not plan.isdigit())
            or len(bucket) != 2  # which bucket is not checked: a hash per event, for nothing
        ):
            raise ValueError(f"key {key!r} is not a running marker under {self.running_prefix!r}")
        return RunningKey(name, int(generation), int(plan) if slash else None)

    def running_name(self, key: bytes) -> str:
        return self.running_parts(key).name

    def worker_id(self, key: bytes) -> str:
        return _strip(key, self.workers_prefix)

    def job_name(self, key: bytes) -> str:
        return _strip(key, self.jobs_prefix)

    @functools.cached_property
    def secrets_prefix(self) -> bytes:
        return self._key("secrets", "")

    def secret(self, team: str, name: str) -> bytes:
        """A team's secret. Team names never contain '/' (they are checked as job names are),
        secret names neither (see gdts.secretbox)."""
        return self._key("secrets", team, name)

    def team_secrets(self, team: str) -> bytes:
        return self._key("secrets", team, "")

    def secret_parts(self, key: bytes) -> tuple[str, str]:
        """(team, secret name) of a secret's key."""
        rest = key[len(self.secrets_prefix) :].decode(errors="replace")
        team, slash, name = rest.partition("/")
        if (
            not key.startswith(self.secrets_prefix)
            or not slash
            or not team
            or not name
            or ("/" in name)
        ):
            raise ValueError(f"key {key!r} is not a secret under {self.secrets_prefix!r}")
        return team, name

    def killer_name(self, key: bytes) -> str:
        return _strip(key, self.killer_prefix)


def bucket_of(name: str) -> int:
    """The job's bucket: the same in every process (unlike hash()) and spread evenly."""
    digest = hashlib.blake2b(name.encode(), digest_size=2).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _of(name: str, generation: int) -> str:
    return f"{name}@{generation}"


def _strip(key: bytes, prefix: bytes) -> str:
    if not key.startswith(prefix):
        raise ValueError(f"key {key!r} is not under {prefix!r}")
    name = key[len(prefix) :].decode(errors="replace")
    if not name or "/" in name:
        # e.g. another deployment whose prefix nests under ours: not one of our jobs.
        raise ValueError(f"key {key!r} does not name a job under {prefix!r}")
    return name
