"""The long fault campaign: ``make campaign`` (30 minutes; ``ARGS="--minutes 60 --seed N"``).

The campaign itself lives with the tests (tests/fault/campaign), whose suite runs a two-minute
seeded form of it; this is the same tool run long, printing the faults dealt by kind, the
checker's counts and the seed to replay."""

from __future__ import annotations

import sys

from tests.fault.campaign.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
