"""The job model: what an operator saves. Pure: validation and JSON, no I/O."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gdts.chains import NO_LINKS, Links
from gdts.cron import CronSchedule
from gdts.errors import InvalidFieldError, UnsupportedVersionError
from gdts.httptarget import HttpTarget
from gdts.jobfields import (
    ALWAYS_STORED,
    API_DEFAULTS,
    DEFAULT_NOTIFY_MIN_INTERVAL_S,
    DEFAULT_RETRY_BACKOFF_S,
    DEFAULT_TEAM,
    JOB_FIELDS,
    MAX_COMMAND_BYTES,
    MAX_NAME_CHARS,
    check_fields,
    validate_name,
)
from gdts.routing import DEFAULT_ROUTING, Labels, is_routed
from gdts.runlimits import NO_LIMITS, RunLimits

if TYPE_CHECKING:
    from gdts.notify.rules import Rule

__all__ = [
    "API_DEFAULTS",
    "MAX_COMMAND_BYTES",
    "MAX_NAME_CHARS",
    "HttpTarget",
    "Job",
    "validate_name",
]

# 1: name, command, cronExpr only (and the Go GDTS's records); 2: the job-semantics fields;
# 3: owner; 4: keepBackground; 5: limits; 6: notify, notifyMinInterval; 7: hostGroup, routing,
# parents, children and their modes; 8: tags, description, keepRuns; 9: team, ownerId, env,
# secretEnv, http.secretHeaders.
# A process that knows an older version refuses a newer record with a message. A record says
# the lowest version that holds every field it sets (at least 3), so a record that sets none of
# the newer fields is still read by processes that predate them.
JOB_RECORD_VERSION = 9
_SECRET_HEADERS_SINCE = 9
_WRITTEN_AT_LEAST = 3
_SINCE = {field.name: field.since for field in JOB_FIELDS}


@dataclass(frozen=True, slots=True)
class Job:
    """A job as workers run it. ``schedule`` is None for a one-shot job (``run_at_ms``)."""

    name: str
    command: str
    cron_expr: str
    schedule: CronSchedule | None = field(compare=False, repr=False)
    kind: str = "shell"
    run_at_ms: int | None = None
    timezone: str = "UTC"
    enabled: bool = True
    timeout_s: float | None = None
    retries: int = 0
    retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S
    concurrency: str = "forbid"
    misfire_grace_s: float | None = None
    catch_up: bool = False
    http: HttpTarget | None = None
    expected_exit_code: int = 0
    output_contains: str = ""
    output_not_contains: str = ""
    keep_background: bool = False
    limits: RunLimits = NO_LIMITS
    owner: str = ""
    owner_id: str = ""  # the owner's account id: a name may be given again to a new account
    team: str = DEFAULT_TEAM  # who sees it (see gdts.manager.teams)
    notify: tuple[Rule, ...] = ()
    notify_min_interval_s: float = DEFAULT_NOTIFY_MIN_INTERVAL_S
    host_group: Labels = ()  # the labels a worker must carry to run it (see gdts.routing)
    routing: str = DEFAULT_ROUTING
    links: Links = NO_LINKS  # its parents and children (see gdts.chains)
    tags: tuple[str, ...] = ()  # what the console and /job/list find it by (see gdts.tags)
    description: str = ""
    keep_runs: int | None = None  # the managers' clean-up keeps its last this many runs
    env: tuple[tuple[str, str], ...] = ()  # variables of its runs, as given
    secret_env: tuple[tuple[str, str], ...] = ()  # variable -> a secret of its team
    # Where etcd holds this version (not part of the job's definition, so not compared): the
    # revision that wrote it, which a claim compares so no claim made from an older version
    # succeeds, and the revision that created the key, the job's generation (see gdts.keys).
    # 0: not read from etcd.
    revision: int = field(default=0, compare=False)
    generation: int = field(default=0, compare=False)

    @classmethod
    def create(cls, name: object, command: object, cron_expr: object) -> Job:
        """A shell job on a cron schedule in UTC: the original GDTS's job."""
        return cls.from_api({"name": name, "command": command, "cronExpr": cron_expr})

    @classmethod
    def from_api(cls, data: object, *, default_zone: str = "UTC", now_ms: int | None = None) -> Job:
        """Build a job from untrusted values, naming the first bad field (see
        gdts.jobfields.check_fields)."""
        return cls(**check_fields(data, default_zone, now_ms))

    @property
    def routed(self) -> bool:
        """Whether its host group or routing places it, not its bucket (see gdts.routing)."""
        return is_routed(self.host_group, self.routing)

    @property
    def one_shot(self) -> bool:
        return self.run_at_ms is not None

    @property
    def needs_secrets(self) -> bool:
        """Whether a run of it needs its team's secrets (checked for every run: no tuple)."""
        return bool(self.secret_env) or (self.http is not None and bool(self.http.secret_headers))

    def secret_refs(self) -> tuple[tuple[str, str], ...]:
        """Every secret a run needs: (the field that names it, e.g. ``secretEnv.PGPASSWORD``,
        the secret's name), in the job's team."""
        refs = tuple((f"secretEnv.{var}", secret) for var, secret in self.secret_env)
        if self.http is not None and self.http.secret_headers:
            refs += tuple(
                (f"http.secretHeaders.{header}", secret)
                for header, secret in self.http.secret_headers
            )
        return refs

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "command": self.command,
            "cronExpr": self.cron_expr,
            "runAt": None if self.run_at_ms is None else iso_ms(self.run_at_ms),
            "timezone": self.timezone,
            "enabled": self.enabled,
            "timeout": self.timeout_s,
            "retries": self.retries,
            "retryBackoff": self.retry_backoff_s,
            "concurrencyPolicy": self.concurrency,
            "misfireGrace": self.misfire_grace_s,
            "catchUp": self.catch_up,
            "http": None if self.http is None else self.http.to_api(),
            "expectedExitCode": self.expected_exit_code,
            "outputContains": self.output_contains,
            "outputNotContains": self.output_not_contains,
            "keepBackground": self.keep_background,
            "limits": self.limits.to_api() or None,
            "owner": self.owner,
            "ownerId": self.owner_id,
            "team": self.team,
            "notify": [rule.to_api() for rule in self.notify] or None,
            "notifyMinInterval": self.notify_min_interval_s,
            "hostGroup": dict(self.host_group) or None,
            "routing": self.routing,
            "parents": list(self.links.parents) or None,
            "parentsMode": self.links.parents_mode,
            "children": list(self.links.children) or None,
            "childrenMode": self.links.children_mode,
            "tags": list(self.tags) or None,
            "description": self.description,
            "keepRuns": self.keep_runs,
            "env": dict(self.env) or None,
            "secretEnv": dict(self.secret_env) or None,
        }

    def to_record(self) -> bytes:
        """The etcd value: a record version and the API fields that differ from their defaults
        (name, command and cronExpr always). 100,000 jobs are read whole by every worker that
        starts and by every full listing: defaults written out would be most of the bytes."""
        view = self.to_api()
        kept = {k: v for k, v in view.items() if k in ALWAYS_STORED or v != API_DEFAULTS[k]}
        version = max(_WRITTEN_AT_LEAST, *(_SINCE[k] for k in kept))
        if self.http is not None and self.http.secret_headers:  # a field inside http
            version = max(version, _SECRET_HEADERS_SINCE)
        return json.dumps({"v": version, **kept}, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, raw: bytes, *, revision: int = 0, generation: int = 0) -> Job:
        """A stored job; ``revision`` and ``generation``: where etcd holds it."""
        fields = check_fields(_load_record(raw), "UTC", None)
        # A worker holds every stored job: those that share a command or an owner (one script
        # on many schedules, one team's jobs) share its string.
        fields["command"] = sys.intern(fields["command"])
        fields["owner"] = sys.intern(fields["owner"])
        fields["owner_id"] = sys.intern(fields["owner_id"])
        fields["team"] = sys.intern(fields["team"])
        if fields["tags"]:  # a few tags name many jobs ("prod", "nightly")
            fields["tags"] = tuple(sys.intern(tag) for tag in fields["tags"])
        return cls(**fields, revision=revision, generation=generation)

    def with_changes(self, **changes: Any) -> Job:
        """This job with some API fields replaced, checked as a save would check them."""
        return Job.from_api({**self.to_api(), **changes}, default_zone=self.timezone)


