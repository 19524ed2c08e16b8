"""Jobs as a file: reading a YAML (or JSON) file of jobs with the line of every field, and
writing the stable, diff-friendly form ``gdts export`` prints. Pure: text in, jobs or text out.

A file holds a top-level ``jobs:`` list (what ``gdts export`` writes), a bare list of jobs, or
one job; several YAML documents (``---``) are read one after another."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gdts.cli.config import CliError
from gdts.errors import InvalidFieldError
from gdts.job import Job
from gdts.jobfields import API_DEFAULTS, JOB_FIELDS, STATUS_FIELDS

# What the server keeps for itself: /job/save ignores these, so neither a file nor the
# comparison carries them.
SERVER_OWNED = frozenset(("owner", "ownerId", *(f.name for f in STATUS_FIELDS)))
# Every field a file may set, in the order a job is written out; a field this client does not
# know (a newer server's) is kept, after these, in name order.
FIELD_ORDER = tuple(f.name for f in JOB_FIELDS if f.name not in SERVER_OWNED)
# Written out even at its default: a job's zone defaults to the manager's defaultTimezone, so a
# file that leaves it out means different things on different clusters.
ALWAYS_WRITTEN = frozenset(("name", "timezone"))


class ManifestError(CliError):
    """A file that cannot be applied: the message names the file, the line and the field."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: an unquoted ``runAt: 2026-12-01T03:00:00Z`` stays
    the string the API takes, not a datetime that JSON cannot carry."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class FileJob:
    """One job as a file gives it, and where: ``lines`` maps a field's path as the API names it
    (``cronExpr``, ``hostGroup.zone``, ``tags[1]``) to its line."""

    job: dict[str, Any]
    line: int
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.job.get("name"))

    def line_of(self, field_path: str | None) -> int:
        """The line of ``field_path`` or of the nearest field holding it; the job's own line
        for a field the file does not give (a required one left out)."""
        path = (field_path or "").removeprefix("job.")
        while path:
            if path in self.lines:
                return self.lines[path]
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        return self.line


def parse_jobs(text: str, source: str) -> list[FileJob]:
    """The jobs of a file, in the file's order; a ManifestError names the line of what is
    wrong with its shape (each job's fields are checked by ``check_jobs``)."""
    loader = _Loader(text)
    jobs: list[FileJob] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                jobs.extend(_jobs_of(node, source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ManifestError(source, line, f"not valid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    seen: dict[str, int] = {}
    for job in jobs:
        if job.name in seen:
            raise ManifestError(
                source, job.line, f"name: job {job.name!r} is given twice (first on line "
                f"{seen[job.name]})"
            )  # fmt: skip
        seen[job.name] = job.line
    return jobs


def _jobs_of(node: yaml.Node, source: str) -> list[FileJob]:
    if isinstance(node, yaml.MappingNode):
        keys = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        if "jobs" in keys and "name" not in keys:
            if len(node.value) > 1:
                extra = next(k for k, _ in node.value if k.value != "jobs")
                raise ManifestError(source, _line(extra), f"{extra.value}: unknown top-level key "
                                    "(a file holds jobs: [...])")  # fmt: skip
            node = keys["jobs"]
            if isinstance(node, yaml.ScalarNode) and node.value in ("", "null", "~"):
                return []  # "jobs:" with nothing under it: no jobs
        else:
            return [_job_of(node, source)]
    if not isinstance(node, yaml.SequenceNode):
        raise ManifestError(source, _line(node), "must hold jobs: a list of jobs, or one job")
    return [_job_of(item, source) for item in node.value]


def _job_of(node: yaml.Node, source: str) -> FileJob:
    if not isinstance(node, yaml.MappingNode):
        raise ManifestError(source, _line(node), "a job must be a mapping of its fields")
    lines: dict[str, int] = {}
    _record_lines(node, "", lines, source)
    job = _Loader("").construct_document(node)
    if not isinstance(job.get("name"), str) or not job["name"]:
        raise ManifestError(source, lines.get("name", _line(node)), "name: every job needs one")
    return FileJob(job, _line(node), lines)


def _record_lines(node: yaml.Node, path: str, lines: dict[str, int], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise ManifestError(source, _line(key), f"{path or 'job'}: keys must be strings")
            child = f"{path}.{key.value}" if path else key.value
            if child in lines:
                # The API refuses a key given twice too: "last one wins" may act on the wrong job.
                raise ManifestError(source, _line(key), f"{child}: given twice (first on line "
                                    f"{lines[child]})")  # fmt: skip
            lines[child] = _line(key)
            _record_lines(value, child, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[f"{path}[{index}]"] = _line(item)
            _record_lines(item, f"{path}[{index}]", lines, source)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def normalize(job: dict[str, Any], default_zone: str) -> dict[str, Any]:
    """A job as the server would store it, in FIELD_ORDER, without the fields the server owns
    and without those at their defaults (but ALWAYS_WRITTEN): what export writes and what apply
    compares, so that a job written any way the API takes (``runAt`` in epoch seconds, an
    ``http`` without its method) compares equal to its stored self. Raises InvalidFieldError
    naming the field for a job the API would refuse (the checks that need the server's
    state, such as a chain's jobs existing, are the server's)."""
    given = {k: v for k, v in job.items() if k not in SERVER_OWNED}
    known = {k: v for k, v in given.items() if k in API_DEFAULTS}
    view = Job.from_api(known, default_zone=default_zone).to_api()
    kept = {k: view[k] for k in FIELD_ORDER if k in ALWAYS_WRITTEN or view[k] != API_DEFAULTS[k]}
    extra = {k: v for k, v in given.items() if k not in API_DEFAULTS and v is not None}
    return kept | dict(sorted(extra.items()))


class _Dumper(yaml.SafeDumper):
    """Block style throughout; a command of several lines as a literal block (``|``), so a
    diff shows the line that changed."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_jobs(jobs: list[dict[str, Any]]) -> str:
    """The export file: ``jobs:``, sorted by name, each job's fields in FIELD_ORDER (as
    ``normalize`` leaves them). Stable: the same jobs always give the same text."""
    ordered = sorted(jobs, key=lambda job: job["name"])
    return yaml.dump(
        {"jobs": ordered}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000
    )


def check_jobs(file_jobs: list[FileJob], source: str, default_zone: str) -> list[dict[str, Any]]:
    """Every job of a file normalized, or a ManifestError naming the line and field of the
    first the API would refuse."""
    checked = []
    for file_job in file_jobs:
        try:
            checked.append(normalize(file_job.job, default_zone))
        except InvalidFieldError as exc:
            line = file_job.line_of(exc.field)
            raise ManifestError(source, line, f"job {file_job.name!r}: {exc}") from None
    return checked
