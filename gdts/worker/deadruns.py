"""Finding the runs a dead worker left: when its registration vanishes at revision R, the
running markers on its lease vanished at R too, so the markers read as of R - 1 on that lease
are its runs that never ended (see lostruns). One read per death, by the worker that speaks for
the dead, in a task of its own so the watch that heard of the death never waits on etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from gdts.errors import GdtsError
from gdts.etcd import ETCD_ERRORS, EtcdClient, read_prefix
from gdts.keys import KeyLayout, RunningKey
from gdts.worker.lostruns import LostRun, lost_with

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
# etcd compacts history older than about a minute (see localstack.etcdserver): past that, the
# revision before the death cannot be read any more.
_GIVE_UP_S = 60.0


class DeadRunFinder:
    def __init__(
        self,
        client: EtcdClient,
        keys: KeyLayout,
        on_lost: Callable[[LostRun], None],
        partial_output: Callable[[LostRun], Awaitable[str | None]] | None = None,
    ) -> None:
        """``partial_output(run)``: what the dead worker wrote of the run's output while it
        went on (None: it could not be read; no more are asked for this death)."""
        self._client = client
        self._keys = keys
        self._on_lost = on_lost
        self._partial_output = partial_output
        self._deaths: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue()
        self.reads = 0  # deaths looked into, for tests and diagnosis

    def worker_died(self, worker_id: str, lease: int, revision: int) -> None:
        """``worker_id``'s registration on ``lease`` was deleted at ``revision``."""
        if lease and revision > 1:
            self._deaths.put_nowait((worker_id, lease, revision))

    async def run(self) -> None:
        while True:
            worker_id, lease, revision = await self._deaths.get()
            readable = self._partial_output is not None
            for run in await self._markers_left(worker_id, lease, revision):
                if readable and self._partial_output is not None:
                    output = await self._partial_output(run)
                    readable = output is not None
                    run = dataclasses.replace(run, output=output or "")
                self._on_lost(run)

    async def _markers_left(self, worker_id: str, lease: int, revision: int) -> list[LostRun]:
        keys = self._keys
        give_up_at = time.monotonic() + _GIVE_UP_S
        backoff = _RETRY_MIN_S
        while True:
            try:
                kvs, _ = await read_prefix(self._client, keys.running_prefix, revision=revision - 1)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                    log.warning("cannot tell which runs of worker %s were lost: etcd "
                                "compacted revision %d", worker_id, revision - 1)  # fmt: skip
                    return []
                failure: BaseException = exc
            except (*ETCD_ERRORS, GdtsError) as exc:
                failure = exc
            if time.monotonic() + backoff > give_up_at:
                log.warning("cannot tell which runs of worker %s were lost: %s", worker_id,
                            failure)  # fmt: skip
                return []
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RETRY_MAX_S)
        self.reads += 1
        markers: list[tuple[RunningKey, int, bytes]] = []
        for kv in kvs:
            with contextlib.suppress(ValueError):
                markers.append((keys.running_parts(kv.key), kv.lease, kv.value))
        return lost_with(lease, markers)
