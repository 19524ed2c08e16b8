"""gdts.job: validation of the job an operator saves, its API form and its etcd record."""

import json

import pytest

from gdts.errors import InvalidFieldError, UnsupportedVersionError
from gdts.job import (
    API_DEFAULTS,
    JOB_RECORD_VERSION,
    Job,
    api_view,
    api_views,
    jobs_digest,
    validate_name,
)

EVERY_MINUTE = "* * * * *"


def field_of(excinfo: pytest.ExceptionInfo[InvalidFieldError]) -> str:
    return excinfo.value.field


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "backup-db", "my job", "nightly.report_v2", "x" * 128, "é" * 128, "日本語", "..."],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name
    assert Job.create(name, "true", EVERY_MINUTE).name == name


def test_name_of_128_characters_is_accepted_and_129_is_not() -> None:
    assert validate_name("n" * 128) == "n" * 128
    with pytest.raises(InvalidFieldError, match=r"^name: must be at most 128 characters") as exc:
        validate_name("n" * 129)
    assert field_of(exc) == "name"


def test_name_limit_counts_characters_not_bytes() -> None:
    # 128 two-byte characters are 256 bytes, still 128 characters.
    assert validate_name("é" * 128) == "é" * 128
    with pytest.raises(InvalidFieldError, match=r"^name: must be at most 128 characters"):
        validate_name("é" * 129)


def test_empty_name_is_rejected() -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must not be empty") as exc:
        validate_name("")
    assert field_of(exc) == "name"


@pytest.mark.parametrize("name", ["a/b", "/", "/a", "a/", "jobs/../x"])
def test_name_with_slash_is_rejected(name: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must not contain '/'") as exc:
        validate_name(name)
    assert field_of(exc) == "name"


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must not be '\.+'") as exc:
        validate_name(name)
    assert field_of(exc) == "name"


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "a\nb", "a\rb", "a\tb", "del\x7f", "\x1b[31mred", "c1\x85", "\x9f"],
    ids=["nul", "newline", "cr", "tab", "del", "escape", "c1-nel", "c1-last"],
)
def test_name_with_control_character_is_rejected(name: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must not contain control characters"):
        validate_name(name)


@pytest.mark.parametrize("name", [" a", "a ", " a ", "a\u00a0", "\u3000a", "a\u2003"], ids=repr)
def test_name_with_leading_or_trailing_white_space_is_rejected(name: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^name: must not start or end with white space"):
        validate_name(name)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(5, "int"), (None, "null"), (b"abc", "bytes"), (["a"], "list"), (True, "bool")],
)
def test_name_must_be_a_string(value: object, type_name: str) -> None:
    with pytest.raises(InvalidFieldError, match=rf"^name: must be a string, got {type_name}$"):
        validate_name(value)


def test_validate_name_reports_the_given_field_name() -> None:
    with pytest.raises(InvalidFieldError, match=r"^jobName: must not contain '/'") as exc:
        validate_name("a/b", "jobName")
    assert field_of(exc) == "jobName"


def test_name_with_lone_surrogate_is_rejected() -> None:
    # A JSON body may carry "\ud800"; json.loads turns it into a lone surrogate. The name goes
    # into etcd keys (UTF-8), so validation must refuse it instead of letting key building crash.
    name = json.loads('"bad\\ud800name"')
    with pytest.raises(InvalidFieldError, match=r"^name: ") as exc:
        validate_name(name)
    assert field_of(exc) == "name"


