"""A job's fields as the API receives them: the table of every field (its JSON type, default and
choices: what the OpenAPI spec and the stored record derive from), and the checks of each.
Pure: values in, checked values or an InvalidFieldError naming the field out. "Now" is an
argument where a check needs it. The checks of whole groups live beside it: the HTTP target's
in gdts.httptarget, env and secret references in gdts.jobenv, single values in
gdts.validators."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gdts.chains import CHAIN_MODES, NO_LINKS, parse_links
from gdts.cron import CronError, CronSchedule, check_zone, parse_cron
from gdts.errors import InvalidFieldError
from gdts.httptarget import HttpTarget, parse_http
from gdts.jobenv import MAX_ENV_VARS, RESERVED_ENV_PREFIX, parse_env, parse_secret_env
from gdts.names import MAX_NAME_CHARS, require_utf8, type_name, validate_name
from gdts.notify.rules import parse_rules
from gdts.routing import DEFAULT_ROUTING, ROUTINGS, parse_labels
from gdts.runlimits import NO_LIMITS, parse_limits
from gdts.tags import (
    MAX_DESCRIPTION_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    TAG_ALPHABET,
    parse_tags,
    validate_description,
)
from gdts.validators import (
    validate_bool,
    validate_choice,
    validate_int,
    validate_seconds,
    validate_text,
)

MAX_COMMAND_BYTES = 64 * 1024
MAX_TIMEOUT_S = 7 * 24 * 3600
# The shortest durations that can be honoured: a run takes milliseconds to start, a claim a few
# more and a loaded worker's fire lag reaches half a second, so a shorter timeout would end
# nearly every run, a shorter grace miss many ticks, and a sooner retry only hammer what just
# failed.
MIN_TIMEOUT_S = 0.1
MIN_MISFIRE_GRACE_S = 1.0
MIN_RETRY_BACKOFF_S = 0.1
MAX_RETRIES = 10
MAX_RETRY_BACKOFF_S = 3600
MAX_MISFIRE_GRACE_S = 24 * 3600
MAX_MATCH_CHARS = 4096
JOB_TYPES = ("shell", "http")
CONCURRENCY_POLICIES = ("forbid", "allow", "replace")
DEFAULT_RETRY_BACKOFF_S = 1.0
DEFAULT_NOTIFY_MIN_INTERVAL_S = 300.0
MIN_NOTIFY_MIN_INTERVAL_S = 1.0
MAX_NOTIFY_MIN_INTERVAL_S = 24 * 3600
MAX_KEEP_RUNS = 1_000_000
# The team of jobs saved before teams existed, which every account then joined (see
# gdts.manager.teams).
DEFAULT_TEAM = "default"
MAX_ACCOUNT_ID_CHARS = 64


@dataclass(frozen=True)
class JobField:
    """One field of a job as the API shows it."""

    name: str
    kind: str  # its JSON type: string, integer, number, boolean or object
    default: Any  # what a request or record without the field means; None: "not set"
    description: str
    choices: tuple[str, ...] = ()
    # An object field whose every value has one JSON type (a hostGroup's labels: strings), or
    # an array field whose every item has (parents and children: job names).
    values: str | None = None
    # The job record version that brought the field: a record that sets it says at least this
    # version, so a process too old to know the field refuses the record (see job.to_record).
    since: int = 1

    @property
    def nullable(self) -> bool:
        return self.default is None and self.name != "name"


# Every field of a job, in the order the API shows them. A request or record without a field
# gets its default, so a job saved with only name/command/cronExpr behaves as before.
JOB_FIELDS = (
    JobField("name", "string", None, "The job's name (no '/')."),
    JobField("type", "string", "shell", "What a run is: a shell command or an HTTP request.",
             JOB_TYPES),
    JobField("command", "string", "", "The bash command (shell jobs)."),
    JobField("cronExpr", "string", "", "When it runs: a cron expression (or give runAt)."),
    JobField("runAt", "string", None, "Run once at this instant (ISO 8601 or epoch seconds)."),
    JobField("timezone", "string", "UTC", "The IANA zone the cron expression is read in."),
    JobField("enabled", "boolean", True, "False pauses the job."),
    JobField("timeout", "number", None, "Seconds a run may take before it is killed."),
    JobField("retries", "integer", 0, "Runs again after a failure, up to this many times."),
    JobField("retryBackoff", "number", DEFAULT_RETRY_BACKOFF_S,
             "Seconds before the first retry, doubling after each."),
    JobField("concurrencyPolicy", "string", "forbid",
             "When a tick comes while a run goes on: skip it, run both, or replace the run.",
             CONCURRENCY_POLICIES),
    JobField("misfireGrace", "number", None, "Seconds a tick may start late (default: the "
             "worker's startWindow)."),
    JobField("catchUp", "boolean", False, "After missed ticks, run once as soon as possible."),
    JobField("http", "object", None, "The request an http job sends: method, url, headers, "
             "body, expectedStatus."),
    JobField("expectedExitCode", "integer", 0, "The exit status that counts as success."),
    JobField("outputContains", "string", "", "A run succeeds only if its output contains this."),
    JobField("outputNotContains", "string", "",
             "A run fails if its output contains this."),
    JobField("keepBackground", "boolean", False, "Processes a run leaves behind run on after it "
             "ends (still killed by /job/kill); by default they are killed with the run.",
             since=4),
    JobField("limits", "object", None, "Limits of a run: memoryMB, processes, cpuSeconds, "
             "openFiles (each a positive integer; unset: the worker's default, never above its "
             "ceiling). A run over one ends with status limit.", since=5),
    JobField("notify", "array", None, "Who hears of its runs: a list of {channel, on}, on "
             "naming events of failed, timeout, missed, lost, killed, succeeded, recovered, "
             "completed (see the README's Notifications).", since=6),
    JobField("notifyMinInterval", "number", DEFAULT_NOTIFY_MIN_INTERVAL_S,
             "Seconds between two messages of one rule; events in between are counted into "
             "the next.", since=6),
    JobField("hostGroup", "object", None, "The workers that may run it: labels each must "
             "carry, e.g. {\"group\": \"db\"} (unset: any worker).", values="string",
             since=7),
    JobField("routing", "string", DEFAULT_ROUTING, "Which of those workers runs a tick: hash "
             "(one worker per job while it lives), random, roundRobin, weighted (by the "
             "workers' weight) or leastBusy.", ROUTINGS, since=7),
    JobField("parents", "array", None, "Jobs that run before it in each of its chain runs "
             "(names; see the README's Chains).", values="string", since=7),
    JobField("parentsMode", "string", "serial", "Its parents one after another, or all at "
             "once.", CHAIN_MODES, since=7),
    JobField("children", "array", None, "Jobs that run after it in each of its chain runs, "
             "once it succeeded.", values="string", since=7),
    JobField("childrenMode", "string", "serial", "Its children one after another, or all at "
             "once.", CHAIN_MODES, since=7),
    JobField("tags", "array", None, f"Short labels to find it by: at most {MAX_TAGS}, each "
             f"1-{MAX_TAG_CHARS} {TAG_ALPHABET}; one given twice is kept once.",
             values="string", since=8),
    JobField("description", "string", "", f"What it does, for whoever reads the list (at most "
             f"{MAX_DESCRIPTION_CHARS} characters).", since=8),
    JobField("keepRuns", "integer", None, f"Keep at most its last this many runs (1 to "
             f"{MAX_KEEP_RUNS:,}, as /job/log lists them); unset: only the managers' "
             "logRetentionDays applies.", since=8),
    JobField("team", "string", DEFAULT_TEAM, "The team it belongs to: only the team's members "
             "(and admins) see it and its runs (default: the caller's only team; see the "
             "README's Teams); its secretEnv and http.secretHeaders name that team's secrets.",
             since=9),
    JobField("env", "object", None, f"Environment variables of its runs (name: value, shown "
             f"as they are; at most {MAX_ENV_VARS}, names not starting with "
             f"{RESERVED_ENV_PREFIX}).", values="string", since=9),
    JobField("secretEnv", "object", None, "Environment variables filled from its team's "
             "secrets at run time (name: secret name), e.g. {\"PGPASSWORD\": \"db-password\"}; "
             "their values never leave the worker, and are replaced by *** in the output.",
             values="string", since=9),
    # Who saved the job first: set by the manager from the caller, whatever a request says.
    JobField("owner", "string", "", "Who saved the job first (set by the manager).", since=3),
    JobField("ownerId", "string", "", "Its owner's account id, which no other account ever "
             "has (set by the manager).", since=9),
)  # fmt: skip
# What /job/list adds to each job; read-only, so a listed job saves back as it is.
STATUS_FIELDS = (
    JobField("nextRunTime", "integer", None, "Its next planned run (epoch ms)."),
    JobField("running", "boolean", False, "Whether a run goes on now."),
    JobField("lastRun", "object", None, "Its newest run's status, times and worker."),
    JobField("liveWorkers", "integer", None, "For a job with a hostGroup: how many live "
             "workers are in it (0: none, its ticks are missed); null without a hostGroup."),
)  # fmt: skip
API_DEFAULTS: dict[str, Any] = {f.name: f.default for f in JOB_FIELDS}
# The fields every stored record and every answer carries, whatever their value.
ALWAYS_STORED = frozenset(("name", "command", "cronExpr"))
_STATUS_NAMES = frozenset(f.name for f in STATUS_FIELDS)
_NULLABLE = frozenset(f.name for f in JOB_FIELDS if f.default is None)
_KNOWN_NAMES = frozenset(API_DEFAULTS)
_CHAIN_FIELDS = frozenset(("parents", "parentsMode", "children", "childrenMode"))

# 2000-01-01 and 2100-01-01 in epoch seconds: what a one-shot instant may plausibly be.
_MIN_EPOCH_S = 946_684_800
_MAX_EPOCH_S = 4_102_444_800


def validate_command(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError("command", f"must be a string, got {type_name(value)}")
    if not value.strip():
        raise InvalidFieldError("command", "must not be empty")
    size = len(require_utf8("command", value))
    if size > MAX_COMMAND_BYTES:
        raise InvalidFieldError(
            "command", f"must be at most {MAX_COMMAND_BYTES} bytes (got {size})"
        )
    if "\x00" in value:
        raise InvalidFieldError("command", "must not contain a NUL character")
    return value


def _validate_team(field_name: str, value: object) -> str:
    return validate_name(value, field_name)


def parse_run_at(value: object, now_ms: int | None) -> int:
    """A one-shot instant: ISO 8601 with an offset (``2026-12-01T03:00:00Z``) or epoch seconds
    (number or numeric string); returns epoch ms. In the past is refused when ``now_ms`` is
    given (on save; a stored job keeps the instant it was saved with)."""
    field_name = "runAt"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidFieldError(
            field_name, f"must be an ISO 8601 time or epoch seconds, got {type_name(value)}"
        )
    seconds: float
    if isinstance(value, str) and not _looks_numeric(value):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidFieldError(
                field_name,
                f"{value!r} is neither ISO 8601 (2026-12-01T03:00:00Z) nor epoch seconds",
            ) from None
        if moment.tzinfo is None:
            raise InvalidFieldError(
                field_name, f"{value!r} has no UTC offset: add Z or +hh:mm, or use epoch seconds"
            )
        seconds = moment.astimezone(UTC).timestamp()
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not _MIN_EPOCH_S <= seconds < _MAX_EPOCH_S:
        raise InvalidFieldError(field_name, f"{value!r} is not a time between 2000 and 2099")
    at_ms = round(seconds * 1000)
    if now_ms is not None and at_ms <= now_ms:
        when = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
        raise InvalidFieldError(field_name, f"{when} is in the past")
    return at_ms


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_fields(data: object, default_zone: str, now_ms: int | None) -> dict[str, Any]:
    """Every field of a job from untrusted values, checked, as the Job's attributes; the first
    bad field is named. ``default_zone`` applies when none is given; ``now_ms`` (on save)
    refuses a one-shot time in the past."""
    if not isinstance(data, dict):
        raise InvalidFieldError("job", f"must be a JSON object, got {type_name(data)}")
    data = {k: v for k, v in data.items() if k not in _STATUS_NAMES}
    unknown = data.keys() - _KNOWN_NAMES
    if unknown:
        known = ", ".join(API_DEFAULTS)
        raise InvalidFieldError(min(unknown), f"unknown job field (known: {known})")
    if "name" not in data:
        raise InvalidFieldError("name", "is required")
    name = validate_name(data["name"])
    # null stands for "not given" in the fields that have no value by default.
    given = {k: v for k, v in data.items() if v is not None or k not in _NULLABLE}
    kind = validate_choice("type", given.get("type", "shell"), JOB_TYPES)
    command, http = _check_action(kind, given)

    # A field not given takes its default, which needs no check (a worker reads a million
    # records, most of which give three fields).
    def opt(key: str, default: Any, check: Callable[..., Any], *limits: Any) -> Any:
        return default if key not in given else check(key, given[key], *limits)

    checked = {
        "name": name,
        "command": command,
        "kind": kind,
        "enabled": opt("enabled", True, validate_bool),
        "timeout_s": opt("timeout", None, validate_seconds, MAX_TIMEOUT_S, MIN_TIMEOUT_S),
        "retries": opt("retries", 0, validate_int, 0, MAX_RETRIES),
        "retry_backoff_s": opt(
            "retryBackoff",
            DEFAULT_RETRY_BACKOFF_S,
            validate_seconds,
            MAX_RETRY_BACKOFF_S,
            MIN_RETRY_BACKOFF_S,
        ),
        "concurrency": opt("concurrencyPolicy", "forbid", validate_choice, CONCURRENCY_POLICIES),
        "misfire_grace_s": opt(
            "misfireGrace", None, validate_seconds, MAX_MISFIRE_GRACE_S, MIN_MISFIRE_GRACE_S
        ),
        "catch_up": opt("catchUp", False, validate_bool),
        "keep_background": opt("keepBackground", False, validate_bool),
        "http": http,
        "limits": NO_LIMITS if "limits" not in given else parse_limits(given["limits"]),
        "expected_exit_code": opt("expectedExitCode", 0, validate_int, 0, 255),
        "keep_runs": opt("keepRuns", None, validate_int, 1, MAX_KEEP_RUNS),
        "output_contains": opt("outputContains", "", validate_text, MAX_MATCH_CHARS),
        "output_not_contains": opt("outputNotContains", "", validate_text, MAX_MATCH_CHARS),
        "owner": opt("owner", "", validate_text, MAX_NAME_CHARS),
        "owner_id": opt("ownerId", "", validate_text, MAX_ACCOUNT_ID_CHARS),
        "team": opt("team", DEFAULT_TEAM, _validate_team),
        "tags": () if "tags" not in given else parse_tags("tags", given["tags"]),
        "description": opt("description", "", validate_description),
        "host_group": ()
        if "hostGroup" not in given
        else parse_labels("hostGroup", given["hostGroup"]),
        "routing": opt("routing", DEFAULT_ROUTING, validate_choice, ROUTINGS),
        "links": parse_links(given, validate_name) if _CHAIN_FIELDS & given.keys() else NO_LINKS,
        "notify": () if "notify" not in given else _check_notify(given["notify"]),
        "notify_min_interval_s": opt(
            "notifyMinInterval",
            DEFAULT_NOTIFY_MIN_INTERVAL_S,
            validate_seconds,
            MAX_NOTIFY_MIN_INTERVAL_S,
            MIN_NOTIFY_MIN_INTERVAL_S,
        ),
    }
    if "env" in given or "secretEnv" in given:
        env = () if "env" not in given else parse_env(given["env"])
        checked["env"] = env
        checked["secret_env"] = (
            () if "secretEnv" not in given else parse_secret_env(given["secretEnv"], env)
        )
    # Last: the schedule is the one check that needs the cron module.
    zone, cron_expr, run_at_ms, schedule = _check_timing(given, default_zone, now_ms)
    return {
        **checked,
        "timezone": zone,
        "cron_expr": cron_expr,
        "run_at_ms": run_at_ms,
        "schedule": schedule,
    }


def _check_notify(value: object) -> tuple[Any, ...]:
    return parse_rules("notify", value)


def _check_action(kind: str, given: dict[str, Any]) -> tuple[str, HttpTarget | None]:
    """What a run does: a shell job's command, or an HTTP job's request."""
    command = given.get("command", "")
    if kind == "shell":
        if "command" not in given:
            raise InvalidFieldError("command", "is required")
        if "http" in given:
            raise InvalidFieldError("http", 'is only for jobs of type "http"')
        return validate_command(command), None
    if command != "":
        raise InvalidFieldError("command", 'must be empty for a job of type "http"')
    if "http" not in given:
        raise InvalidFieldError("http", 'is required for a job of type "http"')
    return command, parse_http(given["http"])


def _check_timing(
    given: dict[str, Any], default_zone: str, now_ms: int | None
) -> tuple[str, str, int | None, CronSchedule | None]:
    """When a job runs: (timezone, cronExpr, runAt in epoch ms, schedule). A one-shot job has
    runAt and no schedule; a cron job the other way round."""
    cron_expr = given.get("cronExpr", "")
    run_at_ms = None
    if "runAt" in given:
        if cron_expr != "":
            raise InvalidFieldError("runAt", "a job has either cronExpr or runAt, not both")
        run_at_ms = parse_run_at(given["runAt"], now_ms)
    elif "cronExpr" not in given:
        raise InvalidFieldError("cronExpr", "is required (or runAt, for a one-shot job)")
    elif not isinstance(cron_expr, str):
        raise InvalidFieldError("cronExpr", f"must be a string, got {type_name(cron_expr)}")
    elif cron_expr == "":
        raise InvalidFieldError("cronExpr", "must not be empty (or give runAt instead)")
    zone = given.get("timezone", default_zone)
    if not isinstance(zone, str):
        raise InvalidFieldError("timezone", f"must be a string, got {type_name(zone)}")
    try:
        zone = check_zone(zone)
        schedule = None if run_at_ms is not None else parse_cron(cron_expr, zone)
    except CronError as exc:
        field_name = "timezone" if exc.field == "zone" else "cronExpr"
        raise InvalidFieldError(field_name, exc.problem) from None
    if schedule is None:
        return zone, cron_expr, run_at_ms, None
    if (
        now_ms is not None
        and schedule.next_after(datetime.fromtimestamp(now_ms / 1000, UTC)) is None
    ):
        # A stored job keeps loading (now_ms None): it simply has no next run.
        raise InvalidFieldError(
            "cronExpr", f"{schedule.expr!r} never fires again: every time it names is past"
        )
    return zone, schedule.expr, None, schedule


def team_of(view: Mapping[str, Any]) -> str:
    """The team of a job's API view (a record saved before teams has none: the default)."""
    team = view.get("team")
    return team if isinstance(team, str) and team else DEFAULT_TEAM
