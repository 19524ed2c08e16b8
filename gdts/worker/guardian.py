"""Nothing of a run outlives its worker, however the worker dies (SIGKILL, the OOM killer, a
crash, a container without an init): a small process started by the worker holds the read end
of a pipe whose write end only the worker holds. When the worker dies the kernel closes the
write end; the guardian reads end-of-file, kills every process of the worker's run uids (see
uidsweep) and exits. On a clean stop the worker closes the pipe itself, after its drain.

Nor does a run outlive its worker's lease: the worker writes each new instant (monotonic, which
every process of the machine shares) from which its lease may be gone (see leasefence). If one
passes with no later one written, the worker is frozen or stalled past its lease while other
workers may start its jobs: the guardian kills the runs' uids, and waits for the next instant.

``python -m gdts.worker.guardian FIRST LAST`` is the guardian; ``Guardian`` starts it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import time

from gdts.worker.uidsweep import kill_all

log = logging.getLogger(__name__)

_STOP_WAIT_S = 10.0
_INSTANT = struct.Struct("=d")  # a monotonic instant, as the pipe carries it


class Guardian:
    def __init__(self, first: int, last: int) -> None:
        self._first, self._last = first, last
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe = -1

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        read_end, self._pipe = os.pipe()  # neither end is inherited by jobs (O_CLOEXEC)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gdts.worker.guardian", str(self._first), str(self._last)],
                stdin=read_end,
                # Its own session: a signal to the worker's process group (a Ctrl-C) must
                # not take the guardian down before the worker.
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")},
            )
        finally:
            os.close(read_end)

    def extend(self, fence_at: float) -> None:
        """The runs may live until ``fence_at`` (monotonic) unless told a later instant."""
        if self._pipe >= 0:
            try:
                os.write(self._pipe, _INSTANT.pack(fence_at))
            except OSError as exc:  # the guardian died: the worker's own fence still holds
                log.error("the guardian does not listen (%s)", exc)

    async def stop(self) -> None:
        """After the drain: the guardian sweeps once more (nothing should be left) and exits."""
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        process = self._process
        if process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), _STOP_WAIT_S)
            except TimeoutError:
                process.kill()
                await asyncio.to_thread(process.wait)


def main(argv: list[str]) -> int:
    first, last = int(argv[0]), int(argv[1])
    uids = range(first, last + 1)
    # Only the worker's death (end-of-file on stdin) ends this process.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        watch_fences(uids)
    kill_all(uids)
    return 0


def watch_fences(uids: range) -> None:
    """Read fence instants until end-of-file; when one passes with no later one, kill."""
    fence = None
    pending = b""
    while True:
        timeout = None if fence is None else max(0.0, fence - time.monotonic())
        readable, _, _ = select.select([0], [], [], timeout)
        if not readable:
            # The lease may be gone and the worker did not say otherwise. Said on the worker's
            # stderr (inherited): its runs die with no word from the worker itself.
            print(f"guardian: the worker's lease fence passed; killing the processes of uids "
                  f"{uids.start}-{uids.stop - 1}", file=sys.stderr, flush=True)  # fmt: skip
            kill_all(uids)
            fence = None
            continue
        data = os.read(0, 4096)
        if not data:
            return
        pending += data
        whole = len(pending) - len(pending) % _INSTANT.size
        for (instant,) in _INSTANT.iter_unpack(pending[:whole]):
            fence = instant
        pending = pending[whole:]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