# --- commands -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", " ", "   \t\n  "], ids=["empty", "space", "blank"])
def test_empty_or_blank_command_is_rejected(command: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^command: must not be empty") as exc:
        Job.create("a", command, EVERY_MINUTE)
    assert field_of(exc) == "command"


def test_command_of_exactly_64_kib_ascii_is_accepted_and_one_more_byte_is_not() -> None:
    assert len(Job.create("a", "x" * 65536, EVERY_MINUTE).command) == 65536
    with pytest.raises(InvalidFieldError, match=r"^command: must be at most 65536 bytes") as exc:
        Job.create("a", "x" * 65537, EVERY_MINUTE)
    assert field_of(exc) == "command"


def test_command_limit_counts_utf8_bytes_two_byte_characters() -> None:
    # 32768 x 'é' is 32768 characters but exactly 65536 bytes: the limit.
    at_limit = "é" * 32768
    assert Job.create("a", at_limit, EVERY_MINUTE).command == at_limit
    with pytest.raises(InvalidFieldError, match=r"^command: .*\(got 65537\)"):
        Job.create("a", at_limit + "x", EVERY_MINUTE)


def test_command_limit_counts_utf8_bytes_three_and_four_byte_characters() -> None:
    # 21845 x '€' (3 bytes) + 1 ASCII byte = 65536 bytes; one more byte is over.
    at_limit = "€" * 21845 + "x"
    assert Job.create("a", at_limit, EVERY_MINUTE).command == at_limit
    with pytest.raises(InvalidFieldError, match=r"^command: .*\(got 65537\)"):
        Job.create("a", at_limit + "y", EVERY_MINUTE)
    # 16384 x U+1F600 (4 bytes) = 65536 bytes; only 16384 characters, far below by length.
    emoji = "\U0001f600" * 16384
    assert Job.create("a", emoji, EVERY_MINUTE).command == emoji
    with pytest.raises(InvalidFieldError, match=r"^command: .*\(got 65540\)"):
        Job.create("a", emoji + "\U0001f600", EVERY_MINUTE)


def test_command_with_nul_is_rejected() -> None:
    with pytest.raises(InvalidFieldError, match=r"^command: must not contain a NUL") as exc:
        Job.create("a", "echo a\x00b", EVERY_MINUTE)
    assert field_of(exc) == "command"


def test_command_may_hold_newlines_and_tabs() -> None:
    script = "set -e\n\techo one\necho two\n"
    assert Job.create("a", script, EVERY_MINUTE).command == script


@pytest.mark.parametrize(
    ("value", "type_name"), [(5, "int"), (None, "null"), (["ls", "-l"], "list")]
)
def test_command_must_be_a_string(value: object, type_name: str) -> None:
    with pytest.raises(InvalidFieldError, match=rf"^command: must be a string, got {type_name}$"):
        Job.create("a", value, EVERY_MINUTE)


def test_command_with_lone_surrogate_is_an_invalid_field_not_a_crash() -> None:
    command = json.loads('"echo \\ud800"')
    with pytest.raises(InvalidFieldError, match=r"^command: ") as exc:
        Job.create("a", command, EVERY_MINUTE)
    assert field_of(exc) == "command"


# --- cron expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ["bad", "* * * *", "61 * * * *", "0 0 30 2 *", "0 0 L * *", "@never", ""],
)
def test_cron_errors_come_back_as_invalid_field_cron_expr(expr: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^cronExpr: ") as exc:
        Job.create("a", "true", expr)
    assert field_of(exc) == "cronExpr"
    # The cron module's own "cronExpr: " prefix is not repeated.
    assert not str(exc.value).startswith("cronExpr: cronExpr")
    assert exc.value.problem and not exc.value.problem.startswith("cronExpr")


def test_cron_error_keeps_the_problem_text() -> None:
    with pytest.raises(InvalidFieldError, match=r"^cronExpr: minute field: 61 is out of range"):
        Job.create("a", "true", "61 * * * *")


@pytest.mark.parametrize(("value", "type_name"), [(5, "int"), (None, "null"), (["*"], "list")])
def test_cron_expr_must_be_a_string(value: object, type_name: str) -> None:
    with pytest.raises(InvalidFieldError, match=rf"^cronExpr: must be a string, got {type_name}$"):
        Job.create("a", "true", value)


def test_cron_expr_is_kept_without_surrounding_spaces() -> None:
    job = Job.create("a", "true", "  */5 * * * *  ")
    assert job.cron_expr == "*/5 * * * *"
    assert job.to_api()["cronExpr"] == "*/5 * * * *"


def test_create_names_the_first_bad_field() -> None:
    with pytest.raises(InvalidFieldError) as exc:
        Job.create("a/b", "", "bad")
    assert field_of(exc) == "name"
    with pytest.raises(InvalidFieldError) as exc:
        Job.create("ok", "", "bad")
    assert field_of(exc) == "command"


# --- API form -----------------------------------------------------------------------------------


def test_from_api_builds_the_job() -> None:
    job = Job.from_api({"name": "backup", "command": "echo hi", "cronExpr": "0 3 * * *"})
    assert (job.name, job.command, job.cron_expr) == ("backup", "echo hi", "0 3 * * *")


def test_to_api_keeps_the_original_fields_and_shows_every_default() -> None:
    job = Job.create("backup", "echo hi", "0 3 * * *")
    view = job.to_api()
    assert {k: view[k] for k in ("name", "command", "cronExpr")} == {
        "name": "backup",
        "command": "echo hi",
        "cronExpr": "0 3 * * *",
    }
    assert view == {**API_DEFAULTS, "name": "backup", "command": "echo hi", "cronExpr": "0 3 * * *"}


def test_from_api_rejects_an_unknown_field_naming_it() -> None:
    data = {"name": "a", "command": "true", "cronExpr": EVERY_MINUTE, "timeOut": 5}
    with pytest.raises(InvalidFieldError, match=r"^timeOut: unknown job field") as exc:
        Job.from_api(data)
    assert field_of(exc) == "timeOut"


def test_from_api_rejects_a_field_that_differs_only_in_case() -> None:
    data = {"name": "a", "command": "true", "cronexpr": EVERY_MINUTE}
    with pytest.raises(InvalidFieldError, match=r"^cronexpr: unknown job field"):
        Job.from_api(data)


@pytest.mark.parametrize("missing", ["name", "command", "cronExpr"])
def test_from_api_names_a_missing_field(missing: str) -> None:
    data = {"name": "a", "command": "true", "cronExpr": EVERY_MINUTE}
    del data[missing]
    with pytest.raises(InvalidFieldError, match=rf"^{missing}: is required") as exc:
        Job.from_api(data)
    assert field_of(exc) == missing


@pytest.mark.parametrize(
    ("data", "type_name"),
    [([], "list"), ("job", "str"), (None, "null"), (3, "int")],
)
def test_from_api_rejects_a_non_object(data: object, type_name: str) -> None:
    with pytest.raises(InvalidFieldError, match=rf"^job: must be a JSON object, got {type_name}$"):
        Job.from_api(data)


def test_from_api_validates_the_values() -> None:
    with pytest.raises(InvalidFieldError) as exc:
        Job.from_api({"name": "a", "command": "true", "cronExpr": "99 * * * *"})
    assert field_of(exc) == "cronExpr"


# --- etcd record --------------------------------------------------------------------------------


def test_to_record_is_compact_json_with_version_first() -> None:
    job = Job.create("backup", "echo hi", "0 3 * * *")
    assert job.to_record() == b'{"v":3,"name":"backup","command":"echo hi","cronExpr":"0 3 * * *"}'
    # Only what differs from the defaults is stored besides the three original fields.
    paused = job.with_changes(enabled=False, retries=2)
    assert paused.to_record() == (
        b'{"v":3,"name":"backup","command":"echo hi","cronExpr":"0 3 * * *",'
        b'"enabled":false,"retries":2}'
    )


@pytest.mark.parametrize(
    ("name", "command", "expr"),
    [
        ("backup", "echo hi", "0 3 * * *"),
        ("日本語 ジョブ", 'printf "%s\\n" "é€\U0001f600" | tee /tmp/x', "*/5 * * * * *"),
        ("n" * 128, "c" * 65536, "0 0 0 1 1 * 2030,2095"),
        ('quote"back\\slash', "echo '\"'", "@daily"),
    ],
    ids=["plain", "unicode", "limits", "escapes"],
)
def test_record_round_trip(name: str, command: str, expr: str) -> None:
    job = Job.create(name, command, expr)
    back = Job.from_record(job.to_record())
    assert back == job
    assert (back.name, back.command, back.cron_expr) == (name, command, job.cron_expr)
    assert back.schedule.expr == job.cron_expr


def test_record_written_by_go_gdts_without_version_is_accepted() -> None:
    raw = b'{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * *"}'
    job = Job.from_record(raw)
    assert (job.name, job.command, job.cron_expr) == ("job1", "echo hello", "*/5 * * * *")


def test_record_with_version_1_is_accepted() -> None:
    raw = b'{"v":1,"name":"job1","command":"echo hello","cronExpr":"@hourly"}'
    assert Job.from_record(raw).cron_expr == "@hourly"


@pytest.mark.parametrize("version", [JOB_RECORD_VERSION + 1, 99])
def test_record_from_a_newer_gdts_is_refused_with_an_upgrade_hint(version: int) -> None:
    raw = json.dumps(
        {"v": version, "name": "job1", "command": "true", "cronExpr": EVERY_MINUTE}
    ).encode()
    with pytest.raises(UnsupportedVersionError, match=r"^v: .*upgrade") as exc:
        Job.from_record(raw)
    assert field_of(exc) == "v"
    assert str(version) in str(exc.value)
    assert isinstance(exc.value, InvalidFieldError)


@pytest.mark.parametrize("version", ['"2"', "true", "0", "-1", "1.5"])
def test_record_with_a_malformed_version_is_refused(version: str) -> None:
    raw = b'{"v":%s,"name":"job1","command":"true","cronExpr":"* * * * *"}' % version.encode()
    with pytest.raises(InvalidFieldError, match=r"^v: must be a positive integer"):
        Job.from_record(raw)


def test_record_with_unknown_field_is_rejected_naming_it() -> None:
    raw = b'{"v":1,"name":"job1","command":"true","cronExpr":"* * * * *","colour":"x"}'
    with pytest.raises(InvalidFieldError, match=r"^colour: unknown job field"):
        Job.from_record(raw)


def test_record_with_invalid_values_is_rejected_naming_the_field() -> None:
    raw = b'{"v":1,"name":"a/b","command":"true","cronExpr":"* * * * *"}'
    with pytest.raises(InvalidFieldError, match=r"^name: ") as exc:
        Job.from_record(raw)
    assert field_of(exc) == "name"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "is not JSON"),
        (b"not json", "is not JSON"),
        (b'{"name":', "is not JSON"),
        (b"\xff\xfe\xfd", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'"a string"', "is not a JSON object"),
        (b"null", "is not a JSON object"),
        (b"42", "is not a JSON object"),
    ],
    ids=["empty", "text", "truncated", "bad-utf8", "array", "string", "null", "number"],
)
def test_garbage_record_is_rejected_with_field_job(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidFieldError, match=rf"^job: stored value {problem}") as exc:
        Job.from_record(raw)
    assert field_of(exc) == "job"
    assert not isinstance(exc.value, UnsupportedVersionError)


