"""What the API answers in ``data``, endpoint by endpoint, as JSON Schema: the job from its
field table, runs, channels, the dashboard; accounts, teams, tokens and secrets from
gdts.manager.securityschemas. gdts.manager.openapi puts them into the document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gdts import jobfields
from gdts.jobfields import ALWAYS_STORED, JobField
from gdts.manager.schemaparts import NULLABLE_INT, NULLABLE_NUMBER, NULLABLE_STRING
from gdts.manager.securityschemas import (
    ACCOUNT,
    AUDIT_ENTRY,
    MEMBERSHIP,
    NULLABLE_ACCOUNT,
    SECRET_CHANGE,
    SECRET_LIST,
    SECRET_REKEY,
    SESSION,
    TEAM,
    TOKEN,
)
from gdts.notify.channels import CHANNEL_TYPES
from gdts.runrecord import RunStatus
from gdts.runstats import WINDOWS


def _field_schema(field: JobField) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": [field.kind, "null"] if field.nullable else field.kind,
        "description": field.description,
    }
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.values is not None:
        if field.kind == "array":
            schema["items"] = {"type": field.values}
        else:
            schema["additionalProperties"] = {"type": field.values}
    return schema


def _job_schema(fields: Sequence[JobField]) -> dict[str, Any]:
    """A job as the API answers it, from the model's own table of fields."""
    return {
        "type": "object",
        "properties": {field.name: _field_schema(field) for field in fields},
        "required": [field.name for field in fields if field.name in ALWAYS_STORED],
    }


RUN = {
    "type": "object",
    "properties": {
        "jobName": {"type": "string"},
        "command": {"type": "string"},
        "output": {"type": "string"},
        "outputBytes": {
            "type": "integer",
            "description": "Set when output is cut: the whole size, in bytes.",
        },
        "err": {"type": "string"},
        "planTime": {"type": "integer"},
        "scheduleTime": {"type": "integer"},
        "startTime": {
            "type": ["integer", "null"],
            "description": "Null for a run that never started (missed, skipped).",
        },
        "endTime": {"type": "integer"},
        "exitCode": NULLABLE_INT,
        "status": {
            "type": "string",
            "enum": [str(status) for status in RunStatus],
            "description": "skipped: a step of a chain run that stopped before it (err says "
            "at which step and why).",
        },
        "worker": {"type": "string"},
        "attempt": {"type": "integer"},
        "trigger": {
            "type": "string",
            "description": "schedule, manual (/job/run), catchup, or chain (a chain run's step).",
        },
        "chainId": {
            "type": "string",
            "description": "A chain run's step: the chain run's id, <head job>@<generation>/"
            "<planned ms> (/job/log?chainId= lists its steps).",
        },
        "chainStep": {
            "type": "integer",
            "minimum": 0,
            "description": "A chain run's step: its index in the chain run's plan, from 0.",
        },
        "chainSteps": {
            "type": "integer",
            "minimum": 1,
            "description": "A chain run's step: how many steps the chain run has.",
        },
    },
}
RUN_OUTPUT = {
    "type": "object",
    "properties": {
        "jobName": {"type": "string"},
        "planTime": {"type": "integer"},
        "attempt": {"type": "integer"},
        "output": {"type": "string", "description": "The output from the offset asked for."},
        "offset": {"type": "integer", "description": "Where to go on from (bytes of UTF-8)."},
        "running": {"type": "boolean", "description": "Whether the run is still going on."},
        "status": {"type": "string", "description": "The finished run's status."},
    },
    "required": ["jobName", "planTime", "attempt", "output", "offset", "running"],
}


