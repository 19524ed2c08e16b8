"""Run slots (maxConcurrentRuns): taken before a claim, given back at the run's end, handed in
order to the ticks waiting, and the cap reached and left said once each."""

import asyncio

import pytest

from gdts.worker.capacity import RunSlots

pytestmark = pytest.mark.asyncio


async def test_a_full_worker_takes_no_slot_until_one_is_given_back() -> None:
    changes: list[bool] = []
    slots = RunSlots(2, on_change=lambda: changes.append(slots.full()))
    assert slots.try_take() and slots.try_take()
    assert slots.full() and not slots.try_take()
    assert not await slots.take(0)
    slots.give_back()
    assert not slots.full() and slots.in_use == 1
    assert changes == [True, False]


async def test_waiters_are_handed_slots_in_order() -> None:
    slots = RunSlots(1)
    assert slots.try_take()
    first = asyncio.ensure_future(slots.take(5))
    second = asyncio.ensure_future(slots.take(5))
    await asyncio.sleep(0)
    assert not slots.try_take()  # a waiter comes before a newcomer
    slots.give_back()
    assert await first is True
    assert not second.done()
    slots.give_back()
    assert await second is True
    assert slots.in_use == 1


async def test_a_wait_runs_out_and_a_cancelled_waiter_passes_its_slot_on() -> None:
    slots = RunSlots(1)
    assert slots.try_take()
    assert await slots.take(0.01) is False
    cancelled = asyncio.ensure_future(slots.take(5))
    after = asyncio.ensure_future(slots.take(5))
    await asyncio.sleep(0)
    slots.give_back()  # handed to the first waiter ...
    cancelled.cancel()  # ... which is cancelled before it runs: the slot goes to the next
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await after is True
    assert slots.in_use == 1


async def test_closing_ends_every_wait_and_every_later_take() -> None:
    slots = RunSlots(1)
    assert slots.try_take()
    waiting = asyncio.ensure_future(slots.take(5))
    await asyncio.sleep(0)
    slots.close()  # the worker is stopping
    assert await waiting is False
    slots.give_back()
    assert not slots.try_take() and await slots.take(1) is False