def test_job_equality_ignores_the_schedule_object_but_not_the_fields() -> None:
    a = Job.create("a", "true", EVERY_MINUTE)
    assert a == Job.create("a", "true", EVERY_MINUTE)
    assert a != Job.create("a", "false", EVERY_MINUTE)
    assert a != Job.create("a", "true", "*/2 * * * *")
    assert a != Job.create("b", "true", EVERY_MINUTE)


# --- many stored records at once (the listing path) ------------------------------------------


def _records(count: int) -> list[bytes]:
    return [Job.create(f"job{i}", f"echo {i}", "* * * * *").to_record() for i in range(count)]


def test_api_views_of_good_records_equal_each_api_view() -> None:
    raws = _records(5) + [b'{"name":"go","command":"ls","cronExpr":"@daily"}']  # Go's, no "v"
    assert api_views(raws) == [api_view(raw) for raw in raws]


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[1, 2]",
        b'{"v":1,"name":"x"}',
        b'{"v":99,"name":"x","command":"c","cronExpr":"* * * * *"}',
        b'{"v":1,"name":"x","command":"c","cronExpr":"* * * * *"',
        b"\xff\xfe{}",
    ],
)
def test_an_unreadable_record_is_reported_in_its_place_and_the_others_still_read(
    bad: bytes,
) -> None:
    raws = _records(2)
    views = api_views([raws[0], bad, raws[1]])
    assert views[0] == api_view(raws[0]) and views[2] == api_view(raws[1])
    assert isinstance(views[1], InvalidFieldError)


