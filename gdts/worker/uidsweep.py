"""Every process of a run, found by its uid: each run of a worker with ``runUidRange`` has a uid
of its own, so whatever the run started (a ``setsid`` child, a detached daemon, a process that
renamed itself or made itself undumpable) is found by reading ``/proc/<pid>/status``, whose
``Uid:`` line gives the real, effective, saved and file-system uids whatever else the process
changed. A job cannot gain another uid: the worker sets no_new_privs, so no setuid binary
lifts it, and without privileges it cannot set any of the four to anything but its own.

A process is a run's by its *effective* uid. The worker itself holds a run's uid as its real
uid for the instant of each spawn (see spawn: the thread's credentials pass to the child), its
effective uid staying its own: a sweep that went by any of the four would, now and then, take
the worker for one of its runs and SIGKILL it (the fault campaign caught a guardian doing so).

Signals go through a pidfd opened before the process's uid is checked again, so a pid that
was reused between the scan and the signal is never hit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection

_PROC = "/proc"


def acting_uid(status: bytes) -> int | None:
    """The effective uid of a ``/proc/<pid>/status`` text (see above); None for a zombie, which
    holds nothing and waits only for its parent to reap it."""
    if b"\nState:\tZ" in status or b"\nState:\tX" in status:
        return None
    start = status.find(b"\nUid:")
    if start < 0:
        return None
    fields = status[start + 5 : status.find(b"\n", start + 1)].split()
    return int(fields[1]) if len(fields) > 1 else None


def _uid_of(pid: int) -> int | None:
    try:
        with open(f"{_PROC}/{pid}/status", "rb") as file:
            return acting_uid(file.read())
    except (OSError, ValueError):  # gone, or not readable: nothing of ours
        return None


def processes_of(uids: Collection[int]) -> dict[int, list[int]]:
    """uid -> the pids that act as it (their effective uid), for the uids asked about that
    have any."""
    found: dict[int, list[int]] = {}
    if not uids:
        return found
    wanted = frozenset(uids)
    own = os.getpid()
    with os.scandir(_PROC) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid == own:
                continue
            uid = _uid_of(pid)
            if uid in wanted:
                found.setdefault(uid, []).append(pid)
    return found


def signal_processes(pids: Collection[int], uids: Collection[int], sig: signal.Signals) -> int:
    """Send ``sig`` to each of ``pids`` that still holds one of ``uids``; returns how many got
    it."""
    sent = 0
    wanted = frozenset(uids)
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already
            continue
        try:
            # The pidfd pins the process: if the pid was reused since the scan, this reads the
            # new process and skips it, or the signal goes to the old, dead one.
            if _uid_of(pid) in wanted:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, sig)
                    sent += 1
        finally:
            os.close(fd)
    return sent


def signal_uids(uids: Collection[int], sig: signal.Signals) -> int:
    """One scan, one signal to every process found; returns how many got it."""
    found = processes_of(uids)
    return sum(signal_processes(pids, uids, sig) for pids in found.values())


def kill_all(uids: Collection[int], rounds: int = 50) -> bool:
    """SIGKILL every process of ``uids`` until a scan finds none (a process forked between a
    scan and its signals is found by the next scan); False if some were still there after
    ``rounds`` scans. Blocking: call it in a thread."""
    for round_ in range(rounds):
        found = processes_of(uids)
        if not found:
            return True
        if round_:
            time.sleep(min(0.001 * 2**round_, 0.05))  # let the last round's signals land
            found = processes_of(uids)
            if not found:
                return True
        for pids in found.values():
            # Stopped first, all of them, so none forks while its siblings are being killed.
            signal_processes(pids, uids, signal.SIGSTOP)
        for pids in found.values():
            signal_processes(pids, uids, signal.SIGKILL)
    return not processes_of(uids)
