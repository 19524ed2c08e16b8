"""gdts.worker.partition: each bucket's owner and backup among the live workers."""

from __future__ import annotations

from collections import Counter

import pytest

from gdts.keys import BUCKETS
from gdts.worker.partition import Partition, runs_of

ALL = frozenset(range(BUCKETS))


def test_one_worker_alone_owns_every_bucket_and_has_no_backup() -> None:
    alone = Partition("w1", [])
    assert alone.mine == ALL
    assert all(alone.owns(bucket) for bucket in range(BUCKETS))
    assert alone.backup(0) is None


def test_every_worker_agrees_whatever_the_order_it_lists_the_workers_in() -> None:
    workers = ["w3", "w1", "w4", "w2"]
    views = {w: Partition(w, sorted(workers, key=hash)) for w in workers}
    for bucket in range(BUCKETS):
        owners = {view.owner(bucket) for view in views.values()}
        backups = {view.backup(bucket) for view in views.values()}
        assert len(owners) == 1 and len(backups) == 1
        owner, backup = owners.pop(), backups.pop()
        assert owner != backup
        assert views[owner].owns(bucket)
        assert sorted(w for w, view in views.items() if view.handles(bucket)) == sorted(
            [owner, backup]
        )


def test_blocks_are_even_and_each_bucket_has_two_handlers() -> None:
    workers = [f"host-{n}:{100 + n}" for n in range(10)]
    views = [Partition(w, workers) for w in workers]
    owned = Counter(views[0].owner(bucket) for bucket in range(BUCKETS))
    assert sorted(owned.values()) == [25] * 4 + [26] * 6  # 256 over 10
    assert sum(len(view.mine) for view in views) == 2 * BUCKETS
    assert all(50 <= len(view.mine) <= 52 for view in views)


def test_the_first_worker_is_the_backup_of_the_last_block() -> None:
    first, middle, last = (Partition(w, ["a", "b", "c"]) for w in ("a", "b", "c"))
    assert first.owner(0) == "a" and first.backup(0) == "b"
    assert first.owner(BUCKETS - 1) == "c" and first.backup(BUCKETS - 1) == "a"
    assert first.mine == frozenset(range(0, 85)) | frozenset(range(170, BUCKETS))
    assert middle.mine == frozenset(range(0, 170))
    assert last.mine == frozenset(range(85, BUCKETS))


def test_two_workers_each_own_half_and_back_up_the_other_half() -> None:
    a, b = Partition("a", ["b"]), Partition("b", ["a"])
    assert a.mine == b.mine == ALL
    assert a.owns(0) and b.owns(BUCKETS - 1) and a.backup(BUCKETS - 1) == "a"


def test_a_worker_s_buckets_are_one_or_two_runs_of_adjacent_keys() -> None:
    workers = [f"w{n}" for n in range(7)]
    for worker in workers:
        assert len(runs_of(Partition(worker, workers).mine)) <= 2


def test_runs_of_merges_adjacent_buckets() -> None:
    assert runs_of([]) == []
    assert runs_of([5, 1, 2, 3, 9]) == [(1, 4), (5, 6), (9, 10)]
    assert runs_of(ALL) == [(0, BUCKETS)]


def test_when_a_worker_leaves_its_block_is_shared_by_those_left() -> None:
    before = Partition("w1", ["w1", "w2", "w3", "w4"])
    after = Partition("w1", ["w1", "w2", "w4"])
    assert {after.owner(bucket) for bucket in range(BUCKETS)} == {"w1", "w2", "w4"}
    assert "w3" in {before.owner(bucket) for bucket in range(BUCKETS)}


@pytest.mark.parametrize("count", range(1, 40))
def test_each_worker_owns_exactly_its_block_and_backs_up_exactly_the_one_before(count: int) -> None:
    workers = [f"w{n:02d}" for n in range(count)]
    views = {w: Partition(w, workers) for w in workers}
    for bucket in range(BUCKETS):
        owner = views[workers[0]].owner(bucket)
        handlers = {w for w, view in views.items() if view.handles(bucket)}
        backup = views[owner].backup(bucket)
        assert handlers == {owner} | ({backup} if backup else set()), bucket
        assert [w for w, view in views.items() if view.owns(bucket)] == [owner]
