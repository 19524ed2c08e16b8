"""A loop whose client library swallowed its cancellation still ends."""

from __future__ import annotations

import asyncio

import pytest

from gdts.cancellation import end_if_cancelling

pytestmark = pytest.mark.asyncio


async def _command_that_swallows_cancellation(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        return "answered"  # what the driver does when a reply was on its way
    return "ran"


async def _loop(answers: list[str], check: bool) -> None:
    for seconds in (3600, 0.01, 0.01):  # the first command is under way when cancelled
        answers.append(await _command_that_swallows_cancellation(seconds))
        if check:
            end_if_cancelling()


@pytest.mark.parametrize("check", [True, False])
async def test_a_loop_that_asks_ends_when_cancelled_mid_command(check: bool) -> None:
    answers: list[str] = []
    task = asyncio.create_task(_loop(answers, check))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    if check:
        assert task.cancelled() and answers == ["answered"]
    else:  # without asking, the cancellation is lost and the loop goes on
        assert not task.cancelled() and answers == ["answered", "ran", "ran"]
