"""Where a routed job's ticks go (gdts.routing): each strategy as a pure function of the job,
the tick and the live eligible workers, with literal inputs."""

from __future__ import annotations

from collections import Counter

import pytest

from gdts.errors import InvalidFieldError
from gdts.job import Job
from gdts.routing import Candidate, eligible, parse_labels, rank, read_card
from gdts.worker.clusterview import ClusterView

SECOND = 1000
T0 = 1_800_000_000_000  # a whole second
THREE = [Candidate("w1"), Candidate("w2"), Candidate("w3")]


def firsts(routing: str, workers: list[Candidate], ticks: int, job: str = "j") -> Counter[str]:
    return Counter(rank(job, routing, T0 + i * SECOND, SECOND, workers)[0] for i in range(ticks))


def test_round_robin_visits_the_eligible_workers_in_turn() -> None:
    turns = [rank("j", "roundRobin", T0 + i * SECOND, SECOND, THREE)[0] for i in range(9)]
    assert turns[:3] == turns[3:6] == turns[6:9]
    assert sorted(turns[:3]) == ["w1", "w2", "w3"]
    # Whatever the order the watch listed them in, every worker takes the same turns.
    shuffled = [THREE[2], THREE[0], THREE[1]]
    assert turns == [rank("j", "roundRobin", T0 + i * SECOND, SECOND, shuffled)[0]
                     for i in range(9)]  # fmt: skip
    # A job ticking every 2 s on two workers still alternates (its turn counts its steps).
    two = THREE[:2]
    every_other = [rank("k", "roundRobin", T0 + i * 2 * SECOND, 2 * SECOND, two)[0]
                   for i in range(4)]  # fmt: skip
    assert every_other[0] != every_other[1] and every_other[:2] == every_other[2:]


def test_round_robin_backup_is_the_next_in_turn() -> None:
    order = rank("j", "roundRobin", T0, SECOND, THREE)
    following = rank("j", "roundRobin", T0 + SECOND, SECOND, THREE)
    assert order[1] == following[0]
    assert sorted(order) == ["w1", "w2", "w3"]


def test_weighted_shares_follow_the_weights_within_5_percent_over_10000_ticks() -> None:
    workers = [Candidate("a", weight=1), Candidate("b", weight=2), Candidate("c", weight=5)]
    shares = firsts("weighted", workers, 10_000)
    for worker in workers:
        expected = 10_000 * worker.weight / 8
        assert abs(shares[worker.worker_id] - expected) <= 0.05 * expected, shares


def test_random_is_uniform_within_5_percent_and_the_same_on_every_worker() -> None:
    shares = firsts("random", THREE, 10_000)
    for worker in THREE:
        assert abs(shares[worker.worker_id] - 10_000 / 3) <= 0.05 * 10_000 / 3, shares
    assert rank("j", "random", T0, SECOND, THREE) == rank("j", "random", T0, SECOND,
                                                          THREE[::-1])  # fmt: skip


def test_least_busy_picks_the_worker_with_the_fewest_runs_going_on() -> None:
    workers = [Candidate("w1", busy=7), Candidate("w2", busy=2), Candidate("w3", busy=4)]
    assert rank("j", "leastBusy", T0, SECOND, workers) == ["w2", "w3", "w1"]
    # Ties are broken by the tick, so equally busy workers share the ticks.
    idle = [Candidate("w1"), Candidate("w2"), Candidate("w3")]
    assert len(firsts("leastBusy", idle, 300)) == 3


def test_hash_keeps_one_order_per_job_and_spreads_jobs() -> None:
    assert len({tuple(rank("j", "hash", T0 + i * SECOND, SECOND, THREE)) for i in range(50)}) == 1
    owners = Counter(rank(f"job{i}", "hash", T0, SECOND, THREE)[0] for i in range(3000))
    assert all(900 <= count <= 1100 for count in owners.values()), owners