def test_records_that_parse_only_together_are_not_mistaken_for_jobs() -> None:
    # Each is broken alone; joined with a comma they would make one valid object.
    first = b'{"v":1,"name":"a","command":"c","cronExpr":"* * * * *","x":"}'
    second = b'{"y":"'
    third = b'"}'
    views = api_views([first, second, third])
    assert all(isinstance(view, InvalidFieldError) for view in views)


def test_a_future_record_version_stays_an_unsupported_version_error() -> None:
    future = JOB_RECORD_VERSION + 1
    raw = b'{"v":%d,"name":"x","command":"c","cronExpr":"* * * * *"}' % future
    (view,) = api_views([raw, *_records(1)])[:1]
    assert isinstance(view, UnsupportedVersionError)


def test_a_record_says_the_lowest_version_that_holds_its_fields() -> None:
    """A record that sets no field newer than version 3 stays readable by a process that
    predates the newer fields; one that does names the version that brought them."""
    plain = Job.create("a", "true", EVERY_MINUTE)
    assert json.loads(plain.to_record())["v"] == 3
    kept = plain.with_changes(keepBackground=True)
    assert json.loads(kept.to_record())["v"] == 4
    assert Job.from_record(kept.to_record()).keep_background
    limited = plain.with_changes(limits={"memoryMB": 64})
    assert json.loads(limited.to_record())["v"] == 5
    assert Job.from_record(limited.to_record()).limits.memory_mb == 64
    told = plain.with_changes(notify=[{"channel": "ops", "on": ["failed"]}])
    assert json.loads(told.to_record())["v"] == 6
    assert Job.from_record(told.to_record()).notify == told.notify
    slower = plain.with_changes(notifyMinInterval=60)
    assert json.loads(slower.to_record())["v"] == 6
    assert Job.from_record(slower.to_record()).notify_min_interval_s == 60
    placed = plain.with_changes(hostGroup={"group": "db"}, routing="roundRobin")
    assert json.loads(placed.to_record())["v"] == 7
    assert Job.from_record(placed.to_record()).host_group == (("group", "db"),)
    tagged = plain.with_changes(tags=["prod"])
    assert json.loads(tagged.to_record())["v"] == 8
    assert Job.from_record(tagged.to_record()).tags == ("prod",)
    described = plain.with_changes(description="Nightly dump")
    assert json.loads(described.to_record())["v"] == 8
    assert Job.from_record(described.to_record()).description == "Nightly dump"
    trimmed = plain.with_changes(keepRuns=100)
    assert json.loads(trimmed.to_record())["v"] == 8
    assert Job.from_record(trimmed.to_record()).keep_runs == 100
    teamed = plain.with_changes(team="data")
    assert json.loads(teamed.to_record())["v"] == 9 == JOB_RECORD_VERSION
    assert Job.from_record(teamed.to_record()).team == "data"
    owned = plain.with_changes(ownerId="a1b2")
    assert json.loads(owned.to_record())["v"] == 9
    assert Job.from_record(owned.to_record()).owner_id == "a1b2"
    teamed = plain.with_changes(team="ops", env={"A": "1"}, secretEnv={"PW": "db-pw"})
    assert json.loads(teamed.to_record())["v"] == 9 == JOB_RECORD_VERSION
    assert Job.from_record(teamed.to_record()).secret_env == (("PW", "db-pw"),)
    in_default = json.loads(plain.with_changes(team="default").to_record())
    assert in_default["v"] == 3 and "team" not in in_default  # jobs stored without it: default
    assert Job.from_record(plain.to_record()).team == "default"
    http = Job.from_api({"name": "h", "type": "http", "cronExpr": EVERY_MINUTE,
                         "http": {"url": "https://example.com/"}})  # fmt: skip
    assert json.loads(http.to_record())["v"] == 3
    signed = http.with_changes(http={"url": "https://example.com/",
                                     "secretHeaders": {"Authorization": "api-token"}})  # fmt: skip
    assert json.loads(signed.to_record())["v"] == 9
    assert Job.from_record(signed.to_record()).secret_refs() == (
        ("http.secretHeaders.Authorization", "api-token"),
    )


