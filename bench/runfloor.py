"""The floor of a run's cost in the worker's own Python: a job started, watched and reaped
through the worker's own ``RunningCommand`` and ``Spawner`` on uvloop (posix_spawn, a pidfd for
its exit, its output through a pipe), with nothing else: no timer, no claim, no record, no etcd,
no MongoDB. What it prints is the least GDTS's Python can spend per run however the rest of the
run path is trimmed (issue 17's target 3).

    .venv/bin/python -m bench.runfloor [--runs 3000] [--parallel 20]

CPU is this process's own (user + system; the jobs' are their own), per run, measured after a
warm-up; the last line is ``BENCH_JSON {"run_floor": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

import uvloop

from gdts.worker.executor import RunningCommand
from gdts.worker.spawn import Spawner

_OUTPUT_LIMIT = 1024 * 1024


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _measure(runs: int, parallel: int, records: Path) -> dict[str, float]:
    spawner = Spawner()
    env = {"PATH": "/usr/bin:/bin", "GDTS_JOB_NAME": "floor", "GDTS_PLAN_TIME": "0",
           "GDTS_WORKER_ID": "bench"}  # fmt: skip
    # The benchmark's own job: one line appended per run.
    command = f'echo "$GDTS_JOB_NAME $GDTS_PLAN_TIME $EPOCHREALTIME" >> {records}'
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            await RunningCommand(5.0, spawner=spawner).run("/bin/bash", command, env,
                                                          _OUTPUT_LIMIT)  # fmt: skip

    await asyncio.gather(*(one() for _ in range(min(200, runs))))  # warm-up
    user0, sys0 = _cpu()
    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(runs)))
    wall = time.monotonic() - began
    user1, sys1 = _cpu()
    return {
        "runs": runs,
        "parallel": parallel,
        "cpu_ms_per_run": (user1 - user0 + sys1 - sys0) / runs * 1000,
        "user_ms_per_run": (user1 - user0) / runs * 1000,
        "system_ms_per_run": (sys1 - sys0) / runs * 1000,
        "wall_ms_per_run": wall / runs * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runfloor")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--parallel", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdts-runfloor-") as tmp:
        result = uvloop.run(_measure(args.runs, args.parallel, Path(tmp) / "records"))
    print(f"{result['runs']} runs, {result['parallel']} at a time: "
          f"{result['cpu_ms_per_run']:.3f} CPU-ms per run in this process "
          f"(user {result['user_ms_per_run']:.3f}, system {result['system_ms_per_run']:.3f}), "
          f"{result['wall_ms_per_run']:.2f} ms wall per run")  # fmt: skip
    print("BENCH_JSON " + json.dumps({"run_floor": result}))


if __name__ == "__main__":
    main()
