"""Names operators give (jobs, channels, users): what the keys, the console and the logs can
carry safely. Pure."""

from __future__ import annotations

import unicodedata

from gdts.errors import InvalidFieldError

MAX_NAME_CHARS = 128

# Unicode categories refused in names besides control characters: format (Cf), line and
# paragraph separators (Zl, Zp), private use (Co), unassigned (Cn); spaces other than U+0020.
_INVISIBLE = frozenset(("Cf", "Zl", "Zp", "Co", "Cn"))


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def require_utf8(field_name: str, value: str) -> bytes:
    # JSON can carry lone surrogates ("\ud800"), which no UTF-8 key or argv can hold.
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise InvalidFieldError(field_name, "must be valid Unicode (no lone surrogates)") from None


def validate_name(value: object, field_name: str = "name") -> str:
    """Check a job name; the name becomes part of etcd keys, so this guards the key layout too."""
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
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
    if value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        return value  # no control, format or odd space character is printable ASCII
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidFieldError(field_name, "must not contain control characters")
    require_utf8(field_name, value)
    if value != value.strip():
        raise InvalidFieldError(field_name, "must not start or end with white space")
    for ch in value:
        category = unicodedata.category(ch)
        if category in _INVISIBLE or (category == "Zs" and ch != " "):
            # Format and separator characters (U+202E, U+200B, U+2028, U+00A0) make one name
            # look like another, or reorder what the console shows around it.
            raise InvalidFieldError(
                field_name,
                f"must not contain U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}): "
                "format, separator, private-use or unassigned characters are refused",
            )
    return value