def iso_ms(epoch_ms: int) -> str:
    """Epoch ms as ISO 8601 in UTC with milliseconds (what runAt reads back exactly)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _load_record(raw: bytes) -> dict[str, Any]:
    """A stored job's JSON object with its version checked and removed."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidFieldError("job", f"stored value is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidFieldError("job", "stored value is not a JSON object")
    checked = _checked_version(data)
    if isinstance(checked, InvalidFieldError):
        raise checked
    return checked


def _checked_version(data: dict[str, Any]) -> dict[str, Any] | InvalidFieldError:
    # Records written by the original Go GDTS have no "v": version 1 in content.
    version = data.pop("v", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return InvalidFieldError("v", f"must be a positive integer, got {version!r}")
    if version > JOB_RECORD_VERSION:
        return UnsupportedVersionError(version, JOB_RECORD_VERSION)
    return data


def api_view(raw: bytes) -> dict[str, Any]:
    """The API fields of a stored job without building a Job: listing 100,000 jobs must not
    parse 100,000 cron expressions that were validated when they were saved."""
    return _view_of(_load_record(raw))


def api_views(raws: Sequence[bytes]) -> list[dict[str, Any] | InvalidFieldError]:
    """``api_view`` of many records, each a view or the error that makes it unreadable.

    One JSON parse of all of them: parsing 100,000 records one call at a time was half the time
    of listing them. Should any record not be one JSON object of its own, the parse of the
    whole cannot be trusted to line up with the records, so each is parsed alone."""
    if all(raw[:1] == b"{" and raw[-1:] == b"}" for raw in raws):
        try:
            records = json.loads(b"[" + b",".join(raws) + b"]")
        except (ValueError, UnicodeDecodeError, RecursionError):
            records = None
        if isinstance(records, list) and len(records) == len(raws):
            return [_checked_view(record) for record in records]
    return [_checked(api_view, raw) for raw in raws]


def _checked_view(record: object) -> dict[str, Any] | InvalidFieldError:
    if not isinstance(record, dict):
        return InvalidFieldError("job", "stored value is not a JSON object")
    return _checked(_view_of, _checked_version(record))


def _checked(
    view: Callable[[Any], dict[str, Any]], value: Any
) -> dict[str, Any] | InvalidFieldError:
    if isinstance(value, InvalidFieldError):
        return value
    try:
        return view(value)
    except InvalidFieldError as exc:
        return exc


def _view_of(data: dict[str, Any]) -> dict[str, Any]:
    # Fields a version-1 record lacks read as their defaults; the record was checked in full
    # when it was saved, so only its shape is checked here.
    view = {field: data.get(field, default) for field, default in API_DEFAULTS.items()}
    if not all(isinstance(view[field], str) for field in ("name", "command", "cronExpr")):
        raise InvalidFieldError("job", "stored value lacks a field")
    if view["cronExpr"] == "" and view["runAt"] is None:
        raise InvalidFieldError("job", "stored value has neither cronExpr nor runAt")
    return view


def jobs_digest(jobs: Iterable[Job]) -> str:
    """A fingerprint of a set of jobs: two processes with the same digest schedule the same jobs
    (how a test or an operator checks that every worker has converged)."""
    return digest_of(sum(job_digest_part(job) for job in jobs))


# The digest is a sum of one number per job, so it needs no sorting and can be taken a piece
# at a time (a worker holding a million jobs must not stall its loop for it).
_DIGEST_MOD = 1 << 64


def job_digest_part(job: Job) -> int:
    line = json.dumps(job.to_api(), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(line).digest()[:8], "big")


def digest_of(parts_sum: int) -> str:
    return f"{parts_sum % _DIGEST_MOD:016x}"
