"""What the live output flusher writes when, and how the manager reassembles it: pure parts,
with literal times (seconds on the event loop's clock)."""

from __future__ import annotations

from gdts.livelog import contiguous_from
from gdts.manager.output_api import whole_chars
from gdts.worker.liveflush import due_chunks
from gdts.worker.outputcap import OutputCap


def test_only_runs_going_on_long_enough_with_new_bytes_are_due() -> None:
    runs = [
        ("long", 100.0, 300, 0),  # 2 s old, 300 bytes never written: all of them
        ("young", 101.5, 500, 0),  # 0.5 s old: not yet, whatever it printed
        ("quiet", 99.0, 40, 40),  # old, but nothing new since its last flush
        ("more", 100.9, 90, 50),  # 1.1 s old: the 40 bytes after its last flush
    ]
    assert due_chunks(runs, now=102.0, after_s=1.0) == [("long", 0, 300), ("more", 50, 90)]


def test_a_run_reaches_its_age_exactly_at_after_s() -> None:
    assert due_chunks([("r", 10.0, 5, 0)], now=10.999, after_s=1.0) == []
    assert due_chunks([("r", 10.0, 5, 0)], now=11.0, after_s=1.0) == [("r", 0, 5)]


def test_chunks_and_the_whole_flush_are_bounded() -> None:
    runs = [("a", 0.0, 1000, 0), ("b", 0.0, 1000, 100), ("c", 0.0, 1000, 0)]
    # At most 300 bytes a run, 700 in all: c gets what is left, then nothing more is due.
    assert due_chunks(runs, now=5.0, after_s=1.0, chunk_max=300, total_max=700) == [
        ("a", 0, 300), ("b", 100, 400), ("c", 0, 100),
    ]  # fmt: skip
    assert due_chunks(runs, now=5.0, after_s=1.0, chunk_max=300, total_max=600) == [
        ("a", 0, 300), ("b", 100, 400),
    ]  # fmt: skip


def test_nothing_is_due_when_no_run_is_old_enough() -> None:
    assert due_chunks([("r", 100.0, 10, 0)] * 3, now=100.4, after_s=1.0) == []
    assert due_chunks([], now=100.0, after_s=0.0) == []


def test_chunks_are_read_from_any_offset_up_to_the_first_gap() -> None:
    chunks = [(0, b"line 1\n"), (7, b"line 2\n"), (14, b"line 3\n"), (30, b"after a gap")]
    assert contiguous_from(chunks, 0) == (b"line 1\nline 2\nline 3\n", 21)
    assert contiguous_from(chunks, 10) == (b"e 2\nline 3\n", 21)
    assert contiguous_from(chunks, 21) == (b"", 21)


def test_a_read_ends_on_a_whole_utf8_character() -> None:
    euro = "€".encode()  # three bytes
    assert whole_chars(b"ab" + euro) == 5
    assert whole_chars(b"ab" + euro[:2]) == 2  # the rest comes with the next read
    assert whole_chars(b"ab" + euro[:1]) == 2
    assert whole_chars("é".encode()[:1]) == 0
    assert whole_chars(b"") == 0
    assert whole_chars("ab😀".encode()) == 6


def test_the_flusher_reads_any_range_of_what_a_run_kept() -> None:
    cap = OutputCap(12)
    for chunk in (b"line 1\n", b"li", b"ne 2\n", b"dropped"):  # the cap keeps 12 bytes
        cap.feed(chunk)
    assert cap.kept == 12 and cap.dropped == 9
    assert cap.kept_bytes(0, 12) == b"line 1\nline "
    assert cap.kept_bytes(5, 9) == b"1\nli"
    assert cap.kept_bytes(7, 7) == b""