CHANNEL = {
    "type": "object",
    "description": "A channel as any answer shows it: no secret's value (secretsSet names the "
    "secrets that are set; a secret URL shows as its scheme and host).",
    "properties": {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": list(CHANNEL_TYPES)},
        "settings": {"type": "object"},
        "secretsSet": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "type"],
}
CHANNEL_TYPE = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(CHANNEL_TYPES)},
        "label": {"type": "string"},
        "settings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "label": {"type": "string"},
                    "description": {"type": "string"},
                    "kind": {"type": "string"},
                    "required": {"type": "boolean"},
                    "secret": {"type": "boolean"},
                    "choices": {"type": "array", "items": {"type": "string"}},
                    "placeholder": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "label", "settings"],
}
RULES = {
    "type": "object",
    "properties": {
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "channel": {"type": "string"},
                    "on": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "minInterval": {"type": "number"},
    },
    "required": ["rules", "minInterval"],
}
OUTBOX_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "description": "The event's id."},
        "channel": {"type": "string"},
        "stream": {"type": "string"},
        "state": {"type": "string", "enum": ["queued", "sent", "failed"]},
        "title": {"type": "string"},
        "kind": {"type": "string", "description": "failed, recovered, worker_offline, ..."},
        "job": NULLABLE_STRING,
        "worker": NULLABLE_STRING,
        "planTime": NULLABLE_INT,
        "attempt": NULLABLE_INT,
        "at": {"type": "integer"},
        "queuedAt": {"type": "integer"},
        "settledAt": {"type": "integer"},
        "error": {"type": "string"},
        "standsFor": {"type": "integer"},
        "tries": {"type": "integer", "description": "Failed tries so far (queued) or in all."},
        "nextTryAt": NULLABLE_INT,
    },
    "required": ["event", "channel", "state"],
}

_PER_STATUS = {str(status): {"type": "array", "items": {"type": "number"}} for status in RunStatus}
DASHBOARD = {
    "type": "object",
    "properties": {
        "window": {"type": "string", "enum": list(WINDOWS)},
        "now": {"type": "integer", "description": "When it was computed (epoch ms)."},
        "bucketMinutes": {"type": "integer", "description": "Minutes in a bucket."},
        "buckets": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "Each bucket's start (epoch ms); the last one holds now.",
        },
        "perMinute": {
            "type": "object",
            "properties": _PER_STATUS,
            "required": list(_PER_STATUS),
            "description": "Runs per minute by status, one value per bucket (a bucket's runs "
            "over its minutes, the last bucket's over those begun), by the minute they ended.",
        },
        "runs": {
            "type": "object",
            "properties": {status: {"type": "integer"} for status in _PER_STATUS},
            "required": list(_PER_STATUS),
            "description": "The window's runs by status.",
        },
        "failureRate": {
            **NULLABLE_NUMBER,
            "description": "Failed, timeout, limit and lost runs over the runs that started "
            "(null: none did).",
        },
        "lagP50Ms": {
            **NULLABLE_NUMBER,
            "description": "Fire lag (start minus planned time) median, in ms: the upper "
            "bound of its histogram bucket, at most 19 % above the true value.",
        },
        "lagP99Ms": {**NULLABLE_NUMBER, "description": "Fire lag 99th percentile, as lagP50Ms."},
        "missed": {"type": "integer"},
        "lost": {"type": "integer"},
        "topFailing": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"jobName": {"type": "string"}, "failures": {"type": "integer"}},
                "required": ["jobName", "failures"],
            },
            "description": "The ten jobs with the most failing runs, most first.",
        },
        "workersOnline": {
            "type": "array",
            "items": {"type": ["integer", "null"]},
            "description": "Per bucket, the most workers seen online (null: no sample).",
        },
        "runningPerWorker": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"worker": {"type": "string"}, "running": {"type": "integer"}},
                "required": ["worker", "running"],
            },
        },
        "rolledUpTo": {
            "type": ["integer", "null"],
            "description": "Minutes before this come from the rollups, the rest from the run "
            "log at request time.",
        },
    },
    "required": ["window", "now", "bucketMinutes", "buckets", "perMinute", "runs",
                 "failureRate", "lagP50Ms", "lagP99Ms", "missed", "lost", "topFailing",
                 "workersOnline", "runningPerWorker", "rolledUpTo"],
}  # fmt: skip