def test_workers_at_capacity_come_last_and_no_worker_means_no_order() -> None:
    workers = [Candidate("w1", full=True), Candidate("w2"), Candidate("w3")]
    for routing in ("hash", "random", "roundRobin", "weighted", "leastBusy"):
        for i in range(20):
            assert rank("j", routing, T0 + i * SECOND, SECOND, workers)[-1] == "w1"
    assert rank("j", "roundRobin", T0, SECOND, []) == []


def test_a_host_group_takes_the_workers_carrying_every_label_it_names_and_not_leaving() -> None:
    db_eu = Candidate("a", {"group": "db", "zone": "eu-1"})
    db_us = Candidate("b", {"group": "db", "zone": "us-1"})
    web = Candidate("c", {"group": "web", "zone": "eu-1"})
    going = Candidate("d", {"group": "db", "zone": "eu-1"}, leaving=True)
    workers = [db_eu, db_us, web, going]
    assert eligible((("group", "db"),), workers) == [db_eu, db_us]
    assert eligible((("group", "db"), ("zone", "eu-1")), workers) == [db_eu]
    assert eligible((("group", "gpu"),), workers) == []
    assert eligible((), workers) == [db_eu, db_us, web]


def test_labels_are_checked_and_each_bad_one_named() -> None:
    assert parse_labels("hostGroup", {"zone": "eu-1", "group": "db"}) == (
        ("group", "db"),
        ("zone", "eu-1"),
    )
    with pytest.raises(InvalidFieldError) as raised:
        parse_labels("hostGroup", "db")
    assert raised.value.field == "hostGroup"
    with pytest.raises(InvalidFieldError) as raised:
        parse_labels("hostGroup", {"bad key": "x"})
    assert raised.value.field == "hostGroup" and "'bad key'" in raised.value.problem
    with pytest.raises(InvalidFieldError) as raised:
        parse_labels("hostGroup", {"group": 5})
    assert raised.value.field == "hostGroup.group"
    with pytest.raises(InvalidFieldError) as raised:
        parse_labels("hostGroup", {"group": "-db"})
    assert raised.value.field == "hostGroup.group"
    with pytest.raises(InvalidFieldError):
        parse_labels("hostGroup", {f"k{i}": "v" for i in range(17)})


def test_a_registration_is_read_leniently_as_routing_needs_it() -> None:
    card = read_card("w1", {"labels": {"group": "db", "n": 5}, "weight": 3, "busy": 4,
                            "atCapacity": True})  # fmt: skip
    assert card == Candidate("w1", {"group": "db"}, 3, 4, full=True)
    # An older worker's registration, or a damaged one: no labels, weight 1.
    assert read_card("w2", {"atCapacity": False}) == Candidate("w2")
    assert read_card("w3", {"weight": 0, "busy": -1}) == Candidate("w3")
    assert read_card("w4", None) == Candidate("w4")
    assert read_card("w5", {"leaving": True}).leaving


def test_the_view_routes_by_the_jobs_step_and_its_live_members() -> None:
    view = ClusterView("w1", claim_memory_ms=20_000)
    view.workers_reset(
        {"w1": 1, "w2": 2, "w3": 3},
        {"w1": Candidate("w1", {"g": "a"}), "w2": Candidate("w2", {"g": "a"}),
         "w3": Candidate("w3", {"g": "b"})},
    )  # fmt: skip
    every_5s = Job.create("j", "true", "*/5 * * * * *").with_changes(
        hostGroup={"g": "a"}, routing="roundRobin"
    )
    turns = [view.route(every_5s, T0 + i * 5 * SECOND)[0] for i in range(4)]
    assert turns[0] != turns[1] and turns[:2] == turns[2:]
    assert set(turns) == {"w1", "w2"}
    view.worker_gone("w2", 2)
    assert view.route(every_5s, T0) == ["w1"]
    view.worker_gone("w1", 1)
    assert view.route(every_5s, T0) == []
