"""Reading CPU time, memory and state of processes from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of one process: its own (user+system) and that of its reaped children."""

    own: float
    children: float
    state: str


def cpu_sample(pid: int) -> CpuSample | None:
    """None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # Fields after the name, 0-based here: state=0, utime=11, stime=12, cutime=13, cstime=14.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return CpuSample(
        own=(utime + stime) / CLK_TCK, children=(cutime + cstime) / CLK_TCK, state=fields[0]
    )


def process_state(pid: int) -> str | None:
    """One-letter state (R, S, Z...), or None when /proc/<pid> is gone."""
    sample = cpu_sample(pid)
    return sample.state if sample is not None else None


@dataclass(frozen=True)
class MemSample:
    rss_mib: float
    hwm_mib: float  # peak RSS over the process's life


def mem_sample(pid: int) -> MemSample | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    values: dict[str, float] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return MemSample(rss_mib=values.get("VmRSS", 0.0), hwm_mib=values.get("VmHWM", 0.0))


@dataclass(frozen=True)
class SystemCpu:
    """Machine-wide jiffies from /proc/stat's first line."""

    busy: int
    total: int


def system_cpu() -> SystemCpu:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(x) for x in parts]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return SystemCpu(busy=total - idle, total=total)


def machine_facts() -> dict[str, object]:
    facts: dict[str, object] = {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)),
    }
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                facts["mem_total_gib"] = round(int(line.split()[1]) / 1024 / 1024, 2)
                break
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                facts["cpu_model"] = line.partition(":")[2].strip()
                break
    facts["kernel"] = os.uname().release
    return facts
