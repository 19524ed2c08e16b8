"""The job model: what an operator saves. Pure: validation and JSON, no I/O."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gdts.cron import CronError, CronSchedule, parse_cron
from gdts.errors import InvalidFieldError, UnsupportedVersionError

JOB_RECORD_VERSION = 1
MAX_NAME_CHARS = 128
MAX_COMMAND_BYTES = 64 * 1024
_API_FIELDS = ("name", "command", "cronExpr")


def validate_name(value: object, field_name: str = "name") -> str:
    """Check a job name; the name becomes part of etcd keys, so this guards the key layout too."""
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {_type_name(value)}")
    if not value:
        raise InvalidFieldError(field_name, "must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidFieldError(
            field_name, f"must be at most {MAX_NAME_CHARS} characters (got {len(value)})"
        )
    if "/" in value:
        raise InvalidFieldError(field_name, "must not contain '/'")
    if value in (".", ".."):
        raise InvalidFieldError(field_name, f"must not be {value!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidFieldError(field_name, "must not contain control characters")
    _require_utf8(field_name, value)
    if value != value.strip():
        raise InvalidFieldError(field_name, "must not start or end with white space")
    return value


def _validate_command(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError("command", f"must be a string, got {_type_name(value)}")
    if not value.strip():
        raise InvalidFieldError("command", "must not be empty")
    size = len(_require_utf8("command", value))
    if size > MAX_COMMAND_BYTES:
        raise InvalidFieldError(
            "command", f"must be at most {MAX_COMMAND_BYTES} bytes (got {size})"
        )
    if "\x00" in value:
        raise InvalidFieldError("command", "must not contain a NUL character")
    return value


def _parse_schedule(value: object) -> CronSchedule:
    if not isinstance(value, str):
        raise InvalidFieldError("cronExpr", f"must be a string, got {_type_name(value)}")
    try:
        return parse_cron(value)
    except CronError as exc:
        # CronError messages already start with "cronExpr: "; keep only the problem part.
        problem = str(exc).removeprefix("cronExpr: ")
        raise InvalidFieldError("cronExpr", problem) from None


@dataclass(frozen=True)
class Job:
    name: str
    command: str
    cron_expr: str
    schedule: CronSchedule = field(compare=False, repr=False)

    @classmethod
    def create(cls, name: object, command: object, cron_expr: object) -> Job:
        """Build a job from untrusted values, naming the first bad field."""
        checked_name = validate_name(name)
        checked_command = _validate_command(command)
        schedule = _parse_schedule(cron_expr)
        return cls(checked_name, checked_command, schedule.expr, schedule)

    @classmethod
    def from_api(cls, data: object) -> Job:
        """The ``job`` object of ``/job/save``: exactly the original GDTS fields."""
        if not isinstance(data, dict):
            raise InvalidFieldError("job", f"must be a JSON object, got {_type_name(data)}")
        unknown = sorted(set(data) - set(_API_FIELDS))
        if unknown:
            raise InvalidFieldError(
                "job", f"unknown field {unknown[0]!r} (known: {', '.join(_API_FIELDS)})"
            )
        for required in _API_FIELDS:
            if required not in data:
                raise InvalidFieldError(required, "is required")
        return cls.create(data["name"], data["command"], data["cronExpr"])

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "cronExpr": self.cron_expr}

    def to_record(self) -> bytes:
        """The etcd value: the API fields plus a record version."""
        return json.dumps(
            {"v": JOB_RECORD_VERSION, **self.to_api()}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_record(cls, raw: bytes) -> Job:
        return cls.from_api(_load_record(raw))


def _require_utf8(field_name: str, value: str) -> bytes:
    # JSON can carry lone surrogates ("\ud800"), which no UTF-8 key or argv can hold.
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise InvalidFieldError(field_name, "must be valid Unicode (no lone surrogates)") from None


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


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
    # Records written by the original Go GDTS have no "v"; they are version 1 in content.
    version = data.pop("v", JOB_RECORD_VERSION)
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
    view = {field: data.get(field) for field in _API_FIELDS}
    if not all(isinstance(value, str) for value in view.values()):
        raise InvalidFieldError("job", "stored value lacks a field")
    return view


def jobs_digest(jobs: Iterable[Job]) -> str:
    """A fingerprint of a set of jobs: two processes with the same digest schedule the same jobs
    (how a test or an operator checks that every worker has converged)."""
    digest = hashlib.sha256()
    for job in sorted(jobs, key=lambda j: j.name):
        digest.update(json.dumps(job.to_api(), sort_keys=True).encode() + b"\n")
    return digest.hexdigest()[:16]
