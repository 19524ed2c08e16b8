"""A job's tags and description: what an operator finds jobs by. Pure."""

from __future__ import annotations

import re

from gdts.errors import InvalidFieldError
from gdts.names import require_utf8, type_name

MAX_TAGS = 20
MAX_TAG_CHARS = 32
MAX_DESCRIPTION_CHARS = 1000
# ASCII letters, digits and a few separators: a tag goes into a URL's query and a filter's
# comma-separated list as it is, and reads the same in every font (no look-alike letters).
TAG_ALPHABET = "letters, digits, '-', '_', '.', ':' or '/'"
_TAG = re.compile(rf"[A-Za-z0-9_.:/-]{{1,{MAX_TAG_CHARS}}}")


def validate_tag(field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if _TAG.fullmatch(value) is None:
        raise InvalidFieldError(
            field_name, f"{value!r} is not a tag: 1-{MAX_TAG_CHARS} {TAG_ALPHABET}"
        )
    return value


def parse_tags(field_name: str, value: object) -> tuple[str, ...]:
    """A list of tags, each checked (``tags[2]`` names a bad one); a tag given twice is kept
    once, where it first came: a console that adds a tag twice is not refused for it."""
    if not isinstance(value, list):
        raise InvalidFieldError(field_name, f"must be a list of strings, got {type_name(value)}")
    tags = tuple(
        dict.fromkeys(validate_tag(f"{field_name}[{i}]", tag) for i, tag in enumerate(value))
    )
    if len(tags) > MAX_TAGS:
        raise InvalidFieldError(field_name, f"must have at most {MAX_TAGS} tags (got {len(tags)})")
    return tags


def validate_description(field_name: str, value: object) -> str:
    """Free text, newlines included (the console shows it as text, never as HTML)."""
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise InvalidFieldError(
            field_name, f"must be at most {MAX_DESCRIPTION_CHARS} characters (got {len(value)})"
        )
    if "\x00" in value:
        raise InvalidFieldError(field_name, "must not contain a NUL character")
    require_utf8(field_name, value)
    return value
