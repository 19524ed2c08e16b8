"""What ``gdts apply`` does to make the server match a file: which jobs to create, change and
delete, and in which order. Pure: normalized jobs in (see gdts.cli.manifest.normalize), a plan
out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gdts.jobfields import team_of

Jobs = dict[str, dict[str, Any]]  # normalized jobs by name


@dataclass(frozen=True)
class Change:
    name: str
    fields: tuple[str, ...]  # the fields whose values differ, in the file's job's order


@dataclass(frozen=True)
class Plan:
    create: tuple[str, ...]  # in the order they are saved (see save_order)
    change: tuple[Change, ...]  # in the order they are saved
    delete: tuple[str, ...]  # in the order they are deleted (see delete_order)
    unchanged: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.create or self.change or self.delete)

    def lines(self) -> list[str]:
        """The plan as ``apply`` prints it, one action a line."""
        out = [f"create {name}" for name in self.create]
        out += [f"change {c.name}: {', '.join(c.fields)}" for c in self.change]
        out += [f"delete {name}" for name in self.delete]
        return out

    def summary(self) -> str:
        if self.empty:
            return f"nothing to change ({len(self.unchanged)} jobs as in the file)"
        return (
            f"{len(self.create)} to create, {len(self.change)} to change, "
            f"{len(self.delete)} to delete, {len(self.unchanged)} unchanged"
        )


def changed_fields(current: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, ...]:
    """The fields whose values differ: the wanted job's first, then those only the current
    one has (a field the file no longer gives goes back to its default)."""
    order = list(wanted) + [k for k in current if k not in wanted]
    return tuple(k for k in order if current.get(k) != wanted.get(k))


def make_plan(wanted: Jobs, current: Jobs, *, prune: bool, team: str | None = None) -> Plan:
    """``wanted``: the file's jobs; ``current``: the server's. ``prune`` deletes the server's
    jobs the file does not have; with ``team``, only those of that team (a job without a team
    is in team "default")."""
    create = [name for name in wanted if name not in current]
    changes = {
        name: fields
        for name in wanted
        if name in current and (fields := changed_fields(current[name], wanted[name]))
    }
    unchanged = sorted(name for name in wanted if name in current and name not in changes)
    delete: list[str] = []
    if prune:
        delete = [
            name
            for name in current
            if name not in wanted and (team is None or team_of(current[name]) == team)
        ]
    saved = save_order({name: wanted[name] for name in [*create, *changes]})
    return Plan(
        create=tuple(name for name in saved if name in create),
        change=tuple(Change(name, changes[name]) for name in saved if name in changes),
        delete=tuple(delete_order({name: current[name] for name in delete})),
        unchanged=tuple(unchanged),
    )


def _links(job: dict[str, Any]) -> list[str]:
    """The jobs it names; a file's job may not be checked yet, so anything but a list of
    names is no link (the server names the field)."""
    linked = []
    for key in ("parents", "children"):
        value = job.get(key)
        if isinstance(value, list):
            linked += [name for name in value if isinstance(name, str)]
    return linked


def save_order(jobs: Jobs) -> list[str]:
    """Names in an order where a job that names others in ``parents`` or ``children`` comes
    after those of them saved in the same run (the server refuses a link to a job that does
    not exist yet); otherwise by name. A cycle, which the server refuses anyway, is cut."""
    return _ordered(jobs, {name: _links(job) for name, job in jobs.items()})


def delete_order(jobs: Jobs) -> list[str]:
    """Names in an order where a job goes before the jobs it links to (the server refuses to
    delete a job another one still names); otherwise by name."""
    referrers: dict[str, list[str]] = {name: [] for name in jobs}
    for name, job in jobs.items():
        for linked in _links(job):
            if linked in referrers:
                referrers[linked].append(name)
    return _ordered(jobs, referrers)


def _ordered(jobs: Jobs, first: dict[str, list[str]]) -> list[str]:
    """Every name after those ``first`` lists for it, by name where that leaves a choice."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting or name not in jobs:
            return
        visiting.add(name)
        for before in sorted(first[name]):
            visit(before)
        visiting.discard(name)
        order.append(name)

    for name in sorted(jobs):
        visit(name)
    return order
