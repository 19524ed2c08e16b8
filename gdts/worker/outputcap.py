"""What a run printed (a command's output, an HTTP response's transcript), kept up to a cap in
bytes. Past the cap only a count is kept, so a chatty job cannot grow the worker's memory."""

from __future__ import annotations

import codecs


class OutputCap:
    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        # One growing buffer rather than a list of chunks: the live output flusher reads
        # slices of it by offset while the run goes on (see liveflush).
        self._kept = bytearray()
        self.dropped = 0
        # Set when reading stopped before the end, so the dropped count is a lower bound.
        self.more_unknown = False
        self._notes: list[str] = []

    @property
    def kept(self) -> int:
        """Bytes kept so far."""
        return len(self._kept)

    def feed(self, chunk: bytes) -> None:
        room = self._limit - len(self._kept)
        if room > 0:
            self._kept += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def kept_bytes(self, start: int, end: int) -> bytes:
        """The kept bytes from ``start`` to ``end``."""
        return bytes(self._kept[start:end])

    def note(self, text: str) -> None:
        """A line the worker adds after the output (why reading stopped, say)."""
        self._notes.append(text)

    def text(self) -> str:
        data = bytes(self._kept)
        if not self.dropped:
            out = data.decode("utf-8", errors="replace")
        else:
            # The cut may split a multi-byte character; dropping the partial one keeps the
            # kept text within the byte limit instead of growing it with a replacement character.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            out = decoder.decode(data, final=False)
            if self.more_unknown:
                out += f"\n[output truncated at {len(self._kept)} bytes]"
            else:
                out += f"\n[output truncated: {self.dropped} more bytes not kept]"
        for note in self._notes:
            out += "\n" + note
        return out
