"""Chains: a job's parents run before it and its children after it, each step an ordinary run of
its own job. Pure: what a chain run is made of, and what it runs next.

A tick of a job with parents or children is a chain run. Its plan is the job's ancestors (its
parents, each after its own parents, and so on up), then the job, then its descendants (its
children, each followed by its own children, and so on down); each job's parents, and each
job's children, run one after another (``serial``) or all at once (``parallel``), as that job
says. A step that does not succeed stops the chain: the steps after it do not run.

Limits, checked when a job is saved and again when a chain run starts: no job may reach itself
through parents or children (a cycle), a chain spans at most MAX_LEVELS levels (ancestors, the
job, descendants) and holds at most MAX_WIDTH steps on one level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gdts.errors import InvalidFieldError

CHAIN_MODES = ("serial", "parallel")
MAX_LEVELS = 10
MAX_WIDTH = 50

# A plan's tree, as JSON holds it: a step's index, {"seq": [...]} or {"par": [...]}.
Node = Any


@dataclass(frozen=True, slots=True)
class Links:
    """A job's place in chains: what runs before it and after it."""

    parents: tuple[str, ...] = ()
    parents_mode: str = "serial"
    children: tuple[str, ...] = ()
    children_mode: str = "serial"

    def __bool__(self) -> bool:
        return bool(self.parents or self.children)

    def edges(self, name: str) -> list[tuple[str, str]]:
        """The job's run-order edges: (runs first, runs after)."""
        return [(parent, name) for parent in self.parents] + [
            (name, child) for child in self.children
        ]


NO_LINKS = Links()


class ChainError(InvalidFieldError):
    """A chain that cannot run; the field is the job field that makes it so."""


def parse_links(given: Mapping[str, Any], check_name: Callable[[object, str], str]) -> Links:
    """A job's parents, parentsMode, children and childrenMode from untrusted values (absent:
    none, serial); ``check_name(value, field)`` checks one job name."""
    lists = {}
    for field_name in ("parents", "children"):
        value = given.get(field_name) or []
        if not isinstance(value, list):
            raise InvalidFieldError(field_name, f"must be a list of job names, got "
                                    f"{type(value).__name__}")  # fmt: skip
        if len(value) > MAX_WIDTH:
            raise ChainError(field_name, f"may name at most {MAX_WIDTH} jobs (got {len(value)})")
        names = tuple(check_name(name, f"{field_name}[{i}]") for i, name in enumerate(value))
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InvalidFieldError(field_name, f"names {twice[0]!r} twice")
        lists[field_name] = names
    modes = {}
    for field_name in ("parentsMode", "childrenMode"):
        mode = given.get(field_name, "serial")
        if mode not in CHAIN_MODES:
            raise InvalidFieldError(field_name, f"must be serial or parallel (got {mode!r})")
        modes[field_name] = mode
    return Links(lists["parents"], modes["parentsMode"], lists["children"],
                 modes["childrenMode"])  # fmt: skip


@dataclass(frozen=True)
class ChainPlan:
    """One chain run's steps (job names, by index) and the order they run in."""

    steps: tuple[str, ...]
    tree: Node
    head: int  # the index of the job whose tick this is

    def to_json(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "tree": self.tree, "head": self.head}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChainPlan:
        return cls(tuple(data["steps"]), data["tree"], int(data["head"]))


def expand(head: str, links_of: Callable[[str], Links | None]) -> ChainPlan:
    """The plan of a chain run of ``head``; ``links_of(name)``: a job's links, None if there is
    no such job. Raises ChainError naming the field (parents or children) at fault."""
    steps: list[str] = []
    levels: Counter[int] = Counter()

    def step(name: str, level: int) -> int:
        steps.append(name)
        levels[level] += 1
        if levels[level] > MAX_WIDTH:
            raise ChainError(_side(level), f"a chain may hold at most {MAX_WIDTH} steps on one "
                             f"level; {head!r}'s has more")  # fmt: skip
        return len(steps) - 1

    def group(names: Iterable[str], mode: str, nodes: Callable[[str], Node]) -> Node | None:
        made = [nodes(name) for name in names]
        if not made:
            return None
        return made[0] if len(made) == 1 else {("par" if mode == "parallel" else "seq"): made}

    def links(name: str, level: int, path: tuple[str, ...]) -> Links:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ChainError(_side(level), f"a job may not reach itself: {cycle}")
        if abs(level) >= MAX_LEVELS:
            raise ChainError(_side(level), f"a chain may span at most {MAX_LEVELS} levels; "
                             f"{head!r}'s spans more")  # fmt: skip
        found = links_of(name)
        if found is None:
            raise ChainError(_side(level), f"no job is named {name!r}")
        return found

    def up(name: str, level: int, path: tuple[str, ...]) -> Node:
        mine = links(name, level, path)
        before = group(mine.parents, mine.parents_mode,
                       lambda parent: up(parent, level - 1, (*path, name)))  # fmt: skip
        me = step(name, level)
        return me if before is None else {"seq": [before, me]}

    def down(name: str, level: int, path: tuple[str, ...]) -> Node:
        mine = links(name, level, path)
        me = step(name, level)
        after = group(mine.children, mine.children_mode,
                      lambda child: down(child, level + 1, (*path, name)))  # fmt: skip
        return me if after is None else {"seq": [me, after]}

    own = links(head, 0, ())
    before = group(own.parents, own.parents_mode, lambda parent: up(parent, -1, (head,)))
    head_index = step(head, 0)
    after = group(own.children, own.children_mode, lambda child: down(child, 1, (head,)))
    spanned = [level for level in levels if levels[level]]
    if max(spanned) - min(spanned) + 1 > MAX_LEVELS:
        raise ChainError("parents" if own.parents else "children",
                         f"a chain may span at most {MAX_LEVELS} levels; {head!r}'s spans "
                         f"{max(spanned) - min(spanned) + 1}")  # fmt: skip
    tree = [node for node in (before, head_index, after) if node is not None]
    return ChainPlan(tuple(steps), tree[0] if len(tree) == 1 else {"seq": tree}, head_index)


