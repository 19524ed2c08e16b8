"""A job's environment: its ``env`` (plain name: value) and its references to its team's
secrets (``secretEnv``, and ``http.secretHeaders`` through gdts.httptarget). Pure: the secrets'
values are filled in by the worker at run time, never here."""

from __future__ import annotations

import re

from gdts.errors import InvalidFieldError
from gdts.names import require_utf8, type_name
from gdts.secretbox import validate_secret_name

MAX_ENV_VARS = 100
MAX_ENV_BYTES = 64 * 1024  # names and values of a job's env together
MAX_SECRET_REFS = 50  # secretEnv entries, and http.secretHeaders entries
# The variables the worker sets itself (GDTS_JOB_NAME, ...): a job's env does not replace them.
RESERVED_ENV_PREFIX = "GDTS_"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_refs(field_name: str, value: object) -> tuple[tuple[str, str], ...]:
    """An object of name: secret name (secretEnv, http.secretHeaders)."""
    if not isinstance(value, dict):
        raise InvalidFieldError(
            field_name, f"must be an object of name: secret name, got {type_name(value)}"
        )
    if len(value) > MAX_SECRET_REFS:
        raise InvalidFieldError(field_name, f"must have at most {MAX_SECRET_REFS} entries")
    return tuple(
        (name, validate_secret_name(secret, f"{field_name}.{name}"))
        for name, secret in value.items()
    )


def parse_env(value: object) -> tuple[tuple[str, str], ...]:
    """A job's env: POSIX names (none of the worker's own GDTS_*), string values."""
    field_name = "env"
    if not isinstance(value, dict):
        raise InvalidFieldError(field_name, f"must be an object of name: value, got "
                                f"{type_name(value)}")  # fmt: skip
    if len(value) > MAX_ENV_VARS:
        raise InvalidFieldError(field_name, f"must have at most {MAX_ENV_VARS} entries")
    size = 0
    for name, text in value.items():
        check_env_name(field_name, name)
        where = f"{field_name}.{name}"
        if not isinstance(text, str):
            raise InvalidFieldError(where, f"must be a string, got {type_name(text)}")
        if "\x00" in text:
            raise InvalidFieldError(where, "must not contain a NUL character")
        size += len(name) + len(require_utf8(where, text))
    if size > MAX_ENV_BYTES:
        raise InvalidFieldError(field_name, f"must be at most {MAX_ENV_BYTES} bytes in all "
                                f"(got {size})")  # fmt: skip
    return tuple(value.items())


def check_env_name(field_name: str, name: str) -> None:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidFieldError(field_name, f"{name!r} is not a valid variable name (letters, "
                                "digits and _, not starting with a digit)")  # fmt: skip
    if name.startswith(RESERVED_ENV_PREFIX):
        raise InvalidFieldError(f"{field_name}.{name}", f"names starting with "
                                f"{RESERVED_ENV_PREFIX} are the worker's own")  # fmt: skip


def parse_secret_env(
    value: object, env: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    field_name = "secretEnv"
    refs = secret_refs(field_name, value)
    plain = {name for name, _ in env}
    for name, _ in refs:
        check_env_name(field_name, name)
        if name in plain:
            raise InvalidFieldError(f"{field_name}.{name}", "is also in env")
    return refs
