"""Where each request of a paged etcd read ends. Pure.

etcd 3.4 walks every key of a request's range, whatever its limit, to count them (etcd issue
11057): reading a million keys in pages of 10,000 over the whole prefix walks the rest of the
million for every page, fifty million steps in all, and a page of 100 jobs costs a walk of all
of them. So each request asks for a narrower range: the keys that share the cursor's first
``depth`` bytes, narrower after a full page, wider after a nearly empty one. Each range starts
where the last one ended (or after its last key, when it held more), so no key is skipped; the
depth changes only how many requests a read makes.
"""

from __future__ import annotations

import os


class RangeBounds:
    def __init__(self, prefix: bytes, first: bytes, hint: bytes | None = None) -> None:
        """A read of the keys under ``prefix`` from ``first`` on. ``hint``: a key expected
        near the start (the first key a read from the prefix found last time): the first
        request then covers the keys before it and those that share its bytes."""
        self._prefix = prefix
        self.prefix_end = after_all(prefix)  # the end of the last range a read asks for
        self._hint = hint if hint is not None and first < hint < self.prefix_end else None
        start = self._hint if self._hint is not None else first
        self._depth = len(start) if len(start) > len(prefix) else len(prefix)
        self._narrowed = False  # by the reply before

    def end(self, cursor: bytes) -> bytes:
        """The end of the next request's range, which starts at ``cursor``."""
        if self._hint is not None and cursor < self._hint:
            cursor = self._hint
        if self._depth <= len(self._prefix):
            return self.prefix_end
        end = after_all(cursor[: self._depth].ljust(self._depth, b"\x00"))
        return end if self._prefix < end < self.prefix_end else self.prefix_end

    def heard(self, keys: list[bytes], more: bool, want: int) -> None:
        """What the request just made returned: its keys (the first and the last suffice),
        whether its range holds more, and how many keys it asked for."""
        self._hint = None
        narrowed, self._narrowed = self._narrowed, False
        if more and keys:
            shared = len(os.path.commonprefix([keys[0], keys[-1]]))
            self._depth = max(self._depth + 1, shared)
            self._narrowed = True
        elif not more and len(keys) < max(1, want // 4) and not narrowed:
            # (Just after narrowing, a nearly empty range is the rest of a block whose keys
            # were all read: the next block at the same depth is the one to ask for.)
            self._depth = max(len(self._prefix), self._depth - 1)


def after_all(start: bytes) -> bytes:
    """The smallest key after every key that starts with ``start`` (b"" if there is none)."""
    stripped = start.rstrip(b"\xff")
    if not stripped:
        return b""
    return stripped[:-1] + bytes([stripped[-1] + 1])
