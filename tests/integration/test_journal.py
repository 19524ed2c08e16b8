"""The result journal (gdts.worker.journal) on a real directory: what was added is on disk
after one turn of the event loop, a file goes once all its results are stored, and at start
only the files no live process holds become spill segments."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from pathlib import Path

import pytest

from gdts.worker.journal import ResultJournal
from gdts.worker.spill import SpillDir, read_segment

pytestmark = pytest.mark.asyncio


def doc(i: int) -> dict[str, object]:
    return {"_id": object(), "jobName": "j", "planTime": i * 1000, "attempt": 1, "output": "x"}


def journal_files(directory: Path) -> int:
    return len(list(directory.glob("*.journal")))


def journal_lines(directory: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.journal"))
        for line in path.read_bytes().splitlines()
    ]


async def test_results_are_on_disk_after_one_turn_and_go_once_stored(tmp_path: Path) -> None:
    journal = ResultJournal(tmp_path, rotate_every=2)
    files = [journal.add(doc(i)) for i in range(5)]
    assert files[0] == files[1] != files[2] == files[3] != files[4]
    await asyncio.sleep(0)
    assert [d["planTime"] for d in journal_lines(tmp_path)] == [0, 1000, 2000, 3000, 4000]
    assert "_id" not in journal_lines(tmp_path)[0]
    journal.stored(files[0], 2)
    assert journal_files(tmp_path) == 2  # the first file went
    journal.stored(files[4])  # the current file stays open while it is written
    journal.close()
    assert [d["planTime"] for d in journal_lines(tmp_path)] == [2000, 3000]


async def test_at_start_an_earlier_lifes_journal_becomes_a_spill_segment(tmp_path: Path) -> None:
    dead = tmp_path / "00000000000000000001-99-000000.journal"
    dead.write_text('{"jobName":"j","planTime":1000}\n{"jobName":"j","planT')  # cut by a kill
    live = tmp_path / "00000000000000000002-98-000000.journal"
    live.write_text('{"jobName":"k","planTime":2000}\n')
    held = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # another worker sharing the directory, alive
        assert ResultJournal(tmp_path, rotate_every=10).recover() == 1
    finally:
        os.close(held)
    segment = SpillDir(tmp_path).oldest()
    assert segment is not None and read_segment(segment) == [{"jobName": "j", "planTime": 1000}]
    assert live.exists()
