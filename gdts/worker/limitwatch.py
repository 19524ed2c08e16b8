"""The watch that holds runs to their limits (see gdts.runlimits): a few times a second, while
runs with limits go on, one scan of /proc adds up what each run's uid holds (resident memory,
processes and threads, CPU time, the most files one process has open) and kills a run that is
over a limit, remembering which, so its record names it.

By uid rather than by cgroup: the uid already finds every process of a run (see uidsweep), it
needs no writable cgroup tree (a container often has none, or a v1 one), and it costs one scan
for all runs. The price: memory is looked at, not capped, so a run may go past its memoryMB
for up to a scan's interval before it is killed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Collection

from gdts.runlimits import RunLimits, Usage, over
from gdts.worker.uidsweep import acting_uid

log = logging.getLogger(__name__)

_EVERY_S = 0.25
_PROC = "/proc"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class LimitWatch:
    """``run()`` is the watch: the owner starts and cancels it."""

    def __init__(self, signal_run: Callable[[int, signal.Signals], None]) -> None:
        """``signal_run(uid, sig)`` reaches every process of the run holding ``uid``."""
        self._signal_run = signal_run
        self._watched: dict[int, RunLimits] = {}  # uid -> the limits of the run holding it
        self._over: dict[int, str] = {}  # uid -> the limit its run went over, said
        self._wake = asyncio.Event()

    def watch(self, uid: int, limits: RunLimits) -> None:
        if limits:
            self._watched[uid] = limits
            self._wake.set()

    def unwatch(self, uid: int) -> str | None:
        """The run holding ``uid`` ended: the limit it was killed for, if any."""
        self._watched.pop(uid, None)
        return self._over.pop(uid, None)

    async def run(self) -> None:
        while True:
            if not self._watched:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(_EVERY_S)
            await self.look()

    async def look(self) -> None:
        """One scan: kill each watched run that is over a limit."""
        watched = dict(self._watched)
        if not watched:
            return
        count_files = frozenset(uid for uid, lim in watched.items() if lim.open_files is not None)
        usage = await asyncio.to_thread(usage_of, watched, count_files)
        for uid, used in usage.items():
            said = over(watched[uid], used, _TICKS_PER_S)
            if said is None or uid in self._over or uid not in self._watched:
                continue
            self._over[uid] = said
            log.warning("killing the run of uid %d: %s", uid, said)
            self._signal_run(uid, signal.SIGKILL)


def usage_of(uids: Collection[int], count_files: Collection[int] = ()) -> dict[int, Usage]:
    """uid -> what its processes hold now, for the uids that have any. Blocking: call it in a
    thread."""
    wanted = frozenset(uids)
    totals: dict[int, list[int]] = {}  # uid -> [rss kB, tasks, cpu ticks, most files]
    with os.scandir(_PROC) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                _add(entry.name, wanted, count_files, totals)
    return {uid: Usage(*numbers) for uid, numbers in totals.items()}


def _add(
    pid: str, wanted: frozenset[int], count_files: Collection[int], totals: dict[int, list[int]]
) -> None:
    with open(f"{_PROC}/{pid}/status", "rb") as file:
        status = file.read()
    uid = acting_uid(status)  # not the worker, mid-spawn with a run's real uid
    if uid not in wanted:
        return
    with open(f"{_PROC}/{pid}/stat", "rb") as file:
        # After the command name (which may hold spaces and parentheses): field 3 on.
        after = file.read().rpartition(b")")[2].split()
    # utime, stime, cutime, cstime: fields 14-17; threads: 20; rss in pages: 24.
    cpu = sum(int(value) for value in after[11:15])
    tasks = int(after[17])
    rss_kb = int(after[21]) * _PAGE_KB
    files = len(os.listdir(f"{_PROC}/{pid}/fd")) if uid in count_files else 0
    numbers = totals.setdefault(uid, [0, 0, 0, 0])
    numbers[0] += rss_kb
    numbers[1] += tasks
    numbers[2] += cpu
    numbers[3] = max(numbers[3], files)
