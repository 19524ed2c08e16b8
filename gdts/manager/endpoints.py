"""Every API endpoint in one table: its method, the role it needs and the fields it takes.

The table is the single description of the API: the authorization middleware reads the role
from it, ``read_params`` rejects fields it does not list, the error middleware knows the API's
paths from it, and ``/openapi.json`` is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gdts.config import MAX_OUTPUT_LIMIT
from gdts.cron import MAX_EXPR_LEN
from gdts.jobfields import MAX_NAME_CHARS, MAX_RETRIES
from gdts.manager.jobfilter import (
    MAX_COMMAND_FILTER_CHARS,
    MAX_HOST_CHARS,
    MAX_TAG_FILTER_CHARS,
    STATUSES,
)
from gdts.runstats import WINDOWS
from gdts.secretbox import MAX_SECRET_BYTES, MAX_SECRET_NAME_CHARS, SECRET_NAME_PATTERN

MAX_URL_BYTES = 8192  # what aiohttp's parser takes by default, refused by the manager in JSON

# Roles in the order of what they may do; each may do everything the ones before it may.
ROLES = ("guest", "user", "admin")
# An account's role in a team (see gdts.manager.jobguard), which narrows what its own allows.
TEAM_ROLES = ("guest", "user", "maintainer")
PUBLIC = "public"  # no login needed


@dataclass(frozen=True)
class Field:
    name: str
    description: str
    required: bool = False
    kind: str = "string"  # or "integer"
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value matches


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    role: str  # PUBLIC or one of ROLES: the least role that may call it
    summary: str
    fields: tuple[Field, ...] = ()
    # Calls that change a job check, beyond the role, that a "user" owns the job.
    owned_job: bool = False

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


# Everything the audit trail records, by the name it records it under.
AUDIT_ACTIONS = (
    "job.save", "job.delete", "job.kill", "job.run", "job.enable", "job.disable", "job.clone",
    "user.save", "user.delete", "user.password", "token.create", "token.revoke",
    "auth.login", "auth.login_failed", "auth.logout",
    "notify.channel.save", "notify.channel.delete", "notify.channel.test", "notify.rules.save",
    "team.save", "team.delete", "team.member.save", "team.member.delete",
    "secret.save", "secret.delete", "secret.rekey",
)  # fmt: skip
CSRF_FIELD = "csrfToken"
CSRF_HEADER = "X-CSRF-Token"
MAX_LOG_LIMIT = 1000
MAX_LIST_LIMIT = 100_000
MAX_SKIP = 10**9
MAX_PREVIEW = 50
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time Python can hold
MAX_NAME = MAX_NAME_CHARS  # job and user names
# A chain run's id: "<head job>@<generation>/<planned ms>" (see gdts.runrecord.ChainStep).
MAX_CHAIN_ID = MAX_NAME + 1 + 19 + 1 + 15
CHAIN_ID_PATTERN = "^[^/]+@[0-9]{1,19}/[0-9]{1,15}$"

_NAME = Field("name", "The job's name.", required=True, max_length=MAX_NAME)
_TEAM = Field("team", "The team (default: default).", max_length=MAX_NAME)
_SECRET_NAME = Field(
    "name",
    "The secret's name (letters, digits, -_.).",
    required=True,
    max_length=MAX_SECRET_NAME_CHARS,
    pattern=SECRET_NAME_PATTERN,
)
_SKIP = Field("skip", "How many entries to skip, newest first.", kind="integer", minimum=0,
              maximum=MAX_SKIP)  # fmt: skip

MAX_OUTPUT_OFFSET = MAX_OUTPUT_LIMIT * 3  # bytes; a decoded output may grow up to threefold
_RUN_OUTPUT_FIELDS = (
    _NAME,
    Field("planTime", "The run's planned time (epoch ms).", required=True, kind="integer",
          minimum=0, maximum=MAX_EPOCH_MS),
    Field("attempt", "Which attempt (default 1).", kind="integer", minimum=1,
          maximum=MAX_RETRIES + 1),
    Field("offset", "Bytes (of the output's UTF-8) already read: the answer starts there "
          "(default 0).", kind="integer", minimum=0, maximum=MAX_OUTPUT_OFFSET),
)  # fmt: skip


def _limit(default: int, maximum: int) -> Field:
    return Field(
        "limit", f"At most this many entries (default {default}).", kind="integer", minimum=1,
        maximum=maximum,
    )  # fmt: skip


def _root(path: str) -> str:
    return "/" + path.split("/", 2)[1] if path.startswith("/") else path


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/job/save", "user", "Create or replace a job; answers the previous version.",
             (Field("job", "The job as a JSON object (see the README's job fields).",
                    required=True),), owned_job=True),
    Endpoint("POST", "/job/delete", "user", "Delete a job and kill its runs going on; answers "
             "the deleted job.",
             (_NAME, Field("keepRunning", "true: its runs going on finish by themselves "
                           "(default false: killed, logged as killed because deleted).",
                           choices=("true", "false")),
              Field("purgeLogs", "true: its runs planned before now leave the log too, in the "
                    "background (the answer's purge says so); default false: they stay until "
                    "logRetentionDays.", choices=("true", "false"))), owned_job=True),
    Endpoint("POST", "/job/kill", "user", "Kill the job's running process groups.", (_NAME,),
             owned_job=True),
    Endpoint("POST", "/job/run", "user", "Run the job once now on one worker.", (_NAME,),
             owned_job=True),
    Endpoint("POST", "/job/enable", "user", "Resume a paused job.", (_NAME,), owned_job=True),
    Endpoint("POST", "/job/disable", "user", "Pause a job.", (_NAME,), owned_job=True),
    Endpoint("POST", "/job/clone", "user", "Copy a job under a new name; the caller owns the copy.",
             (_NAME, Field("newName", "The copy's name.", required=True, max_length=MAX_NAME))),
    Endpoint("GET", "/job/list", "guest", "Every job with its status, in name order; the "
             "filters given (all must hold) narrow it before it is paged.",
             (Field("after", "Start after this job name (paging).", max_length=MAX_NAME),
              Field("limit", "At most this many jobs (default: all).", kind="integer",
                    minimum=0, maximum=MAX_LIST_LIMIT),
              Field("name", "Only jobs whose name contains this, in any case.",
                    max_length=MAX_NAME),
              Field("command", "Only jobs whose command (or HTTP request's URL) contains "
                    "this, in any case.", max_length=MAX_COMMAND_FILTER_CHARS),
              Field("tag", "Only jobs that have every one of these tags (comma-separated).",
                    max_length=MAX_TAG_FILTER_CHARS),
              Field("owner", "Only the jobs of this owner.", max_length=MAX_NAME),
              Field("status", "Only jobs failing (last run failed, timeout, limit, lost or "
                    "missed), running (a run goes on now) or paused.", choices=STATUSES),
              Field("host", "Only jobs this worker runs now or ran last (its id).",
                    max_length=MAX_HOST_CHARS),
              Field("team", "Only the jobs of this team.", max_length=MAX_NAME))),
    Endpoint("GET", "/job/log", "guest", "A job's runs, newest first, or with chainId one "
             "chain run's steps, by step then attempt; outputs cut to share 1 MiB a page "
             "(outputBytes: a cut output's whole size).",
             (Field("name", "The job's name (required without chainId).", max_length=MAX_NAME),
              Field("chainId", "A chain run's id, <head job>@<generation>/<planned ms> (its "
                    "steps' runs carry it): that chain run's steps instead of a job's runs.",
                    max_length=MAX_CHAIN_ID, pattern=CHAIN_ID_PATTERN),
              _SKIP, _limit(20, MAX_LOG_LIMIT))),
    Endpoint("GET", "/job/output", "guest", "One run's output from offset: the whole of a "
             "finished run, or what a run going on printed so far (running: true); offset in the "
             "answer: where to go on from.", _RUN_OUTPUT_FIELDS),
    Endpoint("GET", "/job/output/stream", "guest", "One run's output as Server-Sent Events "
             "(text/event-stream): data {output, offset} as it prints, then event end with "
             "{status, offset} once its record is stored.", _RUN_OUTPUT_FIELDS),
    Endpoint("GET", "/job/running", "guest", "The job's runs going on now (planTime, attempt, "
             "worker, claimedAt), oldest planned first.", (_NAME,)),
    Endpoint("GET", "/worker/list", "guest", "The workers alive now."),
    Endpoint("GET", "/dashboard/summary", "guest", "The console's dashboard: runs per minute "
             "by status, failure rate, fire lag p50/p99, missed and lost runs, the jobs that "
             "fail most, running runs per worker and workers online, over the last hour or day.",
             (Field("window", "The span: the last hour (1-minute buckets) or day (15-minute "
                    "buckets); default hour.", choices=tuple(WINDOWS)),)),
    Endpoint("GET", "/cron/preview", "guest",
             "The next runs of a cron expression, or the error that makes it invalid.",
             (Field("cronExpr", "The expression.", required=True, max_length=MAX_EXPR_LEN),
              Field("timezone", "An IANA zone (default: the manager's defaultTimezone).",
                    max_length=64),
              Field("count", "How many runs (default 5).", kind="integer", minimum=1,
                    maximum=MAX_PREVIEW))),
    Endpoint("POST", "/auth/login", PUBLIC, "Log in; sets the session cookie.",
             (Field("username", "Who logs in.", required=True, max_length=MAX_NAME),
              Field("password", "Their password.", required=True, max_length=1024))),
    Endpoint("POST", "/auth/logout", "guest", "End this session."),
    Endpoint("GET", "/auth/me", "guest", "Who the caller is, and the session's CSRF token."),
    Endpoint("POST", "/auth/password", "guest", "Change the caller's own password; the caller's "
             "other console sessions end (otherSessionsEnded in the answer).",
             (Field("currentPassword", "The password now.", required=True, max_length=1024),
              Field("newPassword", "The new password (at least 10 characters).", required=True,
                    max_length=1024))),
    Endpoint("GET", "/user/list", "admin", "Every account and its role."),
    Endpoint("POST", "/user/save", "admin",
             "Create an account, or change its role or password.",
             (Field("username", "The account's name.", required=True, max_length=MAX_NAME),
              Field("role", "Its role.", required=True, choices=ROLES),
              Field("password", "Its password (required for a new account; at least 10 "
                    "characters).", max_length=1024))),
    Endpoint("POST", "/user/delete", "admin",
             "Delete an account with its tokens, sessions and team memberships (not your own); "
             "an account that owns jobs needs newOwner or toTeam.",
             (Field("username", "The account's name.", required=True, max_length=MAX_NAME),
              Field("newOwner", "Who its jobs go to (an account's name).", max_length=MAX_NAME),
              Field("toTeam", "true: its jobs stay ownerless with their teams (their "
                    "maintainers change them).", choices=("true", "false")))),
    Endpoint("GET", "/team/list", "guest", "The teams with their members (admins: every team; "
             "others: their own teams, with their role)."),
    Endpoint("POST", "/team/save", "admin", "Create a team.",
             (Field("name", "The team's name.", required=True, max_length=MAX_NAME),)),
    Endpoint("POST", "/team/delete", "admin", "Delete a team that has no jobs.",
             (Field("name", "The team's name.", required=True, max_length=MAX_NAME),)),
    Endpoint("POST", "/team/member/save", "admin",
             "Put an account into a team with a role, or change its role there.",
             (Field("team", "The team's name.", required=True, max_length=MAX_NAME),
              Field("username", "The account's name.", required=True, max_length=MAX_NAME),
              Field("role", "Its role in the team.", required=True, choices=TEAM_ROLES))),
    Endpoint("POST", "/team/member/delete", "admin", "Take an account out of a team.",
             (Field("team", "The team's name.", required=True, max_length=MAX_NAME),
              Field("username", "The account's name.", required=True, max_length=MAX_NAME))),
    Endpoint("GET", "/token/list", "guest", "The caller's API tokens (an admin's: everyone's)."),
    Endpoint("POST", "/token/create", "guest",
             "Create an API token for the caller; the token is shown in this answer only.",
             (Field("name", "What the token is for.", required=True, max_length=MAX_NAME),)),
    Endpoint("POST", "/token/revoke", "guest",
             "Revoke one of the caller's tokens (an admin: anyone's); takes effect at once.",
             (Field("id", "The token's id, from /token/list.", required=True, max_length=64),)),
    Endpoint("GET", "/notify/channels", "guest",
             "The notification channels: admins see their settings (never a secret's value), "
             "others their names and types."),
    Endpoint("GET", "/notify/types", "guest",
             "Every channel type and its settings (which are required, which secret): the "
             "console's channel form is built from it."),
    Endpoint("POST", "/notify/channel/save", "admin",
             "Create or replace a channel; a secret left out keeps its stored value.",
             (Field("channel", "The channel as a JSON object: name, type (email, webhook, "
                    "slack, telegram, dingtalk, wecom), settings (see the README).",
                    required=True),)),
    Endpoint("POST", "/notify/channel/delete", "admin", "Delete a channel.",
             (Field("name", "The channel's name.", required=True, max_length=MAX_NAME),)),
    Endpoint("POST", "/notify/channel/test", "admin",
             "Send a test message through a channel now; answers whether it was delivered.",
             (Field("name", "The channel's name.", required=True, max_length=MAX_NAME),)),
    Endpoint("GET", "/notify/rules", "admin",
             "The cluster's rules: which channels hear worker_offline and worker_online."),
    Endpoint("POST", "/notify/rules/save", "admin", "Replace the cluster's rules.",
             (Field("rules", "A JSON list of {channel, on} (on: worker_offline, "
                    "worker_online).", required=True),
              Field("minInterval", "Seconds between two messages to one channel (default: "
                    "as stored, first 300).", max_length=32))),
    Endpoint("GET", "/notify/outbox", "admin",
             "The newest notification events and what became of them, with counts by state.",
             (Field("state", "Only events in this state.", choices=("queued", "sent", "failed")),
              _limit(50, MAX_LOG_LIMIT))),
    Endpoint("GET", "/secret/list", "user", "A team's secrets: name, keyId, updatedAt, "
             "updatedBy; never a value.", (_TEAM,)),
    Endpoint("POST", "/secret/save", "user", "Create or replace a team's secret, stored "
             "encrypted; the value is never shown again (not in this answer either).",
             (_TEAM, _SECRET_NAME,
              Field("value", f"The value (at most {MAX_SECRET_BYTES} bytes, no NUL).",
                    required=True, max_length=MAX_SECRET_BYTES))),
    Endpoint("POST", "/secret/delete", "user", "Delete a team's secret; refused (409, naming "
             "them) while a job of the team names it.", (_TEAM, _SECRET_NAME)),
    Endpoint("POST", "/secret/rekey", "admin", "Encrypt every team's secrets again with the "
             "manager's current key (the first of its secretKeys): the step between adding a "
             "key and removing the old one."),
    Endpoint("GET", "/audit", "admin", "Recorded changes and logins, newest first.",
             (Field("user", "Only this user's entries.", max_length=MAX_NAME),
              Field("job", "Only entries about this job.", max_length=MAX_NAME),
              Field("action", "Only this action.", choices=AUDIT_ACTIONS),
              Field("since", "Only entries at or after this time (epoch ms).", kind="integer",
                    minimum=0, maximum=MAX_EPOCH_MS),
              Field("until", "Only entries before this time (epoch ms).", kind="integer",
                    minimum=0, maximum=MAX_EPOCH_MS),
              _SKIP, _limit(50, MAX_LOG_LIMIT))),
)  # fmt: skip

_BY_ROUTE: dict[tuple[str, str], Endpoint] = {(e.method, e.path): e for e in ENDPOINTS}
# The first segment of every API path ("/job", "/audit"): a path under one of them is the API's,
# so even an unknown one is answered with the API's JSON error, not the static files' page.
_API_ROOTS = frozenset(_root(e.path) for e in ENDPOINTS)


def is_api_path(path: str) -> bool:
    return _root(path) in _API_ROOTS


def endpoint_of(method: str, path: str) -> Endpoint | None:
    """The endpoint a request is for (aiohttp answers HEAD with the GET route), or None."""
    return _BY_ROUTE.get(("GET" if method == "HEAD" else method, path))


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` may call an endpoint that needs ``needed``."""
    if needed == PUBLIC:
        return True
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)
