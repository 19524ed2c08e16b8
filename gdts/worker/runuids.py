"""A uid of its own for every run (``runUidRange``): the run's processes are exactly the
processes holding that uid, so a run cannot read or signal another run, and nothing it starts
can hide from its kill or outlive it (see uidsweep).

The pool hands out the uid that has been free longest. A run's uid goes back to the pool only
once a scan of /proc finds no process holding it; its working directory (its HOME and TMPDIR)
is made fresh again then, off the event loop: emptied, or made anew when the run changed
anything about the directory itself (its mode, owner, extended attributes or ACLs: an ACL could
let another uid in), so the next run of that uid starts in a directory exactly as new, without
a mkdir and chown on the event loop at each start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gdts.errors import ConfigError
from gdts.worker.runas import JobUser
from gdts.worker.uidsweep import kill_all, processes_of, signal_uids

log = logging.getLogger(__name__)

_SWEEP_EVERY_S = 0.1
_BACKGROUND_EVERY_S = 1.0


class UidPool:
    """Which uids are free; pure. The one free longest goes first, so a uid is reused as late
    as possible."""

    def __init__(self, first: int, last: int) -> None:
        self._free: deque[int] = deque(range(first, last + 1))
        self.size = last - first + 1

    def acquire(self) -> int | None:
        return self._free.popleft() if self._free else None

    def release(self, uid: int) -> None:
        self._free.append(uid)

    def __len__(self) -> int:
        """Free uids."""
        return len(self._free)


@dataclass
class _Held:
    uid: int
    job_name: str
    workdir: Path
    background: bool = False  # the run ended; what it left runs on (keepBackground)
    ended: bool = False


class RunUids:
    """Hands each run a uid and a private working directory, and takes both back once nothing
    of the run is left. ``run()`` is the sweeper: the owner starts and cancels it."""

    def __init__(self, first: int, last: int, run_dir: Path) -> None:
        self.first, self.last = first, last
        self._range = frozenset(range(first, last + 1))
        self._pool = UidPool(first, last)
        self._run_dir = run_dir
        self._held: dict[int, _Held] = {}
        self._fresh: set[int] = set()  # uids whose directory is ready for their next run
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()  # a sweep gave uids back to the pool

    async def prepare(self) -> None:
        """Before the first run: kill what a previous life of this worker left behind (it
        may have died without its guardian: a host reboot does not need one, a SIGKILL of
        both does), and make the directory runs work in."""
        left = await asyncio.to_thread(processes_of, self._range)
        if left:
            count = sum(len(pids) for pids in left.values())
            log.warning("killing %d process(es) left by runs of an earlier worker", count)
            await asyncio.to_thread(kill_all, self._range)
        await asyncio.to_thread(self._reset_run_dir)

    def _reset_run_dir(self) -> None:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        for parent in self._run_dir.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise ConfigError(
                    "runDir",
                    f"{self._run_dir} is under {parent}, which the run uids may not enter "
                    f"(mode {stat.S_IMODE(parent.stat().st_mode):o}): put runDir where others "
                    "may pass through (chmod o+x)",
                )
        # Root's, searchable by all but listable by none: each run finds only its own.
        os.chown(self._run_dir, 0, 0)
        self._run_dir.chmod(0o711)
        for entry in self._run_dir.iterdir():
            shutil.rmtree(entry, ignore_errors=True)

    def acquire(self, job_name: str) -> JobUser | None:
        """A uid and a fresh working directory for a run; None when every uid is taken."""
        uid = self._pool.acquire()
        if uid is None:
            return None
        workdir = self._run_dir / str(uid)
        if uid in self._fresh:
            self._fresh.discard(uid)
        else:  # the uid's first run since the worker started
            _make_fresh(workdir, uid)
        self._held[uid] = _Held(uid, job_name, workdir)
        return JobUser(
            name=f"gdts-run-{uid}", uid=uid, gid=uid, groups=(), home=str(workdir),
            workdir=str(workdir),
        )  # fmt: skip

    async def acquire_within(self, job_name: str, timeout_s: float) -> JobUser | None:
        """``acquire``, waiting up to ``timeout_s`` for a sweep to free a uid: under load the
        uids of runs that just ended wait for the sweep a moment before they are free again."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            user = self.acquire(job_name)
            left = deadline - asyncio.get_running_loop().time()
            if user is not None or left <= 0:
                return user
            self._freed.clear()
            self._wake.set()  # sweep now rather than at the next run's end
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), left)

    def signal_run(self, uid: int, sig: signal.Signals) -> None:
        """Every process of the run gets ``sig`` (a kill, a timeout, a replace)."""
        signal_uids((uid,), sig)

    def ended(self, uid: int, keep_background: bool = False) -> None:
        """The run's main process ended: what it left behind is killed at the next sweep, or
        left to run (keepBackground) until it ends or the job is killed."""
        held = self._held.get(uid)
        if held is None:
            return
        held.ended, held.background = True, keep_background
        self._wake.set()

    def kill_job(self, job_name: str) -> None:
        """/job/kill: background processes a finished run of the job left running die too."""
        for held in self._held.values():
            if held.job_name == job_name and held.background:
                held.background = False
                self._wake.set()

    def in_use(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        """Sweep forever: kill what ended runs left, free uids nothing holds any more."""
        while True:
            # Background processes (keepBackground) are looked at every second until they end.
            background = any(h.ended and h.background for h in self._held.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), _BACKGROUND_EVERY_S if background else None
                )
            self._wake.clear()
            await asyncio.sleep(_SWEEP_EVERY_S)  # gather the runs that end meanwhile
            await self.sweep()

    async def sweep(self) -> None:
        ending = [h for h in self._held.values() if h.ended]
        if not ending:
            return
        alive, fresh = await asyncio.to_thread(_sweep, ending)
        for held in ending:
            if held.uid in alive:
                continue
            del self._held[held.uid]
            if held.uid in fresh:
                self._fresh.add(held.uid)
            self._pool.release(held.uid)
        if len(alive) < len(ending):
            self._freed.set()
        if any(h.ended and not h.background for h in self._held.values()):
            self._wake.set()  # a run's processes outlived a sweep: again

    async def close(self) -> None:
        """At the end of the worker: nothing of any run is left (the drain is over)."""
        await asyncio.to_thread(kill_all, self._range)
        for held in self._held.values():
            held.ended, held.background = True, False
        await self.sweep()
        await asyncio.to_thread(self._reset_run_dir)  # the directories kept for next runs
        self._fresh.clear()


