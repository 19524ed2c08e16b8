"""Starting a job's shell as another user without forking the worker.

CPython's subprocess vforks only when the child keeps the parent's identity: with ``user=``,
``group=`` or ``extra_groups=`` it forks, and a fork costs in proportion to the worker's heap
(measured: 3.9 ms per spawn with a small heap, 18.8 ms with 400 MB, against 2.0 and 2.6 with
vfork). So the worker spawns through glibc's ``posix_spawn`` (a vfork: the cost does not grow
with the heap) and gives the child its identity through the kernel's per-thread credentials:
for the instant of the call, the calling thread's real uid, real gid and supplementary groups
are the run's, set with the raw system calls (glibc's own setuid() would change every thread);
its effective uid stays root throughout, so putting them back cannot fail. The child inherits
the thread's credentials and ``POSIX_SPAWN_RESETIDS`` sets its effective ids to the real ones
before anything else runs in it; exec then makes the saved ids equal too. The job ends up
exactly as a setgroups/setgid/setuid child would: the user's uid and gid in all three slots,
the user's groups, no capabilities, no way back to root.

Without glibc's ``posix_spawn_file_actions_addchdir_np``/``addclosefrom_np`` (2.29/2.34) or on a
CPU whose system call numbers are not listed here, ``subprocess.Popen`` does it (with a fork
when the user changes)."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from gdts.worker.runas import JobUser

log = logging.getLogger(__name__)

# setgroups, setresuid, setresgid: the raw calls change the calling thread only.
_SYSCALLS = {"x86_64": (116, 117, 119), "aarch64": (159, 147, 149)}
_RESETIDS, _SETSIGDEF, _SETSIGMASK, _SETSID = 0x01, 0x04, 0x08, 0x80
_OPAQUE = 1024  # bytes for glibc's posix_spawnattr_t (336) and file actions (80), with room
_SIGSET = 128
_KEEP = -1  # setresuid/setresgid: leave this id as it is


class Process(Protocol):
    """What the executor needs of a started process (subprocess.Popen has it too)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class SpawnedProcess:
    """A child started by posix_spawn; reaped only through ``poll``/``wait``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere: the status is lost (as Popen does)
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class Spawner:
    """Starts ``argv`` in a session of its own, stdin from /dev/null, stdout and stderr to
    ``output_fd``, in ``user``'s working directory and identity (None: the worker's)."""

    def __init__(self, posix_spawn: bool = True) -> None:
        """``posix_spawn=False``: through subprocess, as where posix_spawn is not usable (for
        the tests and the benchmark's comparison)."""
        self._libc: ctypes.CDLL | None = None
        self._attr = ctypes.create_string_buffer(_OPAQUE)
        self._worker_uid, self._worker_gid = os.getuid(), os.getgid()
        self._worker_group_ids = tuple(os.getgroups())
        self._worker_groups = _gid_array(self._worker_group_ids)
        self._group_arrays: dict[tuple[int, ...], ctypes.Array[ctypes.c_uint]] = {}
        self._calls = (0, 0, 0)  # setgroups, setresuid, setresgid: this CPU's numbers, with libc
        self._syscall: Any = None
        if not posix_spawn:
            return
        try:
            # KeyError: a CPU we have no numbers for
            self._calls = _SYSCALLS[platform.machine()]
            self._libc = _load_libc()
        except (OSError, AttributeError, KeyError) as exc:
            log.info("starting jobs through subprocess (posix_spawn not usable: %s)", exc)
            return
        libc = self._libc
        self._syscall = libc.syscall
        # The same for every spawn: every signal to its default, none blocked, a new session,
        # effective ids from the real ones (the run's, see the module text).
        defaults = ctypes.create_string_buffer(_SIGSET)
        blocked = ctypes.create_string_buffer(_SIGSET)
        libc.sigfillset(defaults)
        libc.sigemptyset(blocked)
        _check(libc.posix_spawnattr_init(self._attr), "posix_spawnattr_init")
        _check(libc.posix_spawnattr_setsigdefault(self._attr, defaults), "setsigdefault")
        _check(libc.posix_spawnattr_setsigmask(self._attr, blocked), "setsigmask")
        flags = _SETSIGDEF | _SETSIGMASK | _SETSID | _RESETIDS
        _check(libc.posix_spawnattr_setflags(self._attr, flags), "setflags")

    def start(
        self, argv: Sequence[str], env: Mapping[str, str], output_fd: int, user: JobUser | None
    ) -> Process:
        if self._libc is None:
            return _popen(argv, env, output_fd, user)
        switch_to = user if user is not None and user.switch else None
        args = _strings(argv)
        envp = _strings(f"{k}={v}" for k, v in env.items())
        actions = ctypes.create_string_buffer(_OPAQUE)
        libc = self._libc
        _check(libc.posix_spawn_file_actions_init(actions), "file_actions_init")
        try:
            libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0)
            libc.posix_spawn_file_actions_adddup2(actions, output_fd, 1)
            libc.posix_spawn_file_actions_adddup2(actions, output_fd, 2)
            libc.posix_spawn_file_actions_addclosefrom_np(actions, 3)
            if user is not None:
                libc.posix_spawn_file_actions_addchdir_np(actions, os.fsencode(user.workdir))
            pid = ctypes.c_int(0)
            # The groups are left alone when the same as the worker's (a uid per run has none).
            groups = None
            if switch_to is not None and switch_to.groups != self._worker_group_ids:
                groups = self._groups_of(switch_to)
            try:
                if switch_to is not None:
                    # Inside the try: a switch that fails half-way is set back too.
                    self._become(switch_to.uid, switch_to.gid, groups)
                err = libc.posix_spawn(ctypes.byref(pid), args[0], actions, self._attr, args, envp)
            finally:
                if switch_to is not None:
                    worker_groups = None if groups is None else self._worker_groups
                    self._become(self._worker_uid, self._worker_gid, worker_groups)
        finally:
            libc.posix_spawn_file_actions_destroy(actions)
        if err:
            # The failure may be the run's user entering its directory, as well as the exec.
            where = "" if user is None else f" (as uid {user.uid} in {user.workdir})"
            raise OSError(err, f"{os.strerror(err)}{where}", argv[0])
        return SpawnedProcess(pid.value)

    def _become(self, uid: int, gid: int, groups: ctypes.Array[ctypes.c_uint] | None) -> None:
        """This thread's real ids and groups (None: as they are); its effective uid stays
        root."""
        setgroups, setresuid, setresgid = self._calls
        syscall = self._syscall
        if (
            (groups is not None and syscall(setgroups, len(groups), groups) != 0)
            or syscall(setresgid, gid, _KEEP, _KEEP) != 0
            or syscall(setresuid, uid, _KEEP, _KEEP) != 0
        ):
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot take the run's identity: {os.strerror(errno)}")

    def _groups_of(self, user: JobUser) -> ctypes.Array[ctypes.c_uint]:
        known = self._group_arrays.get(user.groups)
        if known is None:
            known = self._group_arrays[user.groups] = _gid_array(user.groups)
        return known


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    p, i = ctypes.c_void_p, ctypes.c_int
    signatures: dict[str, list[type]] = {
        "posix_spawn": [p, ctypes.c_char_p, p, p, p, p],
        "posix_spawn_file_actions_init": [p],
        "posix_spawn_file_actions_destroy": [p],
        "posix_spawn_file_actions_addopen": [p, i, ctypes.c_char_p, i, ctypes.c_uint],
        "posix_spawn_file_actions_adddup2": [p, i, i],
        "posix_spawn_file_actions_addclosefrom_np": [p, i],
        "posix_spawn_file_actions_addchdir_np": [p, ctypes.c_char_p],
        "posix_spawnattr_init": [p],
        "posix_spawnattr_setflags": [p, ctypes.c_short],
        "posix_spawnattr_setsigdefault": [p, p],
        "posix_spawnattr_setsigmask": [p, p],
        "sigfillset": [p],
        "sigemptyset": [p],
    }
    for name, argtypes in signatures.items():
        function = getattr(libc, name)  # AttributeError: an older glibc
        function.argtypes = argtypes
        function.restype = i
    libc.syscall.restype = ctypes.c_long
    return libc


def _gid_array(gids: Sequence[int]) -> ctypes.Array[ctypes.c_uint]:
    return (ctypes.c_uint * len(gids))(*gids)


def _strings(items: Iterable[str]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated char* array."""
    encoded = [os.fsencode(item) for item in items]
    return (ctypes.c_char_p * (len(encoded) + 1))(*encoded, None)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(result, f"{what}: {os.strerror(result)}")


def _popen(
    argv: Sequence[str], env: Mapping[str, str], output_fd: int, user: JobUser | None
) -> Process:
    as_user = {} if user is None else user.spawn_options()
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        env=env,
        start_new_session=True,  # own session => own process group to signal as a whole
        restore_signals=True,
        **as_user,
    )
