"""Nothing of a run outlives its worker, however the worker dies (SIGKILL, the OOM killer, a
crash, a container without an init): a small process started by the worker holds the read end
of a pipe whose write end only the worker holds. When the worker dies the kernel closes the
write end; the guardian reads end-of-file, kills every process of the worker's run uids (see
uidsweep) and exits. On a clean stop the worker closes the pipe itself, after its drain.

``python -m gdts.worker.guardian FIRST LAST`` is the guardian; ``Guardian`` starts it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

from gdts.worker.uidsweep import kill_all

_STOP_WAIT_S = 10.0


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
    # Only the worker's death (end-of-file on stdin) ends this process.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    kill_all(range(first, last + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
