"""The fault campaign's short, seeded form (the long one: bench/campaign.py): two minutes of
faults dealt at random to a whole cluster (3 etcd members, a MongoDB replica set of 3, 2
managers, 4 workers) under 50 jobs every second and API traffic, then the checker's verdict."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.campaign.plan import FAULT_LENGTHS, make_plan
from tests.fault.campaign.run import run_campaign
from tests.support import passable_dir

pytestmark = [pytest.mark.fault]

# A seed whose two minutes deal every kind of fault (checked below, so a change to the plan
# that loses one fails here rather than silently testing less).
SEED = 2033
SECONDS = 120


@pytest.fixture
def base() -> Iterator[Path]:
    with passable_dir("gdts-campaign-") as path:
        yield path


def test_the_seed_deals_every_kind_of_fault() -> None:
    kinds = {fault.kind for fault in make_plan(SEED, SECONDS).faults}
    assert kinds == set(FAULT_LENGTHS)


@pytest.mark.asyncio
@pytest.mark.timeout(600)
async def test_a_short_campaign_finds_nothing(base: Path, tmp_path: Path) -> None:
    outcome = await run_campaign(SEED, SECONDS, base, tmp_path)
    report = outcome.report()
    print(report)
    verdict = outcome.verdict
    assert verdict.ticks_checked > 2000 and verdict.runs_started > 2000, report
    assert not outcome.crashed, report
    assert verdict.clean, report
