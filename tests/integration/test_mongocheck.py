"""The worker's MongoDB check ends when cancelled, wherever the cancellation lands: the driver
sometimes swallows one that arrives while a command is on its way (the command answers as if
nothing happened), and a check that went on would hold the worker's shutdown until it is
killed."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge

from gdts.clock import now_ms
from gdts.localstack import MongoProcess
from gdts.mongo import open_mongo
from gdts.worker.mongocheck import MongoCheck

pytestmark = pytest.mark.asyncio

# Cancelled 0, 20, 40 ... 2,400 us after it starts, on a connection already open (one cut
# halfway through its opening would be left to the garbage collector): across its command,
# where about one cancellation in twenty was swallowed.
TRIES = 120
STEP_S = 0.00002


async def test_a_cancelled_check_ends_wherever_the_cancellation_lands(
    mongo_server: MongoProcess,
) -> None:
    went_on = []
    for attempt in range(TRIES):
        client = open_mongo(mongo_server.uri, 3000)
        await client.admin.command("ping")
        gauge = Gauge("offset", "clock offset", registry=CollectorRegistry())
        check = asyncio.ensure_future(MongoCheck(client, now_ms, gauge, 1000).run())
        try:
            await asyncio.sleep(attempt * STEP_S)
            check.cancel()
            done, _ = await asyncio.wait([check], timeout=2)
            if not done:
                went_on.append(attempt)
        finally:
            check.cancel()
            await asyncio.wait([check], timeout=2)
            await client.close()
    late = [f"{attempt * STEP_S * 1e6:.0f} us" for attempt in went_on]
    assert went_on == [], f"cancelled this long after it started, it went on: {late}"
