"""The client's job files: reading them with each field's line, normalizing jobs as the server
stores them, and the export form."""

from __future__ import annotations

import pytest

from gdts.cli.manifest import ManifestError, check_jobs, dump_jobs, normalize, parse_jobs
from gdts.jobfields import team_of

FILE = """\
jobs:
  - name: b
    command: |
      echo one
      echo two
    cronExpr: '*/5 * * * *'
    tags: [x, x, y]
  - name: a
    type: http
    runAt: 2030-01-01T00:00:00Z
    http:
      url: http://10.0.0.5/hook
    hostGroup:
      zone: eu-1
"""


def test_a_file_gives_its_jobs_in_order_with_the_line_of_every_field() -> None:
    b, a = parse_jobs(FILE, "jobs.yaml")
    assert b.job == {"name": "b", "command": "echo one\necho two\n",
                     "cronExpr": "*/5 * * * *", "tags": ["x", "x", "y"]}  # fmt: skip
    assert (b.line, b.lines["cronExpr"], b.lines["tags[1]"]) == (2, 6, 7)
    # An unquoted instant stays the string the API takes, not a datetime.
    assert a.job["runAt"] == "2030-01-01T00:00:00Z"
    assert a.line_of("hostGroup.zone") == 14
    assert a.line_of("job.http.method") == 11  # not in the file: the line of what holds it
    assert a.line_of("timeout") == 8  # not in the file at all: the job's line
    assert a.line_of(None) == 8


@pytest.mark.parametrize(
    "text",
    [
        "- name: one\n  command: true\n",  # a bare list
        "name: one\ncommand: true\n",  # one job
        "jobs: []\n---\nname: one\ncommand: true\n",  # documents
    ],
)
def test_a_file_may_hold_a_list_one_job_or_several_documents(text: str) -> None:
    assert [job.name for job in parse_jobs(text, "f")] == ["one"]


def test_an_empty_jobs_list_holds_no_job() -> None:
    assert parse_jobs("jobs:\n", "f") == [] and parse_jobs("", "f") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs:\n - name: x\n   bad", "f:3: not valid YAML: could not find expected ':'"),
        ("jobs: 3\n", "f:1: must hold jobs: a list of jobs, or one job"),
        ("jobs: []\nextra: 1\n", "f:2: extra: unknown top-level key (a file holds jobs: [...])"),
        ("jobs:\n  - [1, 2]\n", "f:2: a job must be a mapping of its fields"),
        ("jobs:\n  - command: true\n", "f:2: name: every job needs one"),
        ("- name: x\n  name: y\n", "f:2: name: given twice (first on line 1)"),
        ("- name: x\n  http:\n    url: a\n    url: b\n", "f:4: http.url: given twice (first "
         "on line 3)"),
        ("- name: x\n- name: y\n- name: x\n", "f:3: name: job 'x' is given twice (first on "
         "line 1)"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match="^" + message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]") + "$"):  # fmt: skip
        parse_jobs(text, "f")


def test_a_bad_field_is_named_with_its_line() -> None:
    text = "- name: x\n  command: date\n  cronExpr: '* * * * *'\n  tags: [ok, 'not ok']\n"
    with pytest.raises(ManifestError, match=r"^f:4: job 'x': tags\[1\]: 'not ok' is not a tag"):
        check_jobs(parse_jobs(text, "f"), "f", "UTC")
    text = "- name: x\n  command: date\n  cronExpr: '61 * * * *'\n"
    with pytest.raises(ManifestError, match=r"^f:3: job 'x': cronExpr: minute field: 61"):
        check_jobs(parse_jobs(text, "f"), "f", "UTC")
    with pytest.raises(ManifestError, match=r"^f:1: job 'x': cronExpr: is required"):
        check_jobs(parse_jobs("- name: x\n  command: date\n", "f"), "f", "UTC")
    # YAML reads an unquoted true as a boolean: the API's message says so.
    with pytest.raises(ManifestError, match=r"^f:2: job 'x': command: must be a string, got bool"):
        check_jobs(parse_jobs("- name: x\n  command: true\n", "f"), "f", "UTC")


def test_normalize_drops_defaults_and_what_the_server_owns_in_a_fixed_order() -> None:
    listed = {
        "name": "n", "type": "shell", "command": "true", "cronExpr": "* * * * *",
        "runAt": None, "timezone": "Europe/Berlin", "enabled": True, "timeout": 30,
        "retries": 0, "owner": "alice", "nextRunTime": 1, "running": False, "lastRun": None,
        "liveWorkers": None, "tags": ["b", "a", "b"],
    }  # fmt: skip
    assert list(normalize(listed, "UTC").items()) == [
        ("name", "n"), ("command", "true"), ("cronExpr", "* * * * *"),
        ("timezone", "Europe/Berlin"), ("timeout", 30), ("tags", ["b", "a"]),
    ]  # fmt: skip


def test_normalize_writes_a_job_the_way_the_server_shows_it() -> None:
    given = {"name": "h", "type": "http", "runAt": 1893456000, "http": {"url": "http://a/"}}
    shown = {"name": "h", "type": "http", "runAt": "2030-01-01T00:00:00.000Z",
             "http": {"method": "GET", "url": "http://a/", "headers": {}, "body": "",
                      "expectedStatus": None}}  # fmt: skip
    assert normalize(given, "Asia/Tokyo") == normalize(shown, "Asia/Tokyo")
    # Without a timezone a job gets the manager's default, and says so.
    assert normalize(given, "Asia/Tokyo")["timezone"] == "Asia/Tokyo"


def test_fields_this_client_does_not_know_are_kept_after_the_known_ones() -> None:
    job = {"zeta": 1, "team": "ops", "name": "n", "command": "true", "cronExpr": "@daily",
           "nothing": None}  # fmt: skip
    assert list(normalize(job, "UTC")) == ["name", "command", "cronExpr", "timezone", "team",
                                           "zeta"]  # fmt: skip
    assert team_of(job) == "ops" and team_of({"name": "n"}) == "default"


def test_the_export_form_is_sorted_and_stable() -> None:
    jobs = check_jobs(parse_jobs(FILE, "f"), "f", "UTC")
    text = dump_jobs(jobs)
    assert text == dump_jobs(list(reversed(jobs)))
    assert (
        text
        == """\
jobs:
  - name: a
    type: http
    runAt: '2030-01-01T00:00:00.000Z'
    timezone: UTC
    http:
      method: GET
      url: http://10.0.0.5/hook
      headers: {}
      body: ''
      expectedStatus: null
    hostGroup:
      zone: eu-1
  - name: b
    command: |
      echo one
      echo two
    cronExpr: '*/5 * * * *'
    timezone: UTC
    tags:
      - x
      - y
"""
    )
    # What export writes reads back as the same jobs.
    assert check_jobs(parse_jobs(text, "f"), "f", "UTC") == sorted(jobs, key=lambda j: j["name"])
