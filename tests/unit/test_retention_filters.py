"""The clean-up's queries, as pure values (gdts.manager.retention)."""

from __future__ import annotations

from gdts.manager.retention import listed_from, purge_targets


def test_listed_from_a_started_run_takes_its_ties_after_it_then_older_then_never_started() -> None:
    assert listed_from("j", {"_id": 7, "startTime": 1000}) == {
        "jobName": "j",
        "$or": [
            {"startTime": 1000, "_id": {"$gte": 7}},
            {"startTime": {"$lt": 1000}},
            {"startTime": None},
        ],
    }


def test_listed_from_a_run_that_never_started_takes_only_those_after_it() -> None:
    # /job/log lists runs without a startTime last, by _id among themselves.
    assert listed_from("j", {"_id": 7, "startTime": None}) == {
        "jobName": "j", "startTime": None, "_id": {"$gte": 7},
    }  # fmt: skip
    assert listed_from("j", {"_id": 7}) == listed_from("j", {"_id": 7, "startTime": None})


def test_a_purge_takes_runs_and_live_chunks_planned_before_the_deletion_and_old_summary() -> None:
    runs, chunks, summary = purge_targets("j", 5000)
    assert (runs.collection, runs.query) == ("job_log", {"jobName": "j", "planTime": {"$lt": 5000}})
    assert (chunks.collection, chunks.query) == ("job_output_live", runs.query)
    assert (summary.collection, summary.query) == (
        "job_last_run", {"_id": "j", "planTime": {"$lt": 5000}},
    )  # fmt: skip
