"""A run's limits, pure: the job's field, the worker's defaults and ceilings, the shell line
that tells the kernel, and which limit a run's usage went over."""

import pytest

from gdts.errors import InvalidFieldError
from gdts.runlimits import (
    NO_LIMITS,
    RunLimits,
    Usage,
    effective,
    over,
    parse_limits,
    per_process_only,
    shell_line,
    tighter,
)


def test_the_field_takes_each_limit_as_a_positive_integer() -> None:
    limits = parse_limits({"memoryMB": 256, "processes": 10, "cpuSeconds": 60, "openFiles": 64})
    assert limits == RunLimits(memory_mb=256, processes=10, cpu_seconds=60, open_files=64)
    assert limits.to_api() == {"memoryMB": 256, "processes": 10, "cpuSeconds": 60,
                               "openFiles": 64}  # fmt: skip
    assert parse_limits({"memoryMB": None}) == NO_LIMITS
    assert not NO_LIMITS and parse_limits({"cpuSeconds": 1})


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ([], "limits", "must be an object"),
        ({"memory": 1}, "limits.memory", "unknown limit"),
        ({"memoryMB": 0}, "limits.memoryMB", "from 1 to"),
        ({"processes": True}, "limits.processes", "must be an integer"),
        ({"cpuSeconds": 1.5}, "limits.cpuSeconds", "must be an integer"),
        ({"openFiles": 3}, "limits.openFiles", "from 8 to"),
        ({"openFiles": 10**9}, "limits.openFiles", "to 1048576"),
    ],
)
def test_a_bad_limit_is_named(given: object, field: str, words: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        parse_limits(given)
    assert caught.value.field == field
    assert words in caught.value.problem


def test_a_run_gets_the_job_s_limit_else_the_default_never_above_the_ceiling() -> None:
    defaults = RunLimits(processes=512, open_files=1024)
    ceilings = RunLimits(memory_mb=2048, open_files=4096)
    asked = RunLimits(memory_mb=8192, open_files=100)
    assert effective(asked, defaults, ceilings) == RunLimits(
        memory_mb=2048, processes=512, cpu_seconds=None, open_files=100
    )
    # A job that asks nothing still gets the ceiling where there is no default.
    assert effective(NO_LIMITS, defaults, ceilings).memory_mb == 2048
    assert tighter(RunLimits(processes=5), RunLimits(processes=3, cpu_seconds=9)) == RunLimits(
        processes=3, cpu_seconds=9
    )


def test_the_shell_line_sets_hard_and_soft_one_above_a_watched_limit() -> None:
    limits = RunLimits(memory_mb=64, processes=5, cpu_seconds=10, open_files=16)
    assert shell_line(limits, watched=True) == "ulimit -H -S -n 17 -t 11 -u 6 || exit 125\n"
    # Unwatched (no uid per run), the process count is per user: not set; files and CPU are.
    unwatched = per_process_only(limits)
    assert unwatched == RunLimits(cpu_seconds=10, open_files=16)
    assert shell_line(unwatched, watched=False) == "ulimit -H -S -n 16 -t 10 || exit 125\n"
    assert shell_line(RunLimits(memory_mb=64), watched=True) == ""


@pytest.mark.parametrize(
    ("usage", "named"),
    [
        (Usage(rss_kb=65 * 1024), "over its memoryMB limit (64 MB): its processes held 65 MB"),
        (Usage(processes=6), "over its processes limit (5)"),
        (Usage(cpu_ticks=1001), "over its cpuSeconds limit (10 s): its processes used 10.0 s"),
        (Usage(most_open_files=17), "over its openFiles limit (16)"),
    ],
)
def test_the_limit_gone_over_is_named(usage: Usage, named: str) -> None:
    limits = RunLimits(memory_mb=64, processes=5, cpu_seconds=10, open_files=16)
    said = over(limits, usage, ticks_per_s=100)
    assert said is not None and said.startswith(named)


def test_at_a_limit_is_not_over_it() -> None:
    limits = RunLimits(memory_mb=64, processes=5, cpu_seconds=10, open_files=16)
    at = Usage(rss_kb=64 * 1024, processes=5, cpu_ticks=1000, most_open_files=16)
    assert over(limits, at, ticks_per_s=100) is None
    assert over(NO_LIMITS, Usage(rss_kb=10**9, processes=10**5), ticks_per_s=100) is None
