"""What the manager makes of the workers' registrations (gdts.manager.registry): what
/worker/list shows of each, and how many live members a host group has. Pure: no I/O."""

from __future__ import annotations

import json

from gdts.manager.registry import LiveWorker, count_members, live_worker, membership
from gdts.routing import no_live_member, stored_labels


def registered(worker_id: str, **info: object) -> LiveWorker:
    return live_worker(worker_id, json.dumps({"id": worker_id, **info}).encode())


def test_a_worker_shows_its_labels_weight_and_load() -> None:
    worker = registered("w1", host="h", labels={"group": "db"}, weight=5, busy=2)
    assert worker.listed(["backup"]) == {
        "id": "w1", "host": "h", "labels": {"group": "db"}, "weight": 5, "busy": 2,
        "running": ["backup"],
    }  # fmt: skip


def test_an_older_workers_registration_shows_the_defaults_it_is_routed_by() -> None:
    older = registered("w0", host="h", pid=7, atCapacity=False)
    assert older.listed([]) == {
        "id": "w0", "host": "h", "pid": 7, "atCapacity": False,
        "labels": {}, "weight": 1, "busy": 0, "running": [],
    }  # fmt: skip
    # Damaged values read as routing reads them: not as they were written.
    odd = registered("w2", labels={"group": 5, "zone": "eu-1"}, weight=0, busy=-3)
    assert odd.listed([])["labels"] == {"zone": "eu-1"}
    assert (odd.listed([])["weight"], odd.listed([])["busy"]) == (1, 0)


def test_a_registration_that_is_not_a_json_object_still_lists_its_id() -> None:
    for value in (b"not json", b"[1, 2]", b"\xff"):
        assert live_worker("w3", value).listed([]) == {
            "id": "w3", "labels": {}, "weight": 1, "busy": 0, "running": [],
        }  # fmt: skip


def test_a_host_group_counts_its_members_that_are_not_leaving() -> None:
    workers = [
        registered("a", labels={"group": "db", "zone": "eu-1"}),
        registered("b", labels={"group": "db", "zone": "us-1"}),
        registered("c", labels={"group": "db"}, leaving=True),
        registered("d", labels={"group": "web"}),
        registered("e"),
    ]
    assert count_members((("group", "db"),), workers) == 2
    assert count_members((("group", "db"), ("zone", "eu-1")), workers) == 1
    assert count_members((("group", "gpu"),), workers) == 0
    assert count_members((("group", "db"),), []) == 0


def test_membership_changes_with_labels_and_leaving_but_not_with_load() -> None:
    before = membership([registered("a", labels={"group": "db"}, busy=0)])
    assert membership([registered("a", labels={"group": "db"}, busy=9)]) == before
    assert membership([registered("a", labels={"group": "web"})]) != before
    assert membership([registered("a", labels={"group": "db"}, leaving=True)]) != before
    assert membership([]) != before


def test_a_stored_host_group_reads_as_sorted_pairs_and_says_why_it_cannot_run() -> None:
    group = stored_labels({"zone": "eu-1", "group": "db"})
    assert group == (("group", "db"), ("zone", "eu-1"))
    assert stored_labels(None) == stored_labels("db") == ()
    assert no_live_member(group) == "no live worker in host group {group=db, zone=eu-1}"
