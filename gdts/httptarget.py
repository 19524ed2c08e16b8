"""What an HTTP job sends: its ``http`` field (method, url, headers, body, expectedStatus,
secretHeaders) checked into an HttpTarget, which the worker's httpjob module sends. Pure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from gdts.errors import InvalidFieldError
from gdts.jobenv import secret_refs
from gdts.names import require_utf8, type_name
from gdts.validators import validate_choice, validate_int

MAX_URL_CHARS = 2048
MAX_HTTP_HEADERS = 50
MAX_HTTP_BODY_BYTES = 64 * 1024
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class HttpTarget:
    """What an HTTP job requests; the worker's httpjob module sends it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    expected_status: int | None = None
    # Header name -> the name of a secret of the job's team, filled in at send time.
    secret_headers: tuple[tuple[str, str], ...] = ()

    def to_api(self) -> dict[str, object]:
        view: dict[str, object] = {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "body": self.body,
            "expectedStatus": self.expected_status,
        }
        if self.secret_headers:  # only then: a record without it is read by older processes
            view["secretHeaders"] = dict(self.secret_headers)
        return view


_HTTP_KEYS = ("method", "url", "headers", "body", "expectedStatus", "secretHeaders")


def parse_http(value: object) -> HttpTarget:
    if not isinstance(value, dict):
        raise InvalidFieldError("http", f"must be an object, got {type_name(value)}")
    unknown = sorted(set(value) - set(_HTTP_KEYS))
    if unknown:
        raise InvalidFieldError(
            f"http.{unknown[0]}", f"unknown field (known: {', '.join(_HTTP_KEYS)})"
        )
    method = value.get("method", "GET")
    if isinstance(method, str):
        method = method.upper()
    method = validate_choice("http.method", method, HTTP_METHODS)
    if "url" not in value:
        raise InvalidFieldError("http.url", "is required")
    url = _validate_url(value["url"])
    headers = _validate_headers(value.get("headers", {}))
    body = value.get("body", "")
    if not isinstance(body, str):
        raise InvalidFieldError("http.body", f"must be a string, got {type_name(body)}")
    size = len(require_utf8("http.body", body))
    if size > MAX_HTTP_BODY_BYTES:
        raise InvalidFieldError(
            "http.body", f"must be at most {MAX_HTTP_BODY_BYTES} bytes (got {size})"
        )
    expected = value.get("expectedStatus")
    if expected is not None:
        expected = validate_int("http.expectedStatus", expected, 100, 599)
    secret_headers = _secret_headers(value.get("secretHeaders", {}), headers)
    return HttpTarget(method, url, headers, body, expected, secret_headers)


def _secret_headers(
    value: object, headers: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    field_name = "http.secretHeaders"
    if value is None:
        return ()
    refs = secret_refs(field_name, value)
    plain = {name.lower() for name, _ in headers}
    for name, _ in refs:
        if not _TOKEN.fullmatch(name):
            raise InvalidFieldError(field_name, f"{name!r} is not a valid header name")
        if name.lower() in plain:
            raise InvalidFieldError(f"{field_name}.{name}", "is also in http.headers")
    return refs


def _validate_url(value: object) -> str:
    field_name = "http.url"
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if len(value) > MAX_URL_CHARS:
        raise InvalidFieldError(field_name, f"must be at most {MAX_URL_CHARS} characters")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidFieldError(field_name, "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port out of range or not a number
    except ValueError as exc:
        raise InvalidFieldError(field_name, f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidFieldError(field_name, f"{value!r} must start with http:// or https://")
    if not parts.hostname:
        raise InvalidFieldError(field_name, f"{value!r} has no host")
    if port == 0:
        raise InvalidFieldError(field_name, f"{value!r} has port 0")
    require_utf8(field_name, value)
    return value


def _validate_headers(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise InvalidFieldError(
            "http.headers", f"must be an object of name: value, got {type_name(value)}"
        )
    if len(value) > MAX_HTTP_HEADERS:
        raise InvalidFieldError("http.headers", f"must have at most {MAX_HTTP_HEADERS} entries")
    headers = []
    for name, text in value.items():
        if not _TOKEN.fullmatch(name):
            raise InvalidFieldError("http.headers", f"{name!r} is not a valid header name")
        if not isinstance(text, str):
            raise InvalidFieldError(
                "http.headers", f"value of {name!r} must be a string, got {type_name(text)}"
            )
        if any(ch in text for ch in "\r\n\x00"):
            raise InvalidFieldError(
                "http.headers", f"value of {name!r} must not contain CR, LF or NUL"
            )
        require_utf8("http.headers", text)
        headers.append((name, text))
    return tuple(headers)
