"""A floor to read the job figures against: what one `bash -c 'echo ... >> file'` costs on this
machine when a plain Python process starts it, one at a time."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.analysis import distribution


async def spawn_baseline(workdir: Path, count: int = 100) -> dict[str, Any]:
    target = workdir / "calibration.txt"
    command = f'echo "calibration $EPOCHREALTIME" >> {target}'
    before = os.times()
    latencies: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "/bin/bash", "-c", command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # as GDTS starts its jobs
        )  # fmt: skip
        await proc.wait()
        latencies.append(time.perf_counter() - started)
    after = os.times()
    children = (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )
    return {
        "spawns": count,
        "wall_per_spawn_s": distribution(latencies),
        "child_cpu_per_1000_s": children / count * 1000,
        "parent_cpu_per_1000_s": ((after.user + after.system) - (before.user + before.system))
        / count
        * 1000,
    }
