"""gdts.secretbox: sealing and opening with a key ring, the stored record, the config's keys,
secret names and values."""

import base64
import json

import pytest

from gdts.errors import ConfigError, InvalidFieldError
from gdts.secretbox import (
    KeyRing,
    SealedSecret,
    SecretError,
    SecretRecord,
    parse_key_ring,
    validate_secret_name,
    validate_secret_value,
)

K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()
NONCE = b"n" * 12


def ring(*entries: tuple[str, str]) -> KeyRing:
    return parse_key_ring([{"id": key_id, "key": key} for key_id, key in entries])


def test_a_sealed_value_opens_with_its_key_and_holds_no_clear_text() -> None:
    sealed = ring(("k1", K1)).seal("ops", "db", "hunter2-long-value", nonce=NONCE)
    assert sealed.key_id == "k1" and b"hunter2" not in sealed.ciphertext
    assert len(sealed.ciphertext) == len("hunter2-long-value") + 16  # GCM's tag
    assert ring(("k1", K1)).open("ops", "db", sealed) == "hunter2-long-value"


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = ring(("k1", K1)).seal("ops", "db", "v")
    both = ring(("k2", K2), ("k1", K1))
    assert both.open("ops", "db", old) == "v"
    assert both.seal("ops", "db", "v").key_id == "k2"
    assert both.current_id == "k2" and both.key_ids() == ("k2", "k1")


def test_a_key_the_ring_lacks_is_named_not_guessed() -> None:
    sealed = ring(("k1", K1)).seal("ops", "db", "v")
    with pytest.raises(SecretError, match=r"sealed with key 'k1', which this process does not "
                       r"have \(secretKeys: k2\)"):  # fmt: skip
        ring(("k2", K2)).open("ops", "db", sealed)


def test_a_ciphertext_is_bound_to_its_team_and_name() -> None:
    keys = ring(("k1", K1))
    sealed = keys.seal("ops", "db", "v")
    for team, name in (("dev", "db"), ("ops", "other")):
        with pytest.raises(SecretError, match=r"does not open with key 'k1'"):
            keys.open(team, name, sealed)
    forged = SealedSecret(
        "k1", sealed.nonce, sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1])
    )
    with pytest.raises(SecretError, match="altered"):
        keys.open("ops", "db", forged)


def test_an_empty_ring_cannot_seal() -> None:
    assert not KeyRing()
    with pytest.raises(ConfigError, match="secretKeys: no secret key configured"):
        KeyRing().seal("ops", "db", "v")


def test_the_record_round_trips_and_lists_no_value() -> None:
    record = SecretRecord(ring(("k1", K1)).seal("ops", "db", "v", nonce=NONCE), 1700, "alice")
    raw = record.to_bytes()
    data = json.loads(raw)
    assert data["v"] == 1 and data["keyId"] == "k1" and data["updatedBy"] == "alice"
    assert base64.b64decode(data["nonce"]) == NONCE
    assert SecretRecord.from_bytes(raw) == record
    assert record.listed("db") == {"name": "db", "keyId": "k1", "updatedAt": 1700,
                                   "updatedBy": "alice"}  # fmt: skip
    for bad in (b"x", b"{}", b'{"v": 2}', b'{"v":1,"keyId":"k","nonce":"!!","ciphertext":"",'
                b'"updatedAt":1,"updatedBy":"a"}'):  # fmt: skip
        with pytest.raises(SecretError, match="stored secret is not readable"):
            SecretRecord.from_bytes(bad)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"id": "k1"}], r"secretKeys\[0\]: must be an object with \"id\" and \"key\""),
        ([{"id": "k 1", "key": K1}], r"id must be 1-64 letters"),
        ([{"id": "k1", "key": K1}, {"id": "k1", "key": K2}], r"\[1\]: id 'k1' is given twice"),
        ([{"id": "k1", "key": "c2hvcnQ="}], r"key of 'k1' must be the base64 of 32 random bytes"),
        ([{"id": "k1", "key": "not base64!"}], r"must be the base64 of 32"),
        ([{"id": "k1", "key": 5}], r"must be the base64 of 32"),
    ],
)
def test_bad_keys_are_refused_without_repeating_them(entries: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_key_ring(entries)
    assert "c2hvcnQ=" not in str(caught.value) and "not base64!" not in str(caught.value)


@pytest.mark.parametrize("name", ["", "a/b", "a b", "é", ".", "..", "x" * 129, 5, None])
def test_secret_names_are_plain(name: object) -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must be"):
        validate_secret_name(name)
    assert validate_secret_name("db-password_2.prod") == "db-password_2.prod"


@pytest.mark.parametrize("value", ["", "a\x00b", "x" * (64 * 1024 + 1), 5])
def test_secret_values_are_bounded_and_never_echoed(value: object) -> None:
    with pytest.raises(InvalidFieldError, match=r"^value: must") as caught:
        validate_secret_value(value)
    assert "a\x00b" not in str(caught.value)
