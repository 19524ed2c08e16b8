"""Every result on local disk from the turn of the event loop it was added in until MongoDB
(or a spill segment) has it, so a worker killed outright (SIGKILL, the OOM killer) loses no
finished run's result: its next start finds the journal and writes it.

Results go to journal files of ``rotate_every`` lines each, one ``write`` per event-loop turn
(a page-cache copy: it survives the process, not the machine). A file is deleted once every
result in it is stored. Each live file is held under an exclusive ``flock``, which the kernel
drops when its process dies: at start, the files nobody holds are an earlier life's, and become
spill segments (see spill) that the sink writes back like any other; a file another worker
sharing the directory still holds is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".journal"
NOT_JOURNALED = -1  # the file id of a result written to no journal (journaling failed)


class ResultJournal:
    def __init__(self, directory: Path, rotate_every: int) -> None:
        self._dir = directory
        self._rotate_every = rotate_every
        self._sequence = itertools.count()
        self._fd = -1
        self._current = NOT_JOURNALED  # the id of the file being written
        self._lines_in_current = 0
        self._unstored: dict[int, int] = {}  # file id -> its results not stored yet
        self._paths: dict[int, Path] = {}
        self._lines: list[bytes] = []  # added this turn of the loop, written at its end
        self._write_soon: asyncio.Handle | None = None
        self.broken = False  # the directory could not be written: results go unjournaled

    def recover(self) -> int:
        """Blocking, before the first add: turn the journals an earlier life left into spill
        segments; returns how many."""
        if not self._dir.is_dir():
            return 0
        recovered = 0
        for path in sorted(self._dir.glob("*" + SUFFIX)):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live worker's
            finally:
                os.close(fd)
            path.rename(path.with_suffix(".jsonl"))
            recovered += 1
        return recovered

    def add(self, document: dict[str, Any]) -> int:
        """Journal one result; returns the id of its file, to hand to ``stored`` later."""
        if self.broken:
            return NOT_JOURNALED
        if self._fd < 0 or self._lines_in_current >= self._rotate_every:
            if not self._rotate():
                return NOT_JOURNALED
        clean = {k: v for k, v in document.items() if k != "_id"}
        self._lines.append(json.dumps(clean, separators=(",", ":")).encode() + b"\n")
        self._lines_in_current += 1
        self._unstored[self._current] += 1
        if self._write_soon is None:
            self._write_soon = asyncio.get_running_loop().call_soon(self._write)
        return self._current

    def stored(self, file_id: int, count: int = 1) -> None:
        """``count`` results of that file are in MongoDB or a spill segment now."""
        if file_id == NOT_JOURNALED or file_id not in self._unstored:
            return
        self._unstored[file_id] -= count
        if self._unstored[file_id] <= 0 and file_id != self._current:
            self._forget(file_id)

    def close(self) -> None:
        """At the end: what is stored goes; what is not stays for the next start."""
        self._write()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for file_id in [f for f, left in self._unstored.items() if left <= 0]:
            self._forget(file_id)
        self._current = NOT_JOURNALED

    def _write(self) -> None:
        self._write_soon = None
        if not self._lines or self._fd < 0:
            return
        data = memoryview(b"".join(self._lines))
        self._lines.clear()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self._fail(exc)

    def _rotate(self) -> bool:
        self._write()
        previous = self._current
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}{SUFFIX}"
            path = self._dir / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._fail(exc)
            return False
        self._fd = fd
        self._current = next(self._sequence)
        self._paths[self._current] = path
        self._unstored[self._current] = 0
        self._lines_in_current = 0
        if previous != NOT_JOURNALED and self._unstored.get(previous, 1) <= 0:
            self._forget(previous)
        return True

    def _forget(self, file_id: int) -> None:
        self._unstored.pop(file_id, None)
        path = self._paths.pop(file_id, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _fail(self, exc: OSError) -> None:
        log.error("cannot journal results in %s (%s): a worker killed outright would lose the "
                  "results not yet in MongoDB", self._dir, exc)  # fmt: skip
        self.broken = True
        self._lines.clear()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
