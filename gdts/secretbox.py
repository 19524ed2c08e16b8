"""Secrets at rest: AES-256-GCM with a key ring, and the record a secret is stored as. Pure: no
I/O (the nonce is random, so sealing is the one thing here that is not deterministic).

A key ring is the ``secretKeys`` config (or ``GDTS_SECRET_KEYS``): ``[{"id": "k2", "key":
"<base64 of 32 bytes>"}, ...]``. The first key seals; every key opens what was sealed with it,
so a key can be replaced without a moment when some secret cannot be read (see the README's
"Rotating the secret key"). The associated data binds a ciphertext to its team and name: a
record copied to another secret's key does not open.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gdts.errors import ConfigError, InvalidFieldError
from gdts.names import require_utf8, type_name

KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits: what GCM is made for
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRET_NAME_CHARS = 128
SECRET_NAME_PATTERN = "^[A-Za-z0-9_.-]{1,128}$"
RECORD_VERSION = 1
CONFIG_KEY = "secretKeys"
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class SecretError(Exception):
    """A stored secret that cannot be opened here: its key is not in the ring, or it was
    tampered with or copied to another name. The message names the secret, never its value."""


@dataclass(frozen=True)
class KeyRing:
    """Keys by id, the sealing one first. Empty: this process can neither seal nor open."""

    keys: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def current_id(self) -> str | None:
        return self.keys[0][0] if self.keys else None

    def __bool__(self) -> bool:
        return bool(self.keys)

    def key_ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    def seal(self, team: str, name: str, value: str, nonce: bytes | None = None) -> SealedSecret:
        """``value`` encrypted with the first key; ``nonce`` only for tests (random otherwise)."""
        if not self.keys:
            raise ConfigError(CONFIG_KEY, "no secret key configured: cannot store a secret")
        key_id, key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        ciphertext = AESGCM(key).encrypt(nonce, value.encode(), _bound_to(team, name))
        return SealedSecret(key_id, nonce, ciphertext)

    def open(self, team: str, name: str, sealed: SealedSecret) -> str:
        where = f"secret {name!r} of team {team!r}"
        key = dict(self.keys).get(sealed.key_id)
        if key is None:
            known = ", ".join(self.key_ids()) or "none"
            raise SecretError(f"{where} is sealed with key {sealed.key_id!r}, which this process "
                              f"does not have ({CONFIG_KEY}: {known})")  # fmt: skip
        try:
            plain = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _bound_to(team, name))
        except InvalidTag:
            raise SecretError(f"{where} does not open with key {sealed.key_id!r}: the key "
                              "is not the one that sealed it, or the record was "
                              "altered") from None  # fmt: skip
        return plain.decode()


@dataclass(frozen=True)
class SealedSecret:
    key_id: str
    nonce: bytes
    ciphertext: bytes  # with GCM's tag at its end


@dataclass(frozen=True)
class SecretRecord:
    """What etcd holds for one secret: its sealed value and who changed it when."""

    sealed: SealedSecret
    updated_ms: int
    updated_by: str

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "v": RECORD_VERSION,
                "keyId": self.sealed.key_id,
                "nonce": base64.b64encode(self.sealed.nonce).decode(),
                "ciphertext": base64.b64encode(self.sealed.ciphertext).decode(),
                "updatedAt": self.updated_ms,
                "updatedBy": self.updated_by,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> SecretRecord:
        try:
            data = json.loads(raw)
            if data.get("v") != RECORD_VERSION:
                raise ValueError(f"record version {data.get('v')!r} is not {RECORD_VERSION}")
            sealed = SealedSecret(
                str(data["keyId"]),
                base64.b64decode(data["nonce"], validate=True),
                base64.b64decode(data["ciphertext"], validate=True),
            )
            return cls(sealed, int(data["updatedAt"]), str(data["updatedBy"]))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise SecretError(f"stored secret is not readable ({exc})") from None

    def listed(self, name: str) -> dict[str, Any]:
        """What /secret/list shows of it: never the value, nor the ciphertext."""
        return {"name": name, "keyId": self.sealed.key_id, "updatedAt": self.updated_ms,
                "updatedBy": self.updated_by}  # fmt: skip


def _bound_to(team: str, name: str) -> bytes:
    return b"gdts-secret\x00" + team.encode() + b"\x00" + name.encode()


def parse_key_ring(entries: Sequence[Mapping[str, Any]], key: str = CONFIG_KEY) -> KeyRing:
    """The ``secretKeys`` config: a list of ``{"id", "key"}``, the key base64 of 32 bytes."""
    keys: list[tuple[str, bytes]] = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"id", "key"}:
            raise ConfigError(where, 'must be an object with "id" and "key" only')
        key_id, text = entry["id"], entry["key"]
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise ConfigError(where, f"id must be 1-64 letters, digits or -_. (got {key_id!r})")
        if any(key_id == known for known, _ in keys):
            raise ConfigError(where, f"id {key_id!r} is given twice")
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        except binascii.Error:
            raw = b""
        if len(raw) != KEY_BYTES:
            # The key itself is never repeated in the message: it ends up in logs.
            raise ConfigError(
                where,
                f"key of {key_id!r} must be the base64 of {KEY_BYTES} random bytes (e.g. from: "
                "head -c 32 /dev/urandom | base64)",
            )
        keys.append((key_id, raw))
    return KeyRing(tuple(keys))


def new_key_entry(key_id: str) -> dict[str, str]:
    """A fresh ``secretKeys`` entry (``gdts dev`` makes one at first start)."""
    return {"id": key_id, "key": base64.b64encode(os.urandom(KEY_BYTES)).decode()}


def validate_secret_name(value: object, field_name: str = "name") -> str:
    """A secret's name: part of an etcd key and of a job's secretEnv, so plain characters only."""
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if not _SECRET_NAME.fullmatch(value) or value in (".", ".."):
        raise InvalidFieldError(field_name, f"must be 1-{MAX_SECRET_NAME_CHARS} letters, digits "
                                f"or -_. (got {value!r})")  # fmt: skip
    return value


def validate_secret_value(value: object, field_name: str = "value") -> str:
    """A secret's value: what an environment variable or a header can carry, up to 64 KiB."""
    if not isinstance(value, str):
        raise InvalidFieldError(field_name, f"must be a string, got {type_name(value)}")
    if not value:
        raise InvalidFieldError(field_name, "must not be empty")
    size = len(require_utf8(field_name, value))
    if size > MAX_SECRET_BYTES:
        raise InvalidFieldError(field_name, f"must be at most {MAX_SECRET_BYTES} bytes "
                                f"(got {size})")  # fmt: skip
    if "\x00" in value:
        raise InvalidFieldError(field_name, "must not contain a NUL character")
    return value
