"""A cancellation a client library swallowed is still a cancellation.

PyMongo's async client (and gRPC's, under etcd) may catch the CancelledError that lands in the
middle of a command and answer, or fail with an error of its own, as if nothing happened. A
loop that goes on after that would never end: its task's one cancellation is spent, and the
shutdown awaiting it waits for ever. Every loop that retries a store call asks this after the
call, so a task being cancelled ends there."""

from __future__ import annotations

import asyncio


def end_if_cancelling(cause: BaseException | None = None) -> None:
    """Raise CancelledError if the current task is being cancelled (``cause``: the error the
    library raised instead, kept as the cancellation's cause)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