def _side(level: int) -> str:
    return "parents" if level < 0 else "children"


def check_graph(name: str, links: Links, jobs: Mapping[str, Links]) -> None:
    """What a save of job ``name`` with ``links`` must not break, given every stored job's
    links (``jobs``): every chain that holds it (its own and those of the jobs linked to it,
    either way) can still be planned, and no job reaches itself in run order."""
    jobs = {**jobs, name: links}
    for field_name, names in (("parents", links.parents), ("children", links.children)):
        for other in names:
            if other == name:
                one = "parent" if field_name == "parents" else "child"
                raise ChainError(field_name, f"a job may not be its own {one}")
            if other not in jobs:
                raise ChainError(field_name, f"no job is named {other!r}")
    component = _component(name, jobs)
    _check_run_order(name, links, {member: jobs[member] for member in component})
    for member in sorted(component):
        try:
            expand(member, jobs.get)
        except ChainError as exc:
            if member == name:
                raise
            field_name = "parents" if links.parents else "children"
            raise ChainError(field_name, f"{exc.problem} (in the chain of {member!r})") from None


def _check_run_order(name: str, links: Links, jobs: Mapping[str, Links]) -> None:
    """No cycle in run order (parent before job before child) through ``name``."""
    after: dict[str, set[str]] = {}
    for member, its_links in jobs.items():
        for first, then in its_links.edges(member):
            after.setdefault(first, set()).add(then)
    # A path from one of name's successors back to name closes a cycle.
    seen: set[str] = set()
    stack = [(then, (name, then)) for then in sorted(after.get(name, ()))]
    while stack:
        current, path = stack.pop()
        if current == name:
            field_name = "children" if path[1] in links.children else "parents"
            raise ChainError(field_name, "a job may not reach itself: " + " -> ".join(path))
        if current in seen:
            continue
        seen.add(current)
        stack.extend((then, (*path, then)) for then in sorted(after.get(current, ())))


def _component(name: str, jobs: Mapping[str, Links]) -> set[str]:
    """The jobs linked to ``name`` through parents or children, either way, however far."""
    linked: dict[str, set[str]] = {}
    for member, its_links in jobs.items():
        for first, then in its_links.edges(member):
            if first in jobs and then in jobs:
                linked.setdefault(first, set()).add(then)
                linked.setdefault(then, set()).add(first)
    found = {name}
    frontier = [name]
    while frontier:
        for other in linked.get(frontier.pop(), ()):
            if other not in found:
                found.add(other)
                frontier.append(other)
    return found


# -- a chain run's progress ------------------------------------------------------------------

SUCCEEDED = "succeeded"


def runnable(tree: Node, outcomes: Mapping[int, str]) -> list[int]:
    """The steps to start now: not started, every step before them succeeded. ``outcomes``:
    step -> its status ("requested" while it is under way). Empty once the chain is over."""
    if stopped_at(outcomes) is not None:
        return []
    found: list[int] = []
    _walk(tree, outcomes, found)
    return found


def _walk(node: Node, outcomes: Mapping[int, str], found: list[int]) -> bool:
    """Collect the steps of ``node`` to start now; True once all of its steps succeeded."""
    if isinstance(node, int):
        status = outcomes.get(node)
        if status is None:
            found.append(node)
        return status == SUCCEEDED
    if "seq" in node:
        for child in node["seq"]:
            if not _walk(child, outcomes, found):
                return False
        return True
    done = [_walk(child, outcomes, found) for child in node["par"]]
    return all(done)


def stopped_at(outcomes: Mapping[int, str]) -> int | None:
    """The first step (lowest index) that ended without succeeding, if any."""
    ended = [step for step, status in outcomes.items() if status not in (SUCCEEDED, REQUESTED)]
    return min(ended) if ended else None


REQUESTED = "requested"


def finished(plan: ChainPlan, outcomes: Mapping[int, str]) -> bool:
    """Whether nothing of the chain run is left to start or under way."""
    if any(status == REQUESTED for status in outcomes.values()):
        return False
    return stopped_at(outcomes) is not None or len(outcomes) == len(plan.steps)


def never_started(plan: ChainPlan, outcomes: Mapping[int, str]) -> list[int]:
    """The steps a stopped chain run will not run (logged skipped)."""
    return [step for step in range(len(plan.steps)) if step not in outcomes]


def position(plan: ChainPlan, step: int) -> str:
    """A step's place for people: "2/5" (its number among the chain's steps)."""
    return f"{step + 1}/{len(plan.steps)}"
