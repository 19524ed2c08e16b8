"""The manager's chain links (gdts.manager.chainlinks), the pure part: what a job's links index
needs when its links change, what a refused delete says, and which chains a user may save."""

from __future__ import annotations

import pytest

from gdts.chains import NO_LINKS, Links
from gdts.errors import ConflictError, InvalidFieldError
from gdts.manager.accounts import Principal
from gdts.manager.auth import JobGuard
from gdts.manager.chainlinks import (
    StoredJob,
    delete_refusal,
    foreign_step,
    link_changes,
    links_of_view,
    stored_jobs,
)

ALICE = JobGuard(Principal("alice", "user", "token", account_id="a1", teams={"default": "user"}))
ADMIN = JobGuard(Principal("root", "admin", "token"))


def test_a_new_chain_job_writes_a_link_to_each_job_it_names() -> None:
    links = Links(parents=("a", "b"), children=("c",), children_mode="parallel")
    assert link_changes(NO_LINKS, links) == ({"a": "parents", "b": "parents", "c": "children"}, [])


def test_a_changed_job_writes_only_what_changed_and_removes_what_it_no_longer_names() -> None:
    old = Links(parents=("a", "b"), children=("c",))
    new = Links(parents=("b", "c"), parents_mode="parallel", children=("d",))
    # b unchanged; c moved from children to parents; d new; a gone. A mode is not a link.
    assert link_changes(old, new) == ({"c": "parents", "d": "children"}, ["a"])
    assert link_changes(old, NO_LINKS) == ({}, ["a", "b", "c"])
    assert link_changes(old, old) == ({}, [])


def test_a_refused_delete_names_every_job_that_names_it_and_says_what_to_do() -> None:
    refusal = delete_refusal("db", {"report": "parents", "etl": "parents", "boot": "children"})
    assert isinstance(refusal, ConflictError) and refusal.field == "name"
    assert str(refusal) == (
        "name: job 'db' is in the parents of 'etl', 'report' and the children of 'boot': a "
        "chain would be left naming a job that does not exist; remove 'db' from their lists "
        "first"
    )


def test_a_stored_jobs_links_read_back_from_its_view() -> None:
    view = {"parents": ["a"], "parentsMode": "parallel", "children": None,
            "childrenMode": "serial", "owner": "alice"}  # fmt: skip
    assert links_of_view(view) == Links(parents=("a",), parents_mode="parallel")
    unreadable = InvalidFieldError("job", "stored value is not JSON")
    assert stored_jobs(["x", "bad"], [view, unreadable]) == {
        "x": StoredJob("alice", Links(parents=("a",), parents_mode="parallel"))
    }
    # Links no save would have let through: the job is left out, as no chain could run it.
    assert stored_jobs(["y"], [{**view, "parents": "a"}]) == {}


def test_a_user_chains_only_their_own_jobs_however_far_the_chain_reaches() -> None:
    jobs = {
        "mine": StoredJob("alice", Links(), "a1"),
        "also-mine": StoredJob("alice", Links(children=("bobs",)), "a1"),
        "bobs": StoredJob("bob", Links(), "b1"),
        "nobodys": StoredJob("", Links()),
    }
    assert foreign_step("new", Links(parents=("mine",)), NO_LINKS, jobs, ALICE) is None
    # A child of a child: the chain run would run it as well.
    refusal = foreign_step("new", Links(children=("also-mine",)), NO_LINKS, jobs, ALICE)
    assert refusal is not None and str(refusal) == (
        "children: its chain run would run job 'bobs', which belongs to 'bob'; a user may chain "
        "only their own jobs, as they may run only their own"
    )
    refusal = foreign_step("new", Links(parents=("nobodys",)), NO_LINKS, jobs, ALICE)
    assert refusal is not None and str(refusal).startswith(
        "parents: its chain run would run job 'nobodys', which has no owner;"
    )
    assert foreign_step("new", Links(children=("also-mine",)), NO_LINKS, jobs, ADMIN) is None


@pytest.mark.parametrize("side", ["parents", "children"])
def test_the_refusal_names_the_side_of_the_chain_the_job_is_on(side: str) -> None:
    jobs = {"bobs": StoredJob("bob", Links())}
    refusal = foreign_step("new", Links(**{side: ("bobs",)}), NO_LINKS, jobs, ALICE)
    assert refusal is not None and str(refusal).startswith(f"{side}: ")


def test_what_an_admin_chained_may_stay_when_its_user_changes_the_job() -> None:
    jobs = {"mine": StoredJob("alice", Links()), "bobs": StoredJob("bob", Links())}
    chained = Links(parents=("mine",), children=("bobs",))
    assert foreign_step("job", Links(children=("bobs",)), chained, jobs, ALICE) is None
    assert foreign_step("job", chained, chained, jobs, ALICE) is None
    moved = foreign_step("job", Links(parents=("mine", "bobs")), chained, jobs, ALICE)
    assert moved is None  # the same job, on the other side: still nothing new is run
