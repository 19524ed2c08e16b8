"""What a claim that found a newer version of its job does next (claimflow.current_tick), and
the tick table handing out the version last put. Pure, with literal times."""

from __future__ import annotations

import dataclasses

from gdts.job import Job
from gdts.worker.claimflow import current_tick
from gdts.worker.lock import StoredJob
from gdts.worker.ticktable import DueTick, TickTable

PLAN = 1_800_000_000_000  # a whole second
GEN = 40
NO_LABELS: dict[str, str] = {}


def stored(job: Job, revision: int, generation: int = GEN) -> StoredJob:
    return StoredJob(job.to_record(), revision, generation)


def tick(job: Job, **fields: object) -> DueTick:
    return DueTick(dataclasses.replace(job, revision=41, generation=GEN), PLAN, **fields)


EVERY_SECOND = Job.create("j", "echo old", "* * * * * *")


def test_an_edit_that_still_plans_the_tick_runs_it_as_edited() -> None:
    edited = Job.create("j", "echo new", "*/2 * * * * *")  # PLAN is an even second
    again = current_tick(tick(EVERY_SECOND), stored(edited, 50), NO_LABELS)
    assert again is not None
    assert (again.job.command, again.job.revision, again.job.generation) == ("echo new", 50, GEN)
    assert again.plan_ms == PLAN


def test_a_disabled_job_or_one_no_longer_planned_then_is_not_run() -> None:
    disabled = EVERY_SECOND.with_changes(enabled=False)
    assert current_tick(tick(EVERY_SECOND), stored(disabled, 50), NO_LABELS) is None
    odd_seconds = Job.create("j", "echo old", "1/2 * * * * *")
    assert current_tick(tick(EVERY_SECOND), stored(odd_seconds, 50), NO_LABELS) is None


def test_a_deleted_job_or_a_new_job_of_the_same_name_is_not_run() -> None:
    assert current_tick(tick(EVERY_SECOND), None, NO_LABELS) is None
    reborn = stored(EVERY_SECOND, 60, generation=GEN + 19)
    assert current_tick(tick(EVERY_SECOND), reborn, NO_LABELS) is None


def test_a_run_asked_for_runs_on_the_current_version_even_disabled() -> None:
    disabled = EVERY_SECOND.with_changes(enabled=False, command="echo new")
    asked = tick(EVERY_SECOND, run_request=b"/gdts/run/j/1800000000001")
    again = current_tick(asked, stored(disabled, 50), NO_LABELS)
    assert again is not None and again.job.command == "echo new"
    assert again.run_request == asked.run_request


def test_an_unreadable_record_is_not_run() -> None:
    assert current_tick(tick(EVERY_SECOND), StoredJob(b"{not json", 50, GEN), NO_LABELS) is None


def test_an_edit_that_moves_the_job_to_a_host_group_this_worker_is_not_in_is_not_run_here() -> None:
    moved = EVERY_SECOND.with_changes(hostGroup={"group": "db"})
    assert current_tick(tick(EVERY_SECOND), stored(moved, 50), {"group": "web"}) is None
    again = current_tick(tick(EVERY_SECOND), stored(moved, 50), {"group": "db", "zone": "a"})
    assert again is not None and again.job.host_group == (("group", "db"),)


def test_the_table_hands_out_the_version_last_put_without_rescheduling() -> None:
    table = TickTable()
    assert table.put(dataclasses.replace(EVERY_SECOND, revision=41, generation=GEN), PLAN - 500)
    same = dataclasses.replace(EVERY_SECOND, revision=45, generation=GEN)
    assert not table.put(same, PLAN - 400)  # the same definition: its pending tick stays
    due, missed = table.pop_due(PLAN, PLAN - 10_000)
    assert missed == 0
    assert [(t.plan_ms, t.job.revision) for t in due] == [(PLAN, 45)]
