"""A run's limits (a job's ``limits``, a worker's defaults and ceilings): what they are, which
apply to a run, how the kernel is told, and which one a run went over. Pure.

Each limit is enforced twice where the worker gives runs a uid of their own (runUidRange): the
kernel refuses one step past the limit (rlimits set by the run's shell before the command), and
the worker's watch (see gdts.worker.limitwatch) kills the run when its processes together are
over it, so the run ends with status ``limit`` naming the limit. Without a uid per run the
kernel's per-process part is all there is: see ``per_process_only``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from gdts.errors import InvalidFieldError

# What a job or a worker may ask for at most: past these a number is a typo.
MAX_MEMORY_MB = 1024 * 1024
MAX_PROCESSES = 100_000
MAX_CPU_SECONDS = 7 * 24 * 3600
MAX_OPEN_FILES = 1024 * 1024


@dataclass(frozen=True)
class RunLimits:
    """None: no limit of that kind."""

    memory_mb: int | None = None  # resident memory of all the run's processes together
    processes: int | None = None  # processes (and threads) of the run at once
    cpu_seconds: int | None = None  # CPU time of all the run's processes together
    open_files: int | None = None  # open files of any one process

    def to_api(self) -> dict[str, int]:
        return {key: getattr(self, name) for key, name in _KEYS.items()
                if getattr(self, name) is not None}  # fmt: skip

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


NO_LIMITS = RunLimits()

# API key -> attribute, and the largest value each may take.
_KEYS = {
    "memoryMB": "memory_mb",
    "processes": "processes",
    "cpuSeconds": "cpu_seconds",
    "openFiles": "open_files",
}
_MAXIMA = {
    "memory_mb": MAX_MEMORY_MB,
    "processes": MAX_PROCESSES,
    "cpu_seconds": MAX_CPU_SECONDS,
    "open_files": MAX_OPEN_FILES,
}
# The smallest that lets a shell start at all (bash itself needs a few files and processes).
_MINIMA = {"memory_mb": 1, "processes": 1, "cpu_seconds": 1, "open_files": 8}
API_KEYS = tuple(_KEYS)


def parse_limits(value: object, field_name: str = "limits") -> RunLimits:
    """A job's ``limits`` object: any of memoryMB, processes, cpuSeconds, openFiles, each a
    positive integer (null: the worker's default)."""
    if not isinstance(value, dict):
        raise InvalidFieldError(field_name, f"must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise InvalidFieldError(
            f"{field_name}.{unknown[0]}", f"unknown limit (known: {', '.join(_KEYS)})"
        )
    checked: dict[str, Any] = {}
    for key, name in _KEYS.items():
        given = value.get(key)
        if given is None:
            continue
        low, high = _MINIMA[name], _MAXIMA[name]
        if isinstance(given, bool) or not isinstance(given, int) or not low <= given <= high:
            raise InvalidFieldError(
                f"{field_name}.{key}", f"must be an integer from {low} to {high}, got {given!r}"
            )
        checked[name] = given
    return RunLimits(**checked)


def effective(asked: RunLimits, defaults: RunLimits, ceilings: RunLimits) -> RunLimits:
    """What applies to a run: what the job asked for, else the worker's default, never above the
    worker's ceiling."""
    applied: dict[str, int | None] = {}
    for name in _KEYS.values():
        wanted = getattr(asked, name)
        if wanted is None:
            wanted = getattr(defaults, name)
        ceiling = getattr(ceilings, name)
        if ceiling is not None:
            wanted = ceiling if wanted is None else min(wanted, ceiling)
        applied[name] = wanted
    return RunLimits(**applied)


def tighter(first: RunLimits, second: RunLimits) -> RunLimits:
    """Each limit the lower of the two (None: no limit)."""
    values = {}
    for name in _KEYS.values():
        a, b = getattr(first, name), getattr(second, name)
        values[name] = b if a is None else a if b is None else min(a, b)
    return RunLimits(**values)


def per_process_only(limits: RunLimits) -> RunLimits:
    """The part the kernel enforces for any user: files and CPU time per process. (Process counts
    are per user, and a shared user's count mixes every run; memory needs the watch.)"""
    return replace(limits, memory_mb=None, processes=None)


def shell_line(limits: RunLimits, *, watched: bool) -> str:
    """The line the run's shell runs before the command: hard and soft rlimits (a job cannot
    raise them back). Watched runs get one more of each than the limit, so the kernel refuses
    only what the watch will already have killed the run for; the run then ends naming it.
    "" when nothing is set."""
    extra = 1 if watched else 0
    options = []
    if limits.open_files is not None:
        options.append(f"-n {limits.open_files + extra}")
    if limits.cpu_seconds is not None:
        options.append(f"-t {limits.cpu_seconds + extra}")
    if limits.processes is not None and watched:
        options.append(f"-u {limits.processes + extra}")
    if not options:
        return ""
    # A limit the shell could not set must not run the command without it.
    return f"ulimit -H -S {' '.join(options)} || exit 125\n"


@dataclass(frozen=True)
class Usage:
    """What a run's processes hold together at one look."""

    rss_kb: int = 0
    processes: int = 0  # threads included: the kernel counts them against ``processes``
    cpu_ticks: int = 0  # user + system, the processes' own and their reaped children's
    most_open_files: int = 0  # the most any one process has open


def over(limits: RunLimits, usage: Usage, ticks_per_s: int) -> str | None:
    """The limit the run went over, said for its record; None when within all of them."""
    if limits.memory_mb is not None and usage.rss_kb > limits.memory_mb * 1024:
        return (f"over its memoryMB limit ({limits.memory_mb} MB): its processes held "
                f"{usage.rss_kb // 1024} MB")  # fmt: skip
    if limits.processes is not None and usage.processes > limits.processes:
        return (f"over its processes limit ({limits.processes}): it had {usage.processes} "
                "processes and threads at once")  # fmt: skip
    if limits.cpu_seconds is not None and usage.cpu_ticks > limits.cpu_seconds * ticks_per_s:
        return (f"over its cpuSeconds limit ({limits.cpu_seconds} s): its processes used "
                f"{usage.cpu_ticks / ticks_per_s:.1f} s of CPU")  # fmt: skip
    if limits.open_files is not None and usage.most_open_files > limits.open_files:
        return (f"over its openFiles limit ({limits.open_files}): a process had "
                f"{usage.most_open_files} files open")  # fmt: skip
    return None
