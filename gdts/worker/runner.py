"""What every kind of run (a command, an HTTP request) offers the worker while it goes on."""

from __future__ import annotations

from typing import Protocol

from gdts.worker.outputcap import OutputCap


class Runner(Protocol):
    """One run in progress. ``kill()`` may be called from anywhere, any number of times, before
    the run starts, while it goes on, or after it ended (then it does nothing); ``now`` gives
    it no grace period."""

    kill_requested: bool
    # What it printed so far (None before it starts): the live output flusher reads it.
    capture: OutputCap | None

    def kill(self, now: bool = False) -> None: ...
