"""Which workers look after a bucket of jobs (see keys.bucket_of). Pure.

The live workers, in order of their ids, split the buckets into as many contiguous blocks, one
each: a worker owns its block and is the backup of the block before it (the last worker's block
is the first one's). The owner claims the bucket's ticks when they fall due; the backup steps in
``takeoverDelay`` later if no claim appeared (the owner is gone, cut off or late). Only these
two schedule the bucket's jobs and follow their running markers, so a run costs the same
however many workers there are; and since a worker's buckets are one or two runs of adjacent
keys, it follows them with one or two watches, each event in the batch etcd sends.

When a worker joins or leaves, the blocks move and every worker's buckets change: each reads
the running markers and tick claims again and catches up on its new buckets' recent ticks, so a
tick planned while its bucket changed hands is late, never lost (see Worker). It is an
optimisation only: at-most-once rests on the claim transaction in etcd, so two workers that
briefly disagree on the owner cost a request, never a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable

from gdts.keys import BUCKETS


def _block_start(index: int, count: int) -> int:
    return index * BUCKETS // count


class Partition:
    """The buckets as one worker sees them, for one set of live workers."""

    def __init__(self, worker_id: str, workers: Iterable[str]) -> None:
        self.worker_id = worker_id
        self._workers = sorted({*workers, worker_id})
        count = len(self._workers)
        self._owners: list[str] = []
        for index, worker in enumerate(self._workers):
            block = _block_start(index + 1, count) - _block_start(index, count)
            self._owners.extend([worker] * block)
        mine = self._workers.index(worker_id)
        own = range(_block_start(mine, count), _block_start(mine + 1, count))
        backed = range(_block_start(mine - 1, count), _block_start(mine, count))
        if count == 1:
            backed = range(0)
        elif mine == 0:  # the backup of the last block
            backed = range(_block_start(count - 1, count), BUCKETS)
        self.mine = frozenset((*own, *backed))  # the buckets this worker looks after

    def owner(self, bucket: int) -> str:
        return self._owners[bucket]

    def backup(self, bucket: int) -> str | None:
        """The worker after the owner (None when the owner is alone)."""
        if len(self._workers) == 1:
            return None
        index = self._workers.index(self._owners[bucket])
        return self._workers[(index + 1) % len(self._workers)]

    def owns(self, bucket: int) -> bool:
        return self._owners[bucket] == self.worker_id

    def handles(self, bucket: int) -> bool:
        return bucket in self.mine


def runs_of(buckets: Iterable[int]) -> list[tuple[int, int]]:
    """Buckets as runs of adjacent ones: [(first, after last), ...], in order."""
    runs: list[tuple[int, int]] = []
    for bucket in sorted(buckets):
        if runs and runs[-1][1] == bucket:
            runs[-1] = (runs[-1][0], bucket + 1)
        else:
            runs.append((bucket, bucket + 1))
    return runs
