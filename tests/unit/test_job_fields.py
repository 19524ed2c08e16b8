"""The job fields beyond the original three: each one's default, its accepted forms, and a 4xx
naming the field for bad input. Pure: no I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from gdts.errors import InvalidFieldError
from gdts.job import API_DEFAULTS, Job, api_view, iso_ms

NOW_MS = 1_795_000_000_000  # 2026-11-17


def ms_of(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


BASE = {"name": "a", "command": "true", "cronExpr": "* * * * *"}


def build(**fields: Any) -> Job:
    return Job.from_api({**BASE, **fields}, now_ms=NOW_MS)


def field_of_error(**fields: Any) -> str:
    with pytest.raises(InvalidFieldError) as exc:
        build(**fields)
    return exc.value.field


def test_a_job_with_the_original_fields_only_gets_every_default() -> None:
    job = Job.from_api(BASE)
    assert job.to_api() == {**API_DEFAULTS, **BASE}
    assert (job.kind, job.enabled, job.retries, job.concurrency) == ("shell", True, 0, "forbid")
    assert job.timeout_s is None and job.run_at_ms is None and job.http is None


def test_a_version_1_record_reads_as_the_defaults_in_utc() -> None:
    raw = b'{"v":1,"name":"a","command":"true","cronExpr":"0 3 * * *"}'
    job = Job.from_record(raw)
    assert job.timezone == "UTC" and job.enabled and job.concurrency == "forbid"
    assert api_view(raw) == {
        **API_DEFAULTS,
        "name": "a",
        "command": "true",
        "cronExpr": "0 3 * * *",
    }


def test_every_field_round_trips_through_the_record_and_the_api() -> None:
    data = {
        "name": "full",
        "type": "http",
        "command": "",
        "runAt": "2027-01-02T03:04:05.678Z",
        "timezone": "Europe/Berlin",
        "enabled": False,
        "timeout": 2.5,
        "retries": 3,
        "retryBackoff": 0.5,
        "concurrencyPolicy": "replace",
        "misfireGrace": 60,
        "catchUp": True,
        "http": {
            "method": "post",
            "url": "https://example.test:8443/hook?x=1",
            "headers": {"X-Token": "abc", "Content-Type": "application/json"},
            "body": '{"ping": true}',
            "expectedStatus": 202,
        },
        "expectedExitCode": 3,
        "outputContains": "OK",
        "outputNotContains": "ERROR",
    }
    job = Job.from_api(data, now_ms=NOW_MS)
    back = Job.from_record(job.to_record())
    assert back == job
    view = back.to_api()
    assert view["http"]["method"] == "POST"
    assert view["runAt"] == "2027-01-02T03:04:05.678Z"
    assert Job.from_api(json.loads(json.dumps(view))) == job  # the view saves back as it is


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kathmandu"])
def test_timezone_is_kept_and_drives_the_schedule(zone: str) -> None:
    job = build(timezone=zone, cronExpr="30 2 * * *")
    assert job.timezone == zone and job.schedule is not None and job.schedule.zone == zone


def test_the_default_zone_applies_when_none_is_given() -> None:
    job = Job.from_api(BASE, default_zone="Asia/Tokyo")
    assert job.timezone == "Asia/Tokyo"
    assert Job.from_api({**BASE, "timezone": "UTC"}, default_zone="Asia/Tokyo").timezone == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "UTC\x00", 5])
def test_a_bad_timezone_is_named(zone: object) -> None:
    assert field_of_error(timezone=zone) == "timezone"


@pytest.mark.parametrize(
    ("given", "expected_ms"),
    [
        ("2027-01-02T03:04:05Z", 1_798_859_045_000),
        ("2027-01-02T04:04:05+01:00", 1_798_859_045_000),
        (1_798_859_045, 1_798_859_045_000),
        ("1798859045.5", 1_798_859_045_500),
    ],
)
def test_run_at_reads_iso_8601_and_epoch_seconds(given: object, expected_ms: int) -> None:
    job = Job.from_api({"name": "once", "command": "true", "runAt": given}, now_ms=NOW_MS)
    assert job.one_shot and job.run_at_ms == expected_ms and job.schedule is None
    assert job.cron_expr == ""
    assert iso_ms(expected_ms).endswith("Z")


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("2020-01-01T00:00:00Z", "in the past"),
        (NOW_MS // 1000 - 1, "in the past"),
        ("2027-01-02T03:04:05", "no UTC offset"),
        ("tomorrow", "neither ISO 8601"),
        (True, "must be an ISO 8601 time"),
        (10**12, "between 2000 and 2099"),
    ],
)
def test_a_bad_run_at_is_named(given: object, problem: str) -> None:
    with pytest.raises(InvalidFieldError, match=problem) as exc:
        Job.from_api({"name": "once", "command": "true", "runAt": given}, now_ms=NOW_MS)
    assert exc.value.field == "runAt"


def test_a_stored_one_shot_in_the_past_still_reads() -> None:
    job = Job.from_api({"name": "o", "command": "true", "runAt": 1_798_859_045}, now_ms=NOW_MS)
    assert Job.from_record(job.to_record()).run_at_ms == job.run_at_ms  # no "now" when reading


def test_cron_and_run_at_together_are_refused() -> None:
    assert field_of_error(runAt="2027-01-02T03:04:05Z") == "runAt"


def test_neither_cron_nor_run_at_is_refused() -> None:
    with pytest.raises(InvalidFieldError, match="^cronExpr: is required") as exc:
        Job.from_api({"name": "a", "command": "true"})
    assert exc.value.field == "cronExpr"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", "5"),
        ("timeout", float("nan")),
        ("timeout", 8 * 24 * 3600),
        ("retries", 11),
        ("retries", -1),
        ("retries", 1.5),
        ("retries", True),
        ("retryBackoff", 0),
        ("retryBackoff", 3601),
        ("misfireGrace", 0),
        ("misfireGrace", 86401),
        ("enabled", "yes"),
        ("enabled", 1),
        ("catchUp", "true"),
        ("concurrencyPolicy", "parallel"),
        ("concurrencyPolicy", "Forbid"),
        ("type", "ssh"),
        ("expectedExitCode", 256),
        ("expectedExitCode", -1),
        ("outputContains", 5),
        ("outputNotContains", "x" * 4097),
    ],
)
def test_each_bad_value_is_named(field: str, value: object) -> None:
    assert field_of_error(**{field: value}) == field


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("timeout", 0.25, "timeout_s", 0.25),
        ("retries", 10, "retries", 10),
        ("retryBackoff", 2, "retry_backoff_s", 2.0),
        ("enabled", False, "enabled", False),
        ("misfireGrace", 30, "misfire_grace_s", 30.0),
        ("catchUp", True, "catch_up", True),
        ("concurrencyPolicy", "allow", "concurrency", "allow"),
        ("concurrencyPolicy", "replace", "concurrency", "replace"),
        ("expectedExitCode", 255, "expected_exit_code", 255),
        ("outputContains", "done", "output_contains", "done"),
        ("timeout", None, "timeout_s", None),
    ],
)
def test_each_good_value_is_kept(
    field: str, value: object, attribute: str, expected: object
) -> None:
    assert getattr(build(**{field: value}), attribute) == expected


@pytest.mark.parametrize(
    ("field", "value", "named", "problem"),
    [
        ("hostGroup", "db", "hostGroup", "must be an object of key: value, got str"),
        ("hostGroup", ["group", "db"], "hostGroup", "got list"),
        ("hostGroup", {}, None, None),  # the empty group: any worker, as unset
        ("hostGroup", {"bad key": "x"}, "hostGroup", "'bad key' is not a label key"),
        ("hostGroup", {"group": 5}, "hostGroup.group", "must be a string, got int"),
        ("hostGroup", {"group": ""}, "hostGroup.group", "'' is not a label value"),
        ("hostGroup", {"group": "db/1"}, "hostGroup.group", "'db/1' is not a label value"),
        ("routing", "fastest", "routing", "must be one of hash, random, roundRobin, weighted"),
        ("routing", "RoundRobin", "routing", "got 'RoundRobin'"),
        ("routing", 1, "routing", "got 1"),
    ],
)
def test_a_bad_host_group_or_routing_is_named(
    field: str, value: object, named: str | None, problem: str | None
) -> None:
    if named is None:
        assert build(**{field: value}).host_group == ()
        return
    with pytest.raises(InvalidFieldError, match=f"^{named}: .*{re.escape(str(problem))}"):
        build(**{field: value})


def test_a_host_group_and_routing_are_kept_and_shown_as_given() -> None:
    job = build(hostGroup={"zone": "eu-1", "group": "db"}, routing="leastBusy")
    assert job.host_group == (("group", "db"), ("zone", "eu-1"))
    assert (job.routing, job.routed) == ("leastBusy", True)
    shown = Job.from_record(job.to_record()).to_api()
    assert shown["hostGroup"] == {"group": "db", "zone": "eu-1"}
    assert shown["routing"] == "leastBusy"
    assert build().to_api()["hostGroup"] is None and build().routing == "hash"
    assert not build().routed


def http_job(**http: Any) -> dict[str, Any]:
    return {"name": "h", "type": "http", "cronExpr": "* * * * *", "http": http}


def test_an_http_job_needs_no_command() -> None:
    job = Job.from_api(http_job(url="http://127.0.0.1:8080/ping"))
    assert job.kind == "http" and job.command == "" and job.http is not None
    assert (job.http.method, job.http.expected_status) == ("GET", None)


@pytest.mark.parametrize(
    ("http", "field"),
    [
        ({"url": "ftp://host/x"}, "http.url"),
        ({"url": "http://"}, "http.url"),
        ({"url": "http://host:99999/"}, "http.url"),
        ({"url": "http://ho st/"}, "http.url"),
        ({"url": "not a url"}, "http.url"),
        ({}, "http.url"),
        ({"url": "http://h/", "method": "FETCH"}, "http.method"),
        ({"url": "http://h/", "headers": {"Bad Name": "x"}}, "http.headers"),
        ({"url": "http://h/", "headers": {"X": "a\r\nInjected: 1"}}, "http.headers"),
        ({"url": "http://h/", "headers": ["X: 1"]}, "http.headers"),
        ({"url": "http://h/", "expectedStatus": 99}, "http.expectedStatus"),
        ({"url": "http://h/", "body": 5}, "http.body"),
        ({"url": "http://h/", "timeout": 5}, "http.timeout"),
    ],
)
def test_bad_http_fields_are_named(http: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidFieldError) as exc:
        Job.from_api(http_job(**http))
    assert exc.value.field == field


def test_http_and_command_do_not_mix() -> None:
    with pytest.raises(InvalidFieldError) as exc:
        Job.from_api({**http_job(url="http://h/"), "command": "echo"})
    assert exc.value.field == "command"
    with pytest.raises(InvalidFieldError) as exc:
        Job.from_api({**BASE, "http": {"url": "http://h/"}})
    assert exc.value.field == "http"
    with pytest.raises(InvalidFieldError) as exc:
        Job.from_api({"name": "h", "type": "http", "cronExpr": "* * * * *"})
    assert exc.value.field == "http"


def test_with_changes_checks_the_result_like_a_save() -> None:
    job = build()
    assert job.with_changes(enabled=False).enabled is False
    with pytest.raises(InvalidFieldError) as exc:
        job.with_changes(retries=99)
    assert exc.value.field == "retries"


@pytest.mark.parametrize(
    "cron_expr", ["* * * * * * 1970", "0 0 0 1 1 * 2020-2025", "0 0 0 * * * 2026"]
)
def test_a_schedule_whose_times_are_all_past_is_refused_on_save(cron_expr: str) -> None:
    fields = {"name": "old", "command": "true", "cronExpr": cron_expr}
    with pytest.raises(InvalidFieldError, match="never fires again") as exc:
        Job.from_api(fields, now_ms=ms_of(2027, 1, 1))
    assert exc.value.field == "cronExpr"
    # A stored job (no "now") still loads: it simply has no next run.
    assert Job.from_api(fields).cron_expr == cron_expr
    # The same expression with a time left in it is taken.
    assert Job.from_api({**fields, "cronExpr": "0 0 0 * * * 2027"}, now_ms=ms_of(2027, 1, 1))


@pytest.mark.parametrize(
    ("field", "value", "least"),
    [("timeout", 1e-300, "0.1"), ("timeout", 0.099, "0.1"), ("misfireGrace", 0.5, "1"),
     ("retryBackoff", 1e-9, "0.1"), ("retryBackoff", 0.09, "0.1")],
)  # fmt: skip
def test_durations_below_what_can_be_honoured_are_refused(
    field: str, value: float, least: str
) -> None:
    with pytest.raises(InvalidFieldError, match=f"at least {least} seconds") as exc:
        Job.from_api({"name": "j", "command": "true", "cronExpr": "* * * * *", field: value})
    assert exc.value.field == field
    at_least = Job.from_api(
        {"name": "j", "command": "true", "cronExpr": "* * * * *", field: float(least)}
    )
    assert at_least.to_api()[field] == float(least)


@pytest.mark.parametrize(
    ("name", "code"),
    [("evil\u202egnp.exe", "202E"), ("a\u200bb", "200B"), ("a\u2028b", "2028"),
     ("a\u2029b", "2029"), ("a\u00a0b", "00A0"), ("a\ue000b", "E000"), ("a\u2060b", "2060"),
     ("a\ufeffb", "FEFF")],
)  # fmt: skip
def test_names_that_could_pass_for_another_are_refused(name: str, code: str) -> None:
    with pytest.raises(InvalidFieldError, match=f"must not contain U\\+{code}") as exc:
        Job.from_api({"name": name, "command": "true", "cronExpr": "* * * * *"})
    assert exc.value.field == "name"


def test_names_in_any_script_with_inner_spaces_are_taken() -> None:
    for name in ("nightly backup", "Sauvegarde été", "夜間バックアップ", "резервная-копия"):
        assert Job.from_api({"name": name, "command": "true", "cronExpr": "* * * * *"}).name == name


@pytest.mark.parametrize(
    ("field", "value", "named", "problem"),
    [
        ("tags", "prod", "tags", "must be a list of strings, got str"),
        ("tags", {"prod": 1}, "tags", "got dict"),
        ("tags", ["ok", 5], "tags[1]", "must be a string, got int"),
        ("tags", ["ok", "db", ""], "tags[2]", "'' is not a tag: 1-32 letters, digits"),
        ("tags", ["x" * 33], "tags[0]", "is not a tag: 1-32"),
        ("tags", ["has space"], "tags[0]", "'has space' is not a tag"),
        ("tags", ["a,b"], "tags[0]", "'a,b' is not a tag"),
        ("tags", ["caf\u00e9"], "tags[0]", "is not a tag"),
        ("tags", [f"t{i}" for i in range(21)], "tags", "at most 20 tags (got 21)"),
        ("description", 5, "description", "must be a string, got int"),
        ("description", "x" * 1001, "description", "at most 1000 characters (got 1001)"),
        ("description", "a\x00b", "description", "must not contain a NUL"),
        ("description", "\ud800", "description", "no lone surrogates"),
    ],
)
def test_a_bad_tag_or_description_is_named(
    field: str, value: object, named: str, problem: str
) -> None:
    with pytest.raises(InvalidFieldError, match=f"^{re.escape(named)}: .*{re.escape(problem)}"):
        build(**{field: value})


def test_tags_keep_their_order_once_each_and_a_description_its_lines() -> None:
    tags = ["prod", "db:pg-1", "team/ops", "prod", "v1.2_x", "db:pg-1"]
    # 20 distinct tags with repeats are 20 tags, not more.
    job = build(tags=tags + [f"t{i}" for i in range(16)] * 2, description="line 1\nline 2")
    assert job.tags[:4] == ("prod", "db:pg-1", "team/ops", "v1.2_x") and len(job.tags) == 20
    assert job.description == "line 1\nline 2"
    back = Job.from_record(job.to_record())
    assert back == job and back.to_api()["tags"] == list(job.tags)
    plain = build()
    assert (plain.tags, plain.description) == ((), "")
    assert build(tags=[]).to_api()["tags"] is None and build(tags=None).tags == ()
    # A record from before version 8 has neither: no tags, no description.
    old = Job.from_record(b'{"v":7,"name":"a","command":"true","cronExpr":"* * * * *"}')
    assert (old.tags, old.description) == ((), "")
    assert api_view(b'{"v":7,"name":"a","command":"true","cronExpr":"* * * * *"}')["tags"] is None


# --- team, env, secretEnv, http.secretHeaders ------------------------------------------------


def _shell(**fields: object) -> dict[str, object]:
    return {"name": "a", "command": "true", "cronExpr": "* * * * *", **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"team": ""}, r"^team: must not be empty"),
        ({"team": "a/b"}, r"^team: must not contain '/'"),
        ({"env": ["A"]}, r"^env: must be an object"),
        ({"env": {"1A": "x"}}, r"^env: '1A' is not a valid variable name"),
        ({"env": {"A-B": "x"}}, r"^env: 'A-B' is not a valid variable name"),
        ({"env": {"GDTS_JOB_NAME": "x"}}, r"^env\.GDTS_JOB_NAME: names starting with GDTS_"),
        ({"env": {"A": 1}}, r"^env\.A: must be a string"),
        ({"env": {"A": "a\x00"}}, r"^env\.A: must not contain a NUL"),
        ({"env": {f"V{i}": "" for i in range(101)}}, r"^env: must have at most 100"),
        ({"env": {"A": "x" * 65536}}, r"^env: must be at most 65536 bytes in all"),
        ({"secretEnv": {"PW": "a/b"}}, r"^secretEnv\.PW: must be 1-128 letters"),
        ({"secretEnv": {"PW": 5}}, r"^secretEnv\.PW: must be a string"),
        ({"secretEnv": {"GDTS_X": "pw"}}, r"^secretEnv\.GDTS_X: names starting with GDTS_"),
        ({"secretEnv": {"P W": "pw"}}, r"^secretEnv: 'P W' is not a valid variable name"),
        ({"env": {"PW": "x"}, "secretEnv": {"PW": "pw"}}, r"^secretEnv\.PW: is also in env"),
        ({"secretEnv": "pw"}, r"^secretEnv: must be an object of name: secret name"),
    ],
)
def test_team_and_environment_fields_name_what_is_wrong(fields: dict, message: str) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        Job.from_api(_shell(**fields))


def test_env_and_secret_env_are_kept_in_order() -> None:
    job = Job.from_api(_shell(team="ops", env={"B": "2", "A": "1"}, secretEnv={"PW": "db"}))
    assert job.team == "ops" and job.env == (("B", "2"), ("A", "1"))
    assert job.to_api()["secretEnv"] == {"PW": "db"}
    assert job.secret_refs() == (("secretEnv.PW", "db"),)
    assert Job.from_api(_shell()).team == "default"


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"secretHeaders": {"Bad Name": "tok"}}, r"^http\.secretHeaders: 'Bad Name' is not"),
        ({"secretHeaders": {"Authorization": "a b"}},
         r"^http\.secretHeaders\.Authorization: must be 1-128"),
        ({"headers": {"authorization": "x"}, "secretHeaders": {"Authorization": "tok"}},
         r"^http\.secretHeaders\.Authorization: is also in http\.headers"),
        ({"secretHeaders": ["tok"]}, r"^http\.secretHeaders: must be an object"),
    ],
)  # fmt: skip
def test_secret_headers_name_what_is_wrong(http: dict, message: str) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        Job.from_api({"name": "h", "type": "http", "cronExpr": "* * * * *",
                      "http": {"url": "https://example.com/", **http}})  # fmt: skip
