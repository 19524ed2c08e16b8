"""Checks of one value from untrusted input, shared by the job's fields, its HTTP target and
the notification channels. Pure: a value in, the checked value or an InvalidFieldError naming
the field out."""

from __future__ import annotations

import math

from gdts.errors import InvalidFieldError
from gdts.names import require_utf8, type_name


def validate_choice(field_name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidFieldError(field_name, f"must be one of {', '.join(choices)} (got {value!r})")
    return value


def validate_bool(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidFieldError(field_name, f"must be true or false, got {value!r}")
    return value


def validate_int(field_name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFieldError(field_name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidFieldError(field_name, f"must be between {low} and {high} (got {value})")
    return value


def validate_seconds(field_name: str, value: object, high: float, low: float = 0.0) -> float:
    """A number of seconds (fractions allowed) from ``low`` (or above 0) to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidFieldError(field_name, f"must be a number of seconds, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer past any float (a JSON literal of 400 digits)
        finite = False
    if not finite or value <= 0:
        raise InvalidFieldError(field_name, f"must be greater than 0 (got {value})")
    if value < low:
        raise InvalidFieldError(field_name, f"must be at least {low:g} seconds (got {value})")
    if value > high:
        raise InvalidFieldError(field_name, f"must be at most {high:g} seconds (got {value})")
    return float(value)


def validate_text(field_name: str, value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if len(value) > max_chars:
        raise InvalidFieldError(
            field_name, f"must be at most {max_chars} characters (got {len(value)})"
        )
    require_utf8(field_name, value)
    return value
