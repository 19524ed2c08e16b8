"""``GET /openapi.json``: the API described from the endpoint table, so the description cannot
drift from what the middleware enforces and what ``read_params`` accepts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gdts import __version__
from gdts.manager.apischemas import data_schemas
from gdts.manager.endpoints import (
    CSRF_FIELD,
    ENDPOINTS,
    MAX_URL_BYTES,
    PUBLIC,
    Endpoint,
    Field,
)

ERROR = {
    "type": "object",
    "properties": {
        "errno": {"type": "integer", "const": -1},
        "msg": {"type": "string"},
        "data": {"type": "null"},
        "field": {"type": "string", "description": "The request field at fault, when one is."},
    },
    "required": ["errno", "msg", "data"],
}
_ERROR_TEXT = {
    "400": "A field is missing, malformed or unknown; msg and field name it.",
    "401": "No valid token or session.",
    "403": "The caller's role may not do this, or the job is someone else's.",
    "404": "The named job, account or token does not exist.",
    "409": "The change conflicts with what is stored.",
    "413": "The request body is larger than 1 MiB.",
    "414": f"The URL is longer than {MAX_URL_BYTES} bytes (its query's filters, say).",
    "429": "Too many failed logins; Retry-After says how long to wait.",
    "503": "etcd or MongoDB is unavailable.",
}


def _schema(field: Field) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": field.kind, "description": field.description}
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if field.max_length is not None:
        schema["maxLength"] = field.max_length
    if field.required and field.kind == "string":
        schema["minLength"] = 1
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.pattern is not None:
        schema["pattern"] = field.pattern
    if field.name == "job":
        schema["example"] = '{"name":"backup","command":"echo hi","cronExpr":"*/5 * * * * *"}'
    if not field.required and (field.kind == "integer" or field.choices):
        # An optional field sent empty (limit=) is not given: it takes its default.
        return {"anyOf": [schema, {"type": "string", "maxLength": 0}],
                "description": field.description}  # fmt: skip
    return schema


def _operation(endpoint: Endpoint, data: Any) -> dict[str, Any]:
    """``data``: the schema of what it answers in "data"."""
    errors = ["400", "404", "409", "503"]
    if endpoint.role != PUBLIC:
        errors += ["401", "403"]
    if endpoint.method == "POST":
        errors.append("413")
    else:  # a GET's fields are in its URL
        errors.append("414")
    if endpoint.path == "/auth/login":
        errors += ["401", "429"]
    responses: dict[str, Any] = {
        "200": {
            "description": "Done: errno 0 and the answer in data.",
            "content": {"application/json": {"schema": _envelope(data, endpoint.path)}},
        }
    }
    for code in sorted(set(errors)):
        responses[code] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": ERROR}},
        }
    operation: dict[str, Any] = {
        "operationId": endpoint.path.strip("/").replace("/", "_"),
        "summary": endpoint.summary,
        "responses": responses,
    }
    if endpoint.role == PUBLIC:
        operation["security"] = []
    else:
        operation["description"] = f"Needs role {endpoint.role!r} or above." + (
            " A user changes only jobs they own." if endpoint.owned_job else ""
        )
    if endpoint.method == "GET":
        operation["parameters"] = [
            {"name": f.name, "in": "query", "required": f.required, "schema": _schema(f)}
            for f in endpoint.fields
        ]
    else:
        properties = {f.name: _schema(f) for f in endpoint.fields}
        properties[CSRF_FIELD] = {
            "type": "string",
            "description": "The session's CSRF token, for a change made with the session "
            "cookie (or send it in the X-CSRF-Token header).",
        }
        body: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        required = [f.name for f in endpoint.fields if f.required]
        if required:
            body["required"] = required
        operation["requestBody"] = {
            "required": bool(required),
            "content": {"application/x-www-form-urlencoded": {"schema": body}},
        }
    return operation


# Beside "data" (which stays as the original answered): what /job/delete?purgeLogs=true began.
_PURGE = {
    "type": "object",
    "description": "Only with purgeLogs=true: the purge recorded, which the managers' clean-up "
    "carries out in the background (see the README's Retention).",
    "properties": {
        "id": {"type": "string"},
        "job": {"type": "string"},
        "before": {"type": "integer", "description": "Runs planned before this go (epoch ms)."},
    },
    "required": ["id", "job", "before"],
}
_BESIDE_DATA = {"/job/delete": {"purge": _PURGE}}


def _envelope(data: Any, path: str = "") -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "errno": {"type": "integer", "const": 0},
            "msg": {"type": "string"},
            "data": data,
            **_BESIDE_DATA.get(path, {}),
        },
        "required": ["errno", "msg", "data"],
    }


def _plain(description: str, content_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": description,
        "security": [],
        "responses": {
            "200": {"description": "Yes.", "content": {content_type: {"schema": schema}}},
            "503": {"description": "No.", "content": {content_type: {"schema": schema}}},
        },
    }


def build_spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    data = data_schemas()
    for endpoint in ENDPOINTS:
        operation = _operation(endpoint, data[endpoint.path])
        if endpoint.path == "/job/output/stream":
            operation["responses"]["200"] = {
                "description": "A stream of events: data {output, offset} as the run prints, "
                "then event end with data {status, offset}.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    paths["/health/alive"] = {"get": _plain("Is the manager up?", "application/json", {})}
    paths["/health/ready"] = {
        "get": _plain("Can it reach etcd and MongoDB?", "application/json", {"type": "object"})
    }
    for path, summary, content_type in (
        ("/metrics", "Prometheus metrics (any role).", "text/plain"),
        ("/openapi.json", "This description (any role).", "application/json"),
    ):
        paths[path] = {
            "get": {
                "summary": summary,
                "responses": {
                    "200": {"description": "Yes.", "content": {content_type: {}}},
                    "401": {
                        "description": _ERROR_TEXT["401"],
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GDTS manager API",
            "version": __version__,
            "description": "Form-encoded requests (JSON bodies are accepted too); every answer "
            'is {"errno", "msg", "data"}: errno 0 on success, -1 with msg (and field) on '
            "failure. Authenticate with Authorization: Bearer <token>, or the console's "
            "session cookie plus the X-CSRF-Token header on changes.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "gdts_session"},
            }
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(build_spec())


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