def _sweep(ending: list[_Held]) -> tuple[set[int], set[int]]:
    """Blocking, one thread hop per sweep: kill what the ended runs left (keepBackground
    aside), and make the directories of the uids nothing holds any more fresh again. Returns
    the uids still held by a process, and those whose directory is ready."""
    found = processes_of([h.uid for h in ending])
    doomed = [h.uid for h in ending if h.uid in found and not h.background]
    if doomed:
        if not kill_all(doomed):
            log.warning("processes of run uids %s survive SIGKILL; kept out of use", doomed)
        found = processes_of([h.uid for h in ending])
    fresh = set()
    for held in ending:
        if held.uid not in found:
            with contextlib.suppress(OSError):  # left unready: made at the uid's next run
                _make_fresh(held.workdir, held.uid)
                fresh.add(held.uid)
    return set(found), fresh


def _make_fresh(workdir: Path, uid: int) -> None:
    """The run's directory as new: empty, the uid's, mode 0700, no extended attributes."""
    try:
        info = workdir.lstat()
    except FileNotFoundError:
        info = None
    if info is not None:
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == uid
            and info.st_gid == uid
            and stat.S_IMODE(info.st_mode) == 0o700
            and not os.listxattr(workdir, follow_symlinks=False)
        ):
            with os.scandir(workdir) as entries:
                if next(entries, None) is None:
                    return  # untouched: most runs leave nothing
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(workdir)
        else:
            workdir.unlink()
    workdir.mkdir(mode=0o700)
    os.chown(workdir, uid, uid)
