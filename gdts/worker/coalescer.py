"""Requests made at the same moment travel to etcd together.

At hundreds of runs a second, one gRPC call per claim and per release cost the worker and etcd
more CPU than the rest of a run. A coalescer collects what callers submit while the event loop is
busy and sends it as one round of batches. It holds nothing back: a lone request goes out on the
next loop iteration, so batches only grow when load does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class Coalescer(Generic[Request, Result]):
    """``await submit(request)`` returns what ``send`` answered for it. ``send`` gets up to
    ``max_batch`` requests with distinct ``key``s and returns one result per request, in order;
    if it raises, every request of that batch raises the same. Requests with a key already in
    a batch wait for the next round."""

    def __init__(
        self,
        send: Callable[[list[Request]], Awaitable[list[Result]]],
        *,
        max_batch: int,
        key: Callable[[Request], Hashable],
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._key = key
        self._pending: deque[tuple[Request, asyncio.Future[Result]]] = deque()
        # Runs while there is something to send and ends by itself; close() stops it early.
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # sent, for tests and metrics

    async def submit(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((request, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            try:
                await flusher
            except asyncio.CancelledError:
                pass
        while self._pending:
            self._pending.popleft()[1].cancel()

    async def _flush(self) -> None:
        try:
            while self._pending:
                await asyncio.gather(*(self._send_batch(batch) for batch in self._take_round()))
        finally:
            self._flusher = None

    def _take_round(self) -> list[list[tuple[Request, asyncio.Future[Result]]]]:
        taken: list[tuple[Request, asyncio.Future[Result]]] = []
        deferred: deque[tuple[Request, asyncio.Future[Result]]] = deque()
        keys: set[Hashable] = set()
        while self._pending:
            request, future = entry = self._pending.popleft()
            if future.done():  # its caller gave up (timeout, cancellation) before it was sent
                continue
            key = self._key(request)
            if key in keys:
                deferred.append(entry)
                continue
            keys.add(key)
            taken.append(entry)
        self._pending = deferred
        size = self._max_batch
        return [taken[i : i + size] for i in range(0, len(taken), size)]

    async def _send_batch(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        self.batches += 1
        try:
            results = await self._send([request for request, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
