from __future__ import annotations

from collections import Counter

from gdts.worker.owner import owner_of


def test_no_workers_no_owner() -> None:
    assert owner_of("job", []) is None


def test_owner_is_the_same_whatever_the_order_of_workers() -> None:
    workers = ["w1", "w2", "w3", "w4"]
    for i in range(200):
        assert owner_of(f"job-{i}", workers) == owner_of(f"job-{i}", sorted(workers, key=hash))


def test_jobs_spread_over_workers() -> None:
    workers = ["host-a:101", "host-a:102", "host-b:7"]
    counts = Counter(owner_of(f"job-{i}", workers) for i in range(3000))
    assert set(counts) == set(workers)
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_a_leaving_worker_moves_only_its_own_jobs() -> None:
    before = ["w1", "w2", "w3", "w4"]
    after = ["w1", "w2", "w4"]
    for i in range(1000):
        name = f"job-{i}"
        if owner_of(name, before) != "w3":
            assert owner_of(name, after) == owner_of(name, before)
        else:
            assert owner_of(name, after) in after


def test_owner_is_stable_across_processes() -> None:
    # blake2b, not hash(): every worker process must compute the same owner.
    assert owner_of("nightly-backup", ["w1", "w2", "w3"]) == owner_of(
        "nightly-backup", ["w3", "w2", "w1"]
    )
    assert owner_of("nightly-backup", ["w1", "w2", "w3"]) == "w1"
