"""``python -m tests.fault.campaign [--seed N] [--seconds S | --minutes M]``: one campaign,
its report on stdout; exit status 1 if the checker found anything."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.fault.campaign.run import run_campaign


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault.campaign")
    parser.add_argument("--seed", type=int, default=None, help="replay a campaign (default: new)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the logs and records")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    duration = args.seconds if args.seconds is not None else args.minutes * 60
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = Path(tempfile.mkdtemp(prefix="gdts-campaign-"))
    base.chmod(0o711)  # the runs' uids pass through to the records
    print(f"campaign seed {seed}, {duration:.0f} s, in {base}", flush=True)
    outcome = asyncio.run(run_campaign(seed, duration, base, base, jobs=args.jobs, progress=print))
    print(outcome.report(), flush=True)
    if not args.keep and outcome.verdict.clean:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if outcome.verdict.clean else 1


if __name__ == "__main__":
    sys.exit(main())
