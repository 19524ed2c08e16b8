"""How many runs this worker takes at once (``maxConcurrentRuns``). A slot is held from the
claim's first attempt to the run's end: a worker at its cap does not claim, so a claimed tick
always has a slot to run in. Waiters are served in order, oldest tick first."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class RunSlots:
    def __init__(self, cap: int, on_change: Callable[[], None] = lambda: None) -> None:
        """``on_change``: called when the worker reaches its cap or leaves it."""
        self.cap = cap
        self.in_use = 0
        self._on_change = on_change
        # Each waiter's future ends True when handed a slot, False when the slots close.
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._closed = False

    def full(self) -> bool:
        return self.in_use >= self.cap

    def try_take(self) -> bool:
        if self._closed or self.full() or self._waiters:
            return False
        self._take()
        return True

    async def take(self, timeout_s: float) -> bool:
        """A slot, waiting up to ``timeout_s`` for one to come free; False if none did, or the
        slots closed (the worker is stopping) meanwhile."""
        if self.try_take():
            return True
        if timeout_s <= 0 or self._closed:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # wait(), not wait_for(): a cancellation that comes with the slot must not be lost.
            await asyncio.wait({waiter}, timeout=timeout_s)
        except asyncio.CancelledError:
            if waiter.done() and waiter.result():
                self.give_back()  # handed to us as we were cancelled: pass it on
            self._forget(waiter)
            raise
        if waiter.done():  # handed a slot (see give_back), perhaps just as the wait ran out
            return waiter.result()
        self._forget(waiter)
        return False

    def close(self) -> None:
        """The worker is stopping: nobody waiting gets a slot, nobody takes a new one."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes straight to the oldest waiter
                return
        was_full = self.full()
        self.in_use -= 1
        if was_full:
            self._on_change()

    def _take(self) -> None:
        self.in_use += 1
        if self.full():
            self._on_change()
