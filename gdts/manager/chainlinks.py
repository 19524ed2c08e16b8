"""The manager's side of chains (see gdts.chains): what a save and a delete of a job must also
compare and write in etcd for its parents and children.

- A save (or a clone) of a job with parents or children reads every stored job's links, checks
  that every chain holding the job can still run (check_graph: no cycle, no unknown job, at
  most 10 levels and 50 steps on a level) and that a user chains only their own jobs, and
  writes in the same transaction as the job, comparing that no job was written since the read
  and that the jobs it names are still there. A save without links reads nothing more.
- Each link is also a key, ``linked/<named>/<by>`` (see gdts.keys), written and removed with
  the job that holds it: a delete of a job that another job names is refused (409, naming
  them) in the delete's own transaction, without reading every job.

The pure helpers (what to write, what a refusal says) are module functions; ChainLinks does the
I/O and JobStore puts what it returns into its transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetcd import utils

from gdts.chains import (
    NO_LINKS,
    ChainError,
    ChainPlan,
    Links,
    check_graph,
    expand,
    parse_links,
)
from gdts.errors import ConflictError, ForbiddenError, InvalidFieldError, NotFoundError
from gdts.etcd import EtcdClient, etcd_errors, read_prefix
from gdts.job import api_views
from gdts.jobfields import DEFAULT_TEAM, team_of, validate_name
from gdts.keys import KeyLayout
from gdts.manager.jobguard import JobGuard

# What a link's value says: which list of the job that holds it names the other job.
PARENTS = "parents"
CHILDREN = "children"


@dataclass
class LinkWrites:
    """What a job's write compares and does in etcd besides writing the job, for its links."""

    compare: list[Any] = field(default_factory=list)
    success: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class StoredJob:
    """What a chain check needs of a stored job."""

    owner: str
    links: Links
    owner_id: str = ""
    team: str = DEFAULT_TEAM

    def guarded(self) -> dict[str, str]:
        """What the job guard reads of it (see jobguard)."""
        return {"owner": self.owner, "ownerId": self.owner_id, "team": self.team}


def links_of_view(view: Mapping[str, Any]) -> Links:
    """A stored job's links from its API view (checked when it was saved)."""
    return parse_links(view, validate_name)


def link_changes(old: Links, new: Links) -> tuple[dict[str, str], list[str]]:
    """What a job's links index needs when its links go from ``old`` to ``new``: the links to
    write (named job -> which list names it) and the named jobs whose link goes. A job named
    in both versions is written again only if it moved from one list to the other."""
    before = _named(old)
    after = _named(new)
    write = {name: side for name, side in after.items() if before.get(name) != side}
    remove = sorted(name for name in before if name not in after)
    return write, remove


def _named(links: Links) -> dict[str, str]:
    # A job in both lists would be a cycle, which no save lets through.
    return {**dict.fromkeys(links.children, CHILDREN), **dict.fromkeys(links.parents, PARENTS)}


def named_in(referrers: Mapping[str, str]) -> str:
    """Who names a job, for people: "the parents of 'b' and the children of 'a', 'c'"."""
    parts = []
    for side in (PARENTS, CHILDREN):
        names = sorted(by for by, its_side in referrers.items() if its_side == side)
        if names:
            parts.append(f"the {side} of " + ", ".join(repr(name) for name in names))
    return " and ".join(parts)


def delete_refusal(name: str, referrers: Mapping[str, str]) -> ConflictError:
    return ConflictError(
        "name",
        f"job {name!r} is in {named_in(referrers)}: a chain would be left naming a job that "
        f"does not exist; remove {name!r} from their lists first",
    )


def foreign_step(
    name: str, links: Links, old: Links, jobs: Mapping[str, StoredJob], guard: JobGuard
) -> ForbiddenError | None:
    """Why ``guard``'s caller may not save ``name`` with ``links`` (over ``old``): its chain
    run would now run a job they may not run themselves (/job/run needs the same right); None
    if they may. What its chain ran already (an admin chained it) may stay."""
    plan = _plan(name, links, jobs)
    before = set(_plan(name, old, jobs).steps) if old else set()
    for index, step in enumerate(plan.steps):
        if step == name or step in before:
            continue
        owner = jobs[step].owner
        try:
            guard.check(step, jobs[step].guarded())
        except (ForbiddenError, NotFoundError):
            side = PARENTS if index < plan.head else CHILDREN
            whose = f"belongs to {owner!r}" if owner else "has no owner"
            return ForbiddenError(
                f"{side}: its chain run would run job {step!r}, which {whose}; a user may "
                "chain only their own jobs, as they may run only their own"
            )
    return None


