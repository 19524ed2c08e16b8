"""What a run printed (a command's output, an HTTP response's transcript), kept up to a cap in
bytes. Past the cap only a count is kept, so a chatty job cannot grow the worker's memory."""

from __future__ import annotations

import codecs


class OutputCap:
    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0
        # Set when reading stopped before the end, so the dropped count is a lower bound.
        self.more_unknown = False
        self._notes: list[str] = []

    def feed(self, chunk: bytes) -> None:
        room = self._limit - self._kept
        if room > 0:
            self._chunks.append(chunk[:room])
            self._kept += min(room, len(chunk))
        self.dropped += max(0, len(chunk) - max(room, 0))

    @property
    def kept(self) -> int:
        """Bytes kept so far."""
        return self._kept

    def kept_bytes(self, start: int, end: int) -> bytes:
        """The kept bytes from ``start`` to ``end``, for the live output flusher (see
        liveflush), which asks for what came since its last flush: the chunks are walked from
        the newest, so a flush costs what is new, not all the run printed."""
        parts = []
        at = self._kept
        for chunk in reversed(self._chunks):
            if at <= start:
                break
            chunk_start = at - len(chunk)
            parts.append(chunk[max(0, start - chunk_start) : max(0, end - chunk_start)])
            at = chunk_start
        return b"".join(reversed(parts))

    def note(self, text: str) -> None:
        """A line the worker adds after the output (why reading stopped, say)."""
        self._notes.append(text)

    def text(self) -> str:
        data = b"".join(self._chunks)
        if not self.dropped:
            out = data.decode("utf-8", errors="replace")
        else:
            # The cut may split a multi-byte character; dropping the partial one keeps the
            # kept text within the byte limit instead of growing it with a replacement character.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            out = decoder.decode(data, final=False)
            if self.more_unknown:
                out += f"\n[output truncated at {self._kept} bytes]"
            else:
                out += f"\n[output truncated: {self.dropped} more bytes not kept]"
        for note in self._notes:
            out += "\n" + note
        return out
