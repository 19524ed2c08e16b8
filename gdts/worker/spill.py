"""Results that do not fit in memory while MongoDB is away, kept on local disk.

Each spill is one segment file of JSON lines, written to a temporary name and renamed, so a
crash never leaves half a segment. Segments are read back oldest first and deleted only after
their documents are stored; a segment replayed after a crash cannot duplicate a run, because the
run log's unique (job, tick, attempt) index refuses the second copy.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any


class SpillDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._sequence = itertools.count()

    def write(self, documents: list[dict[str, Any]]) -> Path:
        """Blocking file I/O: call through asyncio.to_thread."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}.jsonl"
        final = self.path / name
        temporary = final.with_suffix(".tmp")
        try:
            with temporary.open("w") as handle:
                for document in documents:
                    clean = {k: v for k, v in document.items() if k != "_id"}
                    handle.write(json.dumps(clean, separators=(",", ":")) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            temporary.rename(final)
        except BaseException:
            temporary.unlink(missing_ok=True)  # never leave half a segment behind
            raise
        return final

    def oldest(self) -> Path | None:
        """Blocking: the oldest complete segment, or None."""
        if not self.path.is_dir():
            return None
        segments = sorted(self.path.glob("*.jsonl"))
        return segments[0] if segments else None

    def count(self) -> int:
        """Blocking: how many segments wait."""
        return len(list(self.path.glob("*.jsonl"))) if self.path.is_dir() else 0

    def size(self) -> int:
        """Blocking: the bytes every waiting segment takes."""
        if not self.path.is_dir():
            return 0
        return sum(_size_of(segment) for segment in self.path.glob("*.jsonl"))

    def make_room(self, wanted: int, limit: int) -> int:
        """Blocking: delete the oldest segments until ``wanted`` more bytes fit under
        ``limit``; returns how many results went with them (lost: logged by the caller)."""
        if not self.path.is_dir():
            return 0
        segments = sorted(self.path.glob("*.jsonl"))  # oldest first, as oldest() reads them
        sizes = {segment: _size_of(segment) for segment in segments}
        total = sum(sizes.values())
        dropped = 0
        for segment in segments:
            if total + wanted <= limit:
                break
            with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
                dropped += len(segment.read_bytes().splitlines())
                segment.unlink()
            total -= sizes[segment]
        return dropped


def _size_of(segment: Path) -> int:
    try:
        return segment.stat().st_size
    except FileNotFoundError:  # replayed meanwhile
        return 0


def read_segment(segment: Path) -> list[dict[str, Any]]:
    """Blocking: the documents of one segment; a damaged line is skipped, not fatal."""
    documents = []
    # Bytes, line by line: one undecodable line must not cost the rest of the segment.
    for line in segment.read_bytes().splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents
