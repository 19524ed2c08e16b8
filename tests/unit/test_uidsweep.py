"""Which uid makes a process a run's (gdts.worker.uidsweep), from literal /proc status texts."""

from __future__ import annotations

from gdts.worker.uidsweep import acting_uid


def _status(uids: str, state: str = "S (sleeping)") -> bytes:
    return f"Name:\tbash\nState:\t{state}\nTgid:\t7\nUid:\t{uids}\nGid:\t1\t1\t1\t1\n".encode()


def test_the_effective_uid_decides() -> None:
    assert acting_uid(_status("63001\t63001\t63001\t63001")) == 63001
    # The worker for the instant of a spawn: the run's real uid, its own effective one.
    assert acting_uid(_status("63001\t0\t0\t0")) == 0


def test_a_zombie_or_a_text_without_uids_acts_as_nobody() -> None:
    assert acting_uid(_status("63001\t63001\t63001\t63001", "Z (zombie)")) is None
    assert acting_uid(b"Name:\tx\nState:\tS (sleeping)\n") is None
