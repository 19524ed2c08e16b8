"""The /job/list filters: their parameters and which jobs they keep."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gdts.errors import InvalidFieldError
from gdts.manager.jobfilter import JobFacts, JobFilter, matches, parse_filter

JOBS = {
    "backup-db": JobFacts(
        "backup-db",
        ("prod", "db"),
        "alice",
        True,
        False,
        "succeeded",
        "w1",
        command="pg_dump db | gzip > /backups/db.gz",
    ),
    "Backup-Web": JobFacts("Backup-Web", ("prod",), "bob", False, False, "failed", "w2"),
    "report": JobFacts(
        "report",
        ("team/ops",),
        "alice",
        True,
        True,
        "timeout",
        "w1",
        {"w3"},
        "\nhttps://reports.example/run",
    ),
    "never-ran": JobFacts("never-ran", (), "", True, False, None, None),
    "killed": JobFacts("killed", (), "bob", True, False, "killed", "w2"),
    "skipped": JobFacts("skipped", (), "bob", True, False, "skipped", "w2"),
    "lost": JobFacts("lost", (), "bob", True, False, "lost", "w3"),
    "missed": JobFacts("missed", (), "bob", True, False, "missed", None),
    "limit": JobFacts("limit", (), "bob", True, False, "limit", "w1"),
}


def listed(**params: Any) -> list[str]:
    wanted = parse_filter(params)
    return [name for name, facts in JOBS.items() if matches(wanted, facts)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, list(JOBS)),
        ({"name": "", "command": "", "tag": "", "owner": "", "status": "", "host": ""}, list(JOBS)),
        ({"name": "backup"}, ["backup-db", "Backup-Web"]),
        ({"name": "BACKUP-w"}, ["Backup-Web"]),
        ({"name": "nothing"}, []),
        ({"command": "PG_DUMP"}, ["backup-db"]),  # a part of the command, any case
        ({"command": "reports.example"}, ["report"]),  # an HTTP job's URL
        ({"command": "gzip", "owner": "bob"}, []),
        ({"tag": "prod"}, ["backup-db", "Backup-Web"]),
        ({"tag": "prod,db"}, ["backup-db"]),
        ({"tag": " prod , db ,"}, ["backup-db"]),
        ({"tag": "Prod"}, []),  # tags are matched exactly, case included
        ({"tag": "team/ops"}, ["report"]),
        ({"owner": "alice"}, ["backup-db", "report"]),
        ({"owner": "ali"}, []),  # an owner is matched whole
        ({"status": "paused"}, ["Backup-Web"]),
        ({"status": "running"}, ["report"]),
        ({"status": "failing"}, ["Backup-Web", "report", "lost", "missed", "limit"]),
        ({"host": "w1"}, ["backup-db", "report", "limit"]),
        ({"host": "w3"}, ["report", "lost"]),  # running on it now, or its last run there
        ({"host": "w"}, []),
        ({"owner": "bob", "status": "failing", "host": "w2"}, ["Backup-Web"]),
        ({"name": "b", "tag": "prod", "status": "paused"}, ["Backup-Web"]),
    ],
)
def test_each_filter_keeps_the_jobs_it_names_and_filters_combine(
    params: dict[str, str], expected: list[str]
) -> None:
    assert listed(**params) == expected


def test_no_filter_is_false_and_any_filter_true() -> None:
    assert not parse_filter({}) and not JobFilter()
    assert parse_filter({"host": "w1"}) and parse_filter({"tag": "a"})
    assert parse_filter({"command": "x"})
    assert parse_filter({"tag": "a,b,a"}).tags == ("a", "b")


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        ({"status": "broken"}, "status", "must be one of failing, running, paused (got 'broken')"),
        ({"status": "Failing"}, "status", "must be one of"),
        ({"status": "x" * 100}, "status", "at most 7 characters"),
        ({"tag": "a b"}, "tag", "'a b' is not a tag"),
        ({"tag": "ok,x" + "y" * 32}, "tag", "is not a tag: 1-32"),
        ({"tag": ",".join(f"t{i}" for i in range(21))}, "tag", "at most 20 tags (got 21)"),
        ({"tag": "a," * 400}, "tag", "at most 680 characters"),
        ({"name": "x" * 129}, "name", "at most 128 characters"),
        ({"name": 5}, "name", "must be a string, got int"),
        ({"owner": "\ud800"}, "owner", "no lone surrogates"),
        ({"host": "h" * 301}, "host", "at most 300 characters"),
        ({"command": "c" * 201}, "command", "at most 200 characters"),
    ],
)
def test_a_bad_filter_is_named(params: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(InvalidFieldError, match=f"^{field}: .*{re.escape(problem)}"):
        parse_filter(params)
