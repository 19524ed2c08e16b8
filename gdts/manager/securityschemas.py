"""What the security endpoints answer in ``data``, as JSON Schema: accounts, sessions, teams
and their members, API tokens, the audit log, team secrets (never a secret's value).
gdts.manager.apischemas maps them to their endpoints."""

from __future__ import annotations

from gdts.manager.endpoints import TEAM_ROLES
from gdts.manager.schemaparts import NULLABLE_INT, NULLABLE_STRING

ACCOUNT = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "role": {"type": "string", "enum": ["guest", "user", "admin"]},
        "accountId": {"type": "string", "description": "Never given to another account."},
        "createdAt": NULLABLE_INT,
        "updatedAt": NULLABLE_INT,
    },
    "required": ["username", "role"],
}
_TEAM_ROLE = {"type": "string", "enum": list(TEAM_ROLES)}
TEAM = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"username": {"type": "string"}, "role": _TEAM_ROLE},
                "required": ["username", "role"],
            },
        },
        "createdAt": NULLABLE_INT,
        "role": {**_TEAM_ROLE, "description": "The caller's role in it (not for an admin)."},
    },
    "required": ["name", "members"],
}
MEMBERSHIP = {
    "type": "object",
    "properties": {
        "team": {"type": "string"},
        "username": {"type": "string"},
        "role": _TEAM_ROLE,
        "before": {"anyOf": [_TEAM_ROLE, {"type": "null"}]},
    },
    "required": ["team", "username", "role"],
}
TOKEN = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "username": {"type": "string"},
        "createdAt": NULLABLE_INT,
        "token": {"type": "string", "description": "The secret; in /token/create's answer only."},
    },
    "required": ["id", "name", "username"],
}
AUDIT_ENTRY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "at": {"type": "integer"},
        "action": {"type": "string"},
        "user": {"type": "string"},
        "role": {"type": "string"},
        "source": {"type": "string"},
        "job": {"type": "string"},
        "before": {"type": ["object", "null"]},
        "after": {"type": ["object", "null"]},
        "detail": {"type": "object"},
    },
    "required": ["id", "at", "action", "user", "source"],
}
SESSION = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "role": {"type": "string"},
        "csrfToken": NULLABLE_STRING,
        "teams": {
            "type": "object",
            "additionalProperties": _TEAM_ROLE,
            "description": "The caller's teams and role in each ({} for an admin, who sees all).",
        },
    },
    "required": ["username", "role"],
}
NULLABLE_ACCOUNT = {"anyOf": [ACCOUNT, {"type": "null"}]}
# A secret as the API names it: never its value.
SECRET_CHANGE = {
    "type": "object",
    "properties": {
        "team": {"type": "string"},
        "name": {"type": "string"},
        "replaced": {"type": "boolean", "description": "Whether a secret of that name was."},
    },
    "required": ["team", "name"],
}
SECRET_LIST = {
    "type": "object",
    "properties": {
        "team": {"type": "string"},
        "secrets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "keyId": {"type": "string", "description": "The key that sealed it."},
                    "updatedAt": {"type": "integer"},
                    "updatedBy": {"type": "string"},
                },
                "required": ["name", "keyId", "updatedAt", "updatedBy"],
            },
        },
    },
    "required": ["team", "secrets"],
}
_TEAM_AND_NAME = {
    "type": "object",
    "properties": {"team": {"type": "string"}, "name": {"type": "string"}},
}
SECRET_REKEY = {
    "type": "object",
    "properties": {
        "resealed": {"type": "array", "items": _TEAM_AND_NAME},
        "alreadyCurrent": {"type": "integer"},
        "failed": {"type": "array", "items": _TEAM_AND_NAME},
    },
    "required": ["resealed", "alreadyCurrent", "failed"],
}
