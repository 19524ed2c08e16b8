"""What starting a job costs the worker, by who the job runs as, with a small and a large worker
heap, side by side: the worker's own user, another user (``runAs``), a uid per run
(``runUidRange``), and, for comparison, subprocess with ``user=`` (the fork GDTS used before).

Each heap size is a Python process of its own holding that much touched memory, starting jobs
through GDTS's own Spawner. The modes take turns in short batches (so a busy moment of the
machine falls on all of them alike) and each figure is the median over the batches of the
mean per spawn. CPU is the spawning process's own (user + system, its children excluded);
latency is the start call (it returns once the child has exec'd). The whole run adds the
job's own CPU and the wait for it to exit (a `bash -c 'echo ... > /dev/null'`).

    sudo .venv/bin/python -m bench.spawncost            # needs root: it switches users
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from gdts.worker.runas import JobUser, lookup_user
from gdts.worker.spawn import Process, Spawner

MODES = ("own user", "runAs nobody", "uid per run", "fork (subprocess user=)")
_COMMAND = ["/bin/bash", "-c", 'echo "$EPOCHREALTIME" > /dev/null']
# HOME and SHELL as a worker's environment has them (without SHELL, bash looks its user up in
# the password database at every start; a uid per run is not there).
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "SHELL": "/bin/bash"}
_RUN_UIDS = range(62900, 62920)  # no account's (bench/stack.py's ranges start at 62000)


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _run_cpu() -> float:
    """Ours and our reaped children's (os.times() counts in 10 ms ticks)."""
    return _cpu() + _cpu(resource.RUSAGE_CHILDREN)


def _measure(rounds: int, batch: int) -> dict[str, dict[str, float]]:
    spawner, forking = Spawner(), Spawner(posix_spawn=False)
    nobody = lookup_user("nobody")
    run_users = [
        JobUser(name=f"run-{uid}", uid=uid, gid=uid, groups=(), home="/", workdir="/")
        for uid in _RUN_UIDS
    ]

    def start(mode: str, i: int, fd: int) -> Process:
        if mode == "own user":
            return spawner.start(_COMMAND, _ENV, fd, None)
        if mode == "runAs nobody":
            return spawner.start(_COMMAND, nobody.env(_ENV), fd, nobody)
        if mode == "uid per run":
            user = run_users[i % len(run_users)]
            return spawner.start(_COMMAND, user.env(_ENV), fd, user)
        return forking.start(_COMMAND, nobody.env(_ENV), fd, nobody)

    kinds = ("cpu", "latency", "run_cpu", "run_wall")
    samples: dict[str, dict[str, list[float]]] = {m: {k: [] for k in kinds} for m in MODES}
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(read_fd, False)
    try:
        for _ in range(rounds):
            for mode in MODES:
                cpu = latency = 0.0
                before_run, before_all = _run_cpu(), time.perf_counter()
                for i in range(batch):
                    before_cpu, before = _cpu(), time.perf_counter()
                    process = start(mode, i, write_fd)
                    latency += time.perf_counter() - before
                    cpu += _cpu() - before_cpu
                    process.wait()
                run_cpu, wall = _run_cpu() - before_run, time.perf_counter() - before_all
                figures = samples[mode]
                for kind, value in zip(kinds, (cpu, latency, run_cpu, wall), strict=True):
                    figures[kind].append(value / batch)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    return {
        mode: {k: statistics.median(v) * 1000 for k, v in figures.items()}
        for mode, figures in samples.items()
    }


def measure_heaps(
    heaps_mb: tuple[int, ...] = (0, 400), rounds: int = 40, batch: int = 20
) -> dict[str, Any]:
    """Each heap size in a process of its own; {heap MB: {mode: {"cpu": ms, "latency": ms}}}."""
    results: dict[str, Any] = {}
    for heap in heaps_mb:
        child = subprocess.run(
            [sys.executable, "-m", "bench.spawncost", "--child", *map(str, (heap, rounds, batch))],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[str(heap)] = json.loads(child.stdout.strip().splitlines()[-1])
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        "Job start cost by who the job runs as, ms per spawn (ratio: against the worker's own "
        "user). Start: the spawning process's CPU and the start call's wall time; whole run: "
        "its CPU and the job's, and the wall time until the job exited.",
        f"  {'worker heap':>12}  {'runs as':<24} {'start CPU':>14} {'start latency':>14} "
        f"{'run CPU':>14} {'run wall':>14}",
    ]
    for heap, modes in results.items():
        own = modes["own user"]
        for mode, figures in modes.items():
            cells = (
                f"{figures[k]:7.3f} {figures[k] / own[k]:5.2f}x"
                for k in ("cpu", "latency", "run_cpu", "run_wall")
            )
            lines.append(f"  {heap + ' MB extra':>12}  {mode:<24} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        heap_mb, rounds, batch = (int(a) for a in argv[1:4])
        ballast = bytearray(b"x") * (heap_mb << 20)  # touched: every page really mapped
        print(json.dumps(_measure(rounds, batch)))
        del ballast
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heaps", default="0,400", help="extra worker heap sizes, MB")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: the modes switch users")
    heaps = tuple(int(h) for h in args.heaps.split(","))
    results = measure_heaps(heaps, args.rounds, args.batch)
    print(report(results))
    print("BENCH_JSON " + json.dumps({"spawn_cost": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
