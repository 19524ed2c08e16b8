"""gdts.worker.spill: segment files of JSON lines, written atomically, read back oldest first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gdts.worker.spill import SpillDir, read_segment

RUN_A = {"job": "backup", "tick": 1715953200000, "attempt": 1, "status": "succeeded"}
RUN_B = {"job": "report", "tick": 1715953260000, "attempt": 2, "status": "failed", "exit": 3}


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- write --------------------------------------------------------------------------------------


def test_write_creates_the_directory_and_one_jsonl_segment(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path / "spill" / "results")
    segment = spill.write([RUN_A])
    assert segment.parent == tmp_path / "spill" / "results"
    assert segment.suffix == ".jsonl"
    assert _files(segment.parent) == [segment.name]


def test_write_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    spill.write([RUN_A])
    spill.write([RUN_B])
    names = _files(tmp_path)
    assert len(names) == 2
    assert all(name.endswith(".jsonl") for name in names)
    assert not any(name.endswith(".tmp") for name in names)


def test_write_is_compact_json_lines_ending_with_a_newline_without_id(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    segment = spill.write([{"_id": "665f1c0e9b1e8a3d4c2b1a00", **RUN_A}, RUN_B])
    assert segment.read_text() == (
        '{"job":"backup","tick":1715953200000,"attempt":1,"status":"succeeded"}\n'
        '{"job":"report","tick":1715953260000,"attempt":2,"status":"failed","exit":3}\n'
    )


def test_write_does_not_modify_the_callers_documents(tmp_path: Path) -> None:
    document = {"_id": 42, "job": "backup"}
    SpillDir(tmp_path).write([document])
    assert document == {"_id": 42, "job": "backup"}


def test_a_failed_write_leaves_no_segment(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    with pytest.raises(TypeError):
        spill.write([RUN_A, {"job": "bad", "when": object()}])
    assert spill.count() == 0
    assert spill.oldest() is None
    assert not any(name.endswith(".jsonl") for name in _files(tmp_path))


def test_write_then_read_segment_round_trips(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    segment = spill.write([{"_id": 1, **RUN_A}, RUN_B, {"job": "ünïcode ✓", "tick": 0}])
    assert read_segment(segment) == [RUN_A, RUN_B, {"job": "ünïcode ✓", "tick": 0}]


# --- oldest and count ---------------------------------------------------------------------------


def test_missing_directory_has_no_oldest_and_zero_count(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path / "absent")
    assert spill.oldest() is None
    assert spill.count() == 0
    assert not (tmp_path / "absent").exists()


def test_empty_directory_has_no_oldest_and_zero_count(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    assert spill.oldest() is None
    assert spill.count() == 0


def test_count_counts_segments_only(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    spill.write([RUN_A])
    spill.write([RUN_B])
    spill.write([])
    (tmp_path / "00000000000000000001-1-000000.tmp").write_text('{"job":"half"')
    (tmp_path / "notes.txt").write_text("x")
    assert spill.count() == 3


def test_oldest_ignores_temporary_files(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    (tmp_path / "00000000000000000001-1-000000.tmp").write_text('{"job":"half"')
    segment = spill.write([RUN_A])
    assert spill.oldest() == segment


def test_oldest_returns_segments_in_write_order(tmp_path: Path) -> None:
    spill = SpillDir(tmp_path)
    written = [spill.write([{"job": "backup", "tick": tick}]) for tick in range(12)]
    replayed = []
    while (segment := spill.oldest()) is not None:
        replayed.append(segment)
        segment.unlink()
    assert replayed == written
    assert spill.count() == 0


def test_oldest_keeps_write_order_within_the_same_nanosecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1715953200000000000)
    spill = SpillDir(tmp_path)
    ticks = [5, 3, 9, 1, 7, 2, 8, 0, 6, 4, 11, 10]
    for tick in ticks:
        spill.write([{"job": "backup", "tick": tick}])
    assert spill.count() == 12
    replayed = []
    while (segment := spill.oldest()) is not None:
        replayed.extend(doc["tick"] for doc in read_segment(segment))
        segment.unlink()
    assert replayed == ticks


def test_a_new_spill_dir_replays_segments_left_by_an_earlier_one(tmp_path: Path) -> None:
    first = SpillDir(tmp_path).write([RUN_A])
    second = SpillDir(tmp_path).write([RUN_B])
    later = SpillDir(tmp_path)
    assert later.count() == 2
    assert later.oldest() == first
    first.unlink()
    assert later.oldest() == second


# --- read_segment -------------------------------------------------------------------------------


def test_read_segment_skips_a_damaged_line_and_returns_the_rest(tmp_path: Path) -> None:
    segment = tmp_path / "00000000000000000001-1-000000.jsonl"
    segment.write_text(
        '{"job":"backup","tick":1}\n{"job":"report","ti\n\n{"job":"cleanup","tick":3}\n'
    )
    assert read_segment(segment) == [{"job": "backup", "tick": 1}, {"job": "cleanup", "tick": 3}]


def test_read_segment_of_a_truncated_last_line(tmp_path: Path) -> None:
    segment = tmp_path / "00000000000000000001-1-000000.jsonl"
    segment.write_text('{"job":"backup","tick":1}\n{"job":"rep')
    assert read_segment(segment) == [{"job": "backup", "tick": 1}]


def test_read_segment_of_an_empty_file(tmp_path: Path) -> None:
    segment = tmp_path / "00000000000000000001-1-000000.jsonl"
    segment.write_text("")
    assert read_segment(segment) == []


def test_read_segment_skips_a_line_with_invalid_utf8_and_returns_the_rest(tmp_path: Path) -> None:
    # "a damaged line is skipped, not fatal": bytes damaged on disk are a damaged line too.
    segment = tmp_path / "00000000000000000001-1-000000.jsonl"
    segment.write_bytes(
        b'{"job":"backup","tick":1}\n{"job":"\xff\xfe"}\n{"job":"cleanup","tick":3}\n'
    )
    assert read_segment(segment) == [{"job": "backup", "tick": 1}, {"job": "cleanup", "tick": 3}]


def test_read_segment_of_a_vanished_file_raises_file_not_found(tmp_path: Path) -> None:
    # the result sink relies on this when another worker sharing the directory took a segment
    with pytest.raises(FileNotFoundError):
        read_segment(tmp_path / "00000000000000000001-1-000000.jsonl")
