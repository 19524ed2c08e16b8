"""Secrets out of a run's output: every value a run was given is replaced by ``***`` before
the output is kept, so neither the stored record nor the live output (which reads only what
is kept) ever holds one. Pure.

A value may arrive split across two reads: what could be the start of one (the last
``longest - 1`` bytes) is held back until the next read or the run's end, so the kept bytes
are final when they are kept, and a value is never masked in part (a shorter value that starts
a longer one waits for the bytes that say which it is)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from gdts.worker.outputcap import OutputCap

MASK = b"***"


class Redactor:
    def __init__(self, values: Iterable[str]) -> None:
        encoded = sorted({v.encode() for v in values if v}, key=len, reverse=True)
        # Longest first: a value inside another is masked as part of the longer one.
        self._pattern = re.compile(b"|".join(re.escape(v) for v in encoded)) if encoded else None
        self.hold = max(0, len(encoded[0]) - 1) if encoded else 0

    def bytes(self, data: bytes) -> bytes:
        return data if self._pattern is None else self._pattern.sub(MASK, data)

    def matches(self, data: bytes) -> Iterator[re.Match[bytes]]:
        return iter(()) if self._pattern is None else self._pattern.finditer(data)

    def text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self.bytes(text.encode(errors="surrogateescape")).decode(errors="replace")


class RedactingCap(OutputCap):
    """An OutputCap that keeps a run's output with its secrets masked."""

    def __init__(self, limit: int, redactor: Redactor) -> None:
        super().__init__(limit)
        self._redactor = redactor
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        # Bytes from ``cut`` on could be the start of a value (or of a longer value than one
        # that matches there already): they wait. A match that starts before it is whole.
        cut = len(data) - self._redactor.hold
        if cut <= 0:
            self._pending = data
            return
        parts, at = [], 0
        for match in self._redactor.matches(data):
            if match.start() >= cut:
                break
            parts += (data[at : match.start()], MASK)
            at = match.end()
        end = max(at, cut)
        parts.append(data[at:end])
        self._pending = data[end:]
        super().feed(b"".join(parts))

    def finish(self) -> None:
        """The run's output ended: what was held back is kept."""
        if self._pending:
            pending, self._pending = self._pending, b""
            super().feed(self._redactor.bytes(pending))

    def text(self) -> str:
        self.finish()
        return super().text()


def capture_for(limit: int, redactor: Redactor | None) -> OutputCap:
    """The capture of a run: a plain one for a run given no secret (nearly all)."""
    return OutputCap(limit) if redactor is None else RedactingCap(limit, redactor)
