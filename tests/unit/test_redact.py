"""gdts.worker.redact: a run's secrets masked in what is kept of its output, even when a value
arrives split across reads."""

import pytest

from gdts.worker.outputcap import OutputCap
from gdts.worker.redact import RedactingCap, Redactor, capture_for


def kept(cap: OutputCap) -> bytes:
    return cap.kept_bytes(0, cap.kept)


def test_every_value_is_masked_the_longest_first() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    assert redactor.bytes(b"x abcdef y abc z") == b"x *** y *** z"
    assert redactor.text("abcdefabc") == "******"
    assert Redactor([]).bytes(b"abc") == b"abc"


@pytest.mark.parametrize("cut", range(1, 14))
def test_a_value_split_across_reads_never_reaches_the_kept_bytes(cut: int) -> None:
    cap = RedactingCap(1000, Redactor(["s3cr3t!"]))
    data = b"pw=s3cr3t! ok"
    cap.feed(data[:cut])
    assert b"s3cr3t!" not in kept(cap)
    cap.feed(data[cut:])
    assert b"s3cr" not in kept(cap)  # what could still be a value's start waits
    assert cap.text() == "pw=*** ok"


def test_held_bytes_wait_for_the_next_read_or_the_end() -> None:
    cap = RedactingCap(1000, Redactor(["abcd"]))
    cap.feed(b"hello ab")
    assert kept(cap) == b"hello"  # " ab" could start the value
    cap.feed(b"cX")
    assert kept(cap) == b"hello a"
    assert cap.text() == "hello abcX"


def test_one_byte_at_a_time() -> None:
    cap = RedactingCap(1000, Redactor(["tok-123", "tok"]))
    for byte in b"a tok-123 b tok c tok-12":
        cap.feed(bytes([byte]))
    assert cap.text() == "a *** b *** c ***-12"


def test_the_cap_counts_what_is_kept_after_masking() -> None:
    cap = RedactingCap(6, Redactor(["longsecret"]))
    cap.feed(b"longsecret longsecret")
    assert cap.text().startswith("*** **")
    assert "[output truncated" in cap.text()


def test_a_run_without_secrets_gets_the_plain_capture() -> None:
    assert type(capture_for(10, None)) is OutputCap
    assert isinstance(capture_for(10, Redactor(["x"])), RedactingCap)
