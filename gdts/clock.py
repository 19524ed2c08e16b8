"""The wall clock in epoch milliseconds: the unit of planned times, run records and the wire.

Everything that reads the time for those calls ``now_ms``; pure code takes "now" as an argument.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