def data_schemas() -> dict[str, Any]:
    """What each endpoint answers in "data"."""
    # Read from the model at each build: a field added there is in the spec with nothing here.
    job = _job_schema(jobfields.JOB_FIELDS)
    listed_job = _job_schema((*jobfields.JOB_FIELDS, *jobfields.STATUS_FIELDS))
    # The previous version of a saved or deleted job; a record nobody can read shows as raw.
    previous_job = {"anyOf": [job, {"type": "object"}, {"type": "null"}]}
    return {
        "/job/save": previous_job,
        "/job/delete": previous_job,
        "/job/kill": {"type": "null"},
        "/job/run": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "planTime": {"type": "integer"}},
            "required": ["name", "planTime"],
        },
        "/job/enable": job,
        "/job/disable": job,
        "/job/clone": job,
        "/job/list": {"type": "array", "items": listed_job},
        "/job/log": {"type": "array", "items": RUN},
        "/job/output": RUN_OUTPUT,
        "/job/output/stream": RUN_OUTPUT,  # what each event carries: see _stream_operation
        "/job/running": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "planTime": {"type": "integer"},
                    "attempt": {"type": "integer"},
                    "worker": {"type": "string"},
                    "claimedAt": NULLABLE_INT,
                },
                "required": ["planTime", "attempt", "worker"],
            },
        },
        "/worker/list": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "host": {"type": "string"},
                    "pid": {"type": "integer"},
                    "startedAt": {"type": "integer"},
                    "maxConcurrentRuns": {"type": "integer"},
                    "atCapacity": {"type": "boolean"},
                    "labels": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "What a job's hostGroup selects it by ({}: none).",
                    },
                    "weight": {
                        "type": "integer",
                        "description": "Its share of a weighted job's ticks (1-1000).",
                    },
                    "busy": {
                        "type": "integer",
                        "description": "Its runs going on, as it last said (at most once a "
                        "second, and only while some job's routing is leastBusy).",
                    },
                    "running": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "labels", "weight", "busy", "running"],
            },
        },
        "/dashboard/summary": DASHBOARD,
        "/cron/preview": {
            "type": "object",
            "properties": {
                "cronExpr": {"type": "string"},
                "timezone": {"type": "string"},
                "next": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["cronExpr", "timezone", "next"],
        },
        "/auth/login": SESSION,
        "/auth/logout": {"type": "null"},
        "/auth/me": SESSION,
        "/auth/password": {
            "type": "object",
            "properties": {"otherSessionsEnded": {"type": "integer"}},
            "required": ["otherSessionsEnded"],
        },
        "/user/list": {"type": "array", "items": ACCOUNT},
        "/user/save": NULLABLE_ACCOUNT,
        "/user/delete": {
            **ACCOUNT,
            "properties": {
                **ACCOUNT["properties"],
                "jobsHandedOver": {"type": "array", "items": {"type": "string"}},
            },
        },
        "/team/list": {"type": "array", "items": TEAM},
        "/team/save": TEAM,
        "/team/delete": {"type": "null"},
        "/team/member/save": MEMBERSHIP,
        "/team/member/delete": {"type": "null"},
        "/token/list": {"type": "array", "items": TOKEN},
        "/token/create": TOKEN,
        "/token/revoke": TOKEN,
        "/audit": {"type": "array", "items": AUDIT_ENTRY},
        "/notify/channels": {"type": "array", "items": CHANNEL},
        "/notify/types": {"type": "array", "items": CHANNEL_TYPE},
        "/notify/channel/save": CHANNEL,
        "/notify/channel/delete": CHANNEL,
        "/notify/channel/test": {
            "type": "object",
            "properties": {
                "channel": {"type": "string"},
                "delivered": {"type": "boolean"},
                "error": {"type": "string", "description": "What failed; empty if delivered."},
            },
            "required": ["channel", "delivered", "error"],
        },
        "/notify/rules": RULES,
        "/notify/rules/save": RULES,
        "/secret/list": SECRET_LIST,
        "/secret/save": SECRET_CHANGE,
        "/secret/delete": SECRET_CHANGE,
        "/secret/rekey": SECRET_REKEY,
        "/notify/outbox": {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": OUTBOX_EVENT},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "required": ["events", "counts"],
        },
    }