@pytest.mark.parametrize("value", [0, -1, 1_000_001, "x", "5", 2.5, True])
def test_keep_runs_is_an_integer_from_1_to_a_million(value: object) -> None:
    with pytest.raises(InvalidFieldError, match=r"^keepRuns: must be "):
        Job.from_api({"name": "a", "command": "true", "cronExpr": EVERY_MINUTE, "keepRuns": value})
    for kept in (1, 1_000_000, None):
        job = Job.from_api(
            {"name": "a", "command": "true", "cronExpr": EVERY_MINUTE, "keepRuns": kept}
        )
        assert job.keep_runs == kept


def test_the_digest_of_a_job_set_ignores_order_and_sees_any_change() -> None:
    a = Job.create("a", "true", "@daily")
    b = Job.create("b", "true", "@hourly")
    assert jobs_digest([a, b]) == jobs_digest([b, a])
    assert len(jobs_digest([a, b])) == 16
    assert jobs_digest([a, b]) != jobs_digest([a])
    assert jobs_digest([a, b]) != jobs_digest([a, b.with_changes(command="false")])
    assert jobs_digest([]) == "0" * 16


@pytest.mark.parametrize("field", ["timeout", "misfireGrace", "retryBackoff", "notifyMinInterval"])
def test_a_number_of_seconds_past_any_float_is_refused_naming_the_field(field: str) -> None:
    """A JSON integer of 400 digits is a valid literal; it must be a 400, not a crash."""
    with pytest.raises(InvalidFieldError, match=f"^{field}: must be greater than 0"):
        Job.from_api({"name": "a", "command": "true", "cronExpr": EVERY_MINUTE,
                      field: 10**400})  # fmt: skip