def _plan(name: str, links: Links, jobs: Mapping[str, StoredJob]) -> ChainPlan:
    def links_of(other: str) -> Links | None:
        return links if other == name else _links_or_none(jobs, other)

    try:
        return expand(name, links_of)
    except ChainError:  # an old version's chain that cannot run now: it ran nothing
        return ChainPlan((name,), 0, 0)


def _links_or_none(jobs: Mapping[str, StoredJob], name: str) -> Links | None:
    job = jobs.get(name)
    return None if job is None else job.links


def stored_jobs(names: Sequence[str], views: Sequence[Any]) -> dict[str, StoredJob]:
    """Every readable stored job's owner and links, by name; ``views``: api_views' answers.
    A record no process can read is left out: no chain can run it either."""
    found = {}
    for name, view in zip(names, views, strict=True):
        if isinstance(view, InvalidFieldError):
            continue
        try:
            links = links_of_view(view)
        except InvalidFieldError:
            continue
        found[name] = StoredJob(
            str(view.get("owner") or ""), links, str(view.get("ownerId") or ""), team_of(view)
        )
    return found


class ChainLinks:
    def __init__(self, client: EtcdClient, keys: KeyLayout) -> None:
        self._client = client
        self._keys = keys

    async def for_save(
        self, name: str, links: Links, previous: Mapping[str, Any] | None, guard: JobGuard
    ) -> LinkWrites:
        """What saving ``name`` with ``links`` over ``previous`` (its stored API view, None for
        a new job) also compares and writes. Raises ChainError (400 naming parents or
        children) or ForbiddenError (a user chaining another's job)."""
        old = _previous_links(previous)
        write, remove = link_changes(old, links)
        txn = self._client.transactions
        writes = LinkWrites(success=[txn.delete(self._keys.link(named, name)) for named in remove])
        if not links:
            # No chain to check: a save of a job without links costs no read of the others.
            return writes
        with etcd_errors():
            kvs, revision = await read_prefix(self._client, self._keys.jobs_prefix)
        names = [self._keys.job_name(kv.key) for kv in kvs]
        jobs = stored_jobs(names, api_views([kv.value for kv in kvs]))
        jobs.pop(name, None)  # its stored version is replaced
        if guard.visible_teams() is not None:
            # Another team's jobs are, to the caller, jobs that do not exist: naming one is the
            # same 400 ("no job is named 'x'") as naming a job nobody has.
            jobs = {job: stored for job, stored in jobs.items() if guard.sees(stored.team)}
        check_graph(name, links, {job: stored.links for job, stored in jobs.items()})
        if links != old:
            refusal = foreign_step(name, links, old, jobs, guard)
            if refusal is not None:
                raise refusal
        prefix = self._keys.jobs_prefix
        # No job written since the read (the graph checked is the graph saved into; a job
        # deleted does not show here, but only one that this job names matters, and those are
        # compared one by one).
        writes.compare.append(txn.mod(prefix, utils.prefix_range_end(prefix)) < revision + 1)
        for named in (*links.parents, *links.children):
            writes.compare.append(txn.version(self._keys.job(named)) > 0)
        writes.success += [
            txn.put(self._keys.link(named, name), side.encode()) for named, side in write.items()
        ]
        return writes

    def for_delete(self, name: str, previous: Mapping[str, Any] | None) -> LinkWrites:
        """What deleting ``name`` also compares (no job names it) and removes (its own links);
        on failure, the transaction should read ``referrers_read(name)``."""
        txn = self._client.transactions
        links_to = self._keys.links_to(name)
        writes = LinkWrites(
            # Over a range with no key, etcd compares an empty one: version 0.
            compare=[txn.version(links_to, utils.prefix_range_end(links_to)) == 0],
        )
        _, remove = link_changes(_previous_links(previous), NO_LINKS)
        writes.success += [txn.delete(self._keys.link(named, name)) for named in remove]
        return writes

    def referrers_read(self, name: str) -> Any:
        """The transaction read of the links that name ``name``."""
        links_to = self._keys.links_to(name)
        return self._client.transactions.get(links_to, utils.prefix_range_end(links_to))

    def referrers(self, name: str, reply: Sequence[tuple[bytes, Any]]) -> dict[str, str]:
        """Who names ``name`` (job -> which of its lists), from referrers_read's reply."""
        found = {}
        for value, meta in reply:
            try:
                found[self._keys.link_by(name, meta.key)] = value.decode(errors="replace")
            except ValueError:
                continue  # not a link of ours
        return found


def _previous_links(previous: Mapping[str, Any] | None) -> Links:
    if previous is None or "raw" in previous:  # none, or a record nobody can read
        return NO_LINKS
    try:
        return links_of_view(previous)
    except InvalidFieldError:
        return NO_LINKS
