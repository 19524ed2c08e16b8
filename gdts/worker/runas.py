"""Which user jobs run as (``runAs``), decided once at start: a worker started as root never runs
jobs as root unless ``allowRoot`` says so."""

from __future__ import annotations

import ctypes
import dataclasses
import grp
import logging
import os
import pwd
from collections.abc import Mapping
from typing import Any

from gdts.errors import ConfigError

log = logging.getLogger(__name__)

_PR_SET_NO_NEW_PRIVS = 38
_ROOT_HINT = "(or allowRoot: true if running jobs as root is intended)"


@dataclasses.dataclass(frozen=True)
class JobUser:
    """A user from the password database, and how a job process becomes it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, as initgroups() would set them
    home: str
    workdir: str  # the home if it is a directory, else "/"
    # False when the worker already is this user: a non-root process may not call setgroups(),
    # even to set the groups it already has.
    switch: bool = True

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with the variables that tell a program who it runs as replaced."""
        return {**base, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def spawn_options(self) -> dict[str, Any]:
        """Keyword arguments for subprocess.Popen."""
        options: dict[str, Any] = {"cwd": self.workdir}
        if self.switch:
            # Always the full group list: with none, the job would keep the worker's own
            # supplementary groups (root's, when the worker runs as root).
            options.update(user=self.uid, group=self.gid, extra_groups=list(self.groups))
        return options


def lookup_user(name: str) -> JobUser:
    """The user named ``name``; ConfigError naming ``runAs`` if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        raise ConfigError("runAs", f"no such user {name!r} on this host") from None
    try:
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError as exc:
        raise ConfigError("runAs", f"cannot list the groups of {name!r}: {exc}") from None
    return JobUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(dict.fromkeys(groups)),  # the order getgrouplist gave, without repeats
        home=entry.pw_dir,
        workdir=workdir_for(entry.pw_dir),
    )


def workdir_for(home: str) -> str:
    """Where a job starts: the user's home if it is a directory (nobody's, /nonexistent, is
    not), else the root directory."""
    return home if home and os.path.isdir(home) else "/"


def job_user(run_as: str, allow_root: bool, euid: int) -> JobUser | None:
    """The user jobs run as, for a worker whose effective uid is ``euid``; None: the worker's
    own. Raises ConfigError when the worker must not start: root with neither runAs nor
    allowRoot, runAs naming root without allowRoot, or a non-root worker asked to become
    somebody else (it has no right to)."""
    if not run_as:
        if euid != 0:
            return None
        if not allow_root:
            raise ConfigError(
                "runAs",
                "this worker runs as root and would run every job as root: set runAs to the "
                f"user jobs should run as {_ROOT_HINT}",
            )
        log.warning("jobs run as root: allowRoot is true and runAs is not set")
        return None
    user = lookup_user(run_as)
    if user.uid == euid:
        user = dataclasses.replace(user, switch=False)
    elif euid != 0:
        raise ConfigError(
            "runAs",
            f"this worker runs as uid {euid} and cannot start jobs as {run_as!r} "
            f"(uid {user.uid}): start the worker as root, or set runAs to its own user or "
            "leave it empty",
        )
    if user.uid != 0:
        log.info("jobs run as %s (uid %d, gid %d)", user.name, user.uid, user.gid)
    elif allow_root:
        log.warning("jobs run as root: runAs names %r and allowRoot is true", run_as)
    else:
        raise ConfigError(
            "runAs", f"{run_as!r} is root (uid 0): set runAs to an unprivileged user {_ROOT_HINT}"
        )
    return user


def check_run_uids(first: int, last: int, euid: int) -> None:
    """``runUidRange`` needs root (to become each uid) and uids and gids no account or group
    has: a run must never share its uid with anything else on the host."""
    if euid != 0:
        raise ConfigError(
            "runUidRange", f"needs a worker started as root (this one runs as uid {euid})"
        )
    for entry in pwd.getpwall():
        if first <= entry.pw_uid <= last:
            raise ConfigError(
                "runUidRange",
                f"uid {entry.pw_uid} belongs to the account {entry.pw_name!r}: give a range "
                "no account uses",
            )
    for group in grp.getgrall():
        if first <= group.gr_gid <= last:
            raise ConfigError(
                "runUidRange",
                f"gid {group.gr_gid} belongs to the group {group.gr_name!r}: give a range no "
                "group uses (each run's gid is its uid)",
            )


def no_new_privileges() -> None:
    """From now on no process of this worker gains privileges by exec (a setuid binary, file
    capabilities): a job cannot leave its uid. The worker itself keeps what it has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(errno)}")
