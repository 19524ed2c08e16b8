"""Which jobs ``/job/list`` answers with when asked for some: its filter parameters, checked,
and the test of one job against them. Pure: the listing gathers each job's facts."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from gdts.errors import InvalidFieldError
from gdts.jobfields import DEFAULT_TEAM
from gdts.names import MAX_NAME_CHARS
from gdts.runrecord import RunStatus
from gdts.tags import MAX_TAG_CHARS, MAX_TAGS, validate_tag
from gdts.validators import validate_text

STATUSES = ("failing", "running", "paused")
# A job is failing when its last run did not do its work. Not when it was killed (an operator,
# a delete or its own replace policy stopped it on purpose) nor skipped (a step of a chain run
# never run because an earlier step failed: that step's job is the failing one).
FAILING_RUN_STATUSES = frozenset(
    (RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.LIMIT, RunStatus.LOST, RunStatus.MISSED)
)
# A worker's id is <hostname>:<pid> unless its config names it: a DNS name and a pid fit.
MAX_HOST_CHARS = 300
# Every tag a job may have, each with a comma and a space after it.
MAX_TAG_FILTER_CHARS = MAX_TAGS * (MAX_TAG_CHARS + 2)
FILTER_FIELDS = ("name", "command", "tag", "owner", "status", "host", "team")
# What the command filter looks for is a part of a command (which may be 64 KiB), not a copy;
# short enough that a query holding every filter stays within the URL the manager takes.
MAX_COMMAND_FILTER_CHARS = 200


@dataclass(frozen=True)
class JobFilter:
    """What a job must have to be listed; every filter given must hold (an empty one lists
    every job)."""

    name: str = ""  # casefolded: a part of the job's name, in any case
    command: str = ""  # casefolded: a part of its command or its HTTP request's URL, any case
    tags: tuple[str, ...] = ()  # every one of them
    owner: str = ""  # exactly
    status: str = ""  # one of STATUSES
    host: str = ""  # the worker that runs it now or ran its last run, exactly
    team: str = ""  # exactly
    # The teams the caller sees (see jobguard); None: every team (an admin).
    visible: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(
            self.name or self.command or self.tags or self.owner or self.status or self.host
            or self.team or self.visible is not None
        )  # fmt: skip


@dataclass(slots=True)
class JobFacts:
    """What the filters look at in one job (not frozen: a frozen dataclass is built field by
    field through object.__setattr__, and a filtered listing builds one per job)."""

    name: str
    tags: tuple[str, ...]
    owner: str
    enabled: bool
    running: bool
    last_status: str | None  # its last run's status; None: it never ran
    last_worker: str | None  # the worker that ran its last run
    running_on: Collection[str] = ()  # the workers running it now (read only to filter by host)
    command: str = ""  # its command and HTTP URL, casefolded (see listing's _Entry)
    team: str = DEFAULT_TEAM


def matches(wanted: JobFilter, job: JobFacts) -> bool:
    if wanted.visible is not None and job.team not in wanted.visible:
        return False
    if wanted.team and job.team != wanted.team:
        return False
    if wanted.name and wanted.name not in job.name.casefold():
        return False
    if wanted.command and wanted.command not in job.command:
        return False
    if wanted.tags and not all(tag in job.tags for tag in wanted.tags):
        return False
    if wanted.owner and job.owner != wanted.owner:
        return False
    if wanted.status == "paused" and job.enabled:
        return False
    if wanted.status == "running" and not job.running:
        return False
    if wanted.status == "failing" and job.last_status not in FAILING_RUN_STATUSES:
        return False
    return not wanted.host or wanted.host == job.last_worker or wanted.host in job.running_on


def parse_filter(params: Mapping[str, Any]) -> JobFilter:
    """The filters of a /job/list request; an empty value is no filter (a form's empty box).
    ``tag`` is comma-separated, a job having every tag named: a field given twice is refused
    by every endpoint (see gdts.manager.params)."""
    name = _text(params, "name", MAX_NAME_CHARS)
    raw_tags = _text(params, "tag", MAX_TAG_FILTER_CHARS)
    named = (tag.strip() for tag in raw_tags.split(","))
    tags = tuple(dict.fromkeys(validate_tag("tag", tag) for tag in named if tag))
    if len(tags) > MAX_TAGS:
        raise InvalidFieldError("tag", f"may name at most {MAX_TAGS} tags (got {len(tags)})")
    status = _text(params, "status", max(map(len, STATUSES)))
    if status and status not in STATUSES:
        raise InvalidFieldError("status", f"must be one of {', '.join(STATUSES)} (got {status!r})")
    return JobFilter(
        name=name.casefold(),
        command=_text(params, "command", MAX_COMMAND_FILTER_CHARS).casefold(),
        tags=tags,
        owner=_text(params, "owner", MAX_NAME_CHARS),
        status=status,
        host=_text(params, "host", MAX_HOST_CHARS),
        team=_text(params, "team", MAX_NAME_CHARS),
    )


def _text(params: Mapping[str, Any], field_name: str, max_chars: int) -> str:
    value = params.get(field_name)
    return "" if value is None else validate_text(field_name, value, max_chars)
