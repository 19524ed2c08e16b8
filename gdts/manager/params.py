"""What a request asks, read strictly: the query string and the form or JSON body, each field
given once (``name=x&name=y`` or a JSON object with a key twice is refused, naming the field:
"last one wins" once deleted the wrong job), and no field the endpoint does not take."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from gdts.errors import InvalidFieldError
from gdts.jobfields import validate_name
from gdts.manager.endpoints import CHAIN_ID_PATTERN, CSRF_FIELD, endpoint_of

_CHAIN_ID = re.compile(CHAIN_ID_PATTERN)


def loads_strict(text: str | bytes, field_name: str) -> Any:
    """JSON whose objects name each key once; ``field_name`` is what an error names."""
    try:
        return json.loads(text, object_pairs_hook=_once_each)
    except _RepeatedKey as exc:
        raise InvalidFieldError(
            f"{field_name}.{exc.key}", "is given twice in the same JSON object"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidFieldError(field_name, f"is not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidFieldError(field_name, "is nested too deeply") from None


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return result


async def read_params(request: web.Request) -> Mapping[str, Any]:
    """Query string, then the form or JSON body: the original clients send forms."""
    params: dict[str, Any] = {}
    _add_once(params, request.query.items())
    if request.method == "POST" and request.body_exists:
        if request.content_type == "application/json":
            try:
                raw = await request.read()
            except (ValueError, LookupError) as exc:
                raise InvalidFieldError("body", f"cannot be read ({exc})") from None
            body = loads_strict(raw, "body")
            if not isinstance(body, dict):
                raise InvalidFieldError("body", "must be a JSON object")
            _add_once(params, body.items())
        else:
            try:
                form = await request.post()
            except (ValueError, LookupError) as exc:
                raise InvalidFieldError("body", f"is not a valid form ({exc})") from None
            _add_once(params, ((k, v) for k, v in form.items() if isinstance(v, str)))
    _reject_unknown(request, params)
    params.pop(CSRF_FIELD, None)
    return params


def _add_once(params: dict[str, Any], items: Iterable[tuple[str, Any]]) -> None:
    for key, value in items:
        if key in params:
            raise InvalidFieldError(key, "is given more than once (in the query or the body)")
        params[key] = value


def _reject_unknown(request: web.Request, params: Mapping[str, Any]) -> None:
    """A field the endpoint does not take is a mistake (a typo, a client for another
    version): say so instead of ignoring it."""
    endpoint = endpoint_of(request.method, request.path)
    if endpoint is None:
        return
    allowed = endpoint.field_names | ({CSRF_FIELD} if request.method == "POST" else set())
    unknown = sorted(set(params) - allowed)
    if unknown:
        known = ", ".join(sorted(endpoint.field_names)) or "none"
        raise InvalidFieldError(unknown[0], f"unknown field for {request.path} (known: {known})")


def int_param(params: Mapping[str, Any], field: str, default: int, low: int, high: int) -> int:
    raw = params.get(field)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise InvalidFieldError(field, f"must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidFieldError(field, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidFieldError(field, f"must be between {low} and {high}, got {value}")
    return value


def bool_param(params: Mapping[str, Any], field: str) -> bool:
    """A true/false field: JSON's true and false, or a form's "true"/"false" (absent: false)."""
    raw = params.get(field)
    if raw is None or raw == "" or raw is False or raw == "false":
        return False
    if raw is True or raw == "true":
        return True
    raise InvalidFieldError(field, f"must be true or false, got {raw!r}")


def chain_id_param(params: Mapping[str, Any], field: str = "chainId") -> str | None:
    """A chain run's id, ``<head job>@<generation>/<planned ms>`` (as its steps' runs carry
    it, see gdts.runrecord.ChainStep); None when not given."""
    raw = params.get(field)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise InvalidFieldError(field, f"must be a chain run's id, <job>@<generation>/<planned "
                                f"ms>, as its steps' runs show it (got {raw!r})")  # fmt: skip
    if _CHAIN_ID.fullmatch(raw) is None:
        raise InvalidFieldError(field, f"{raw!r} is not a chain run's id (<job>@<generation>/"
                                "<planned ms>, e.g. backup@42/1767225600000)")  # fmt: skip
    head = raw.rpartition("/")[0].rpartition("@")[0]  # names never hold "/"
    validate_name(head, field)
    return raw
