"""What ``gdts apply`` plans from a file's jobs and the server's, what ``job run --wait`` exits
with, and where the client finds its manager and token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gdts.cli.config import (
    DEFAULT_URL,
    CliError,
    Target,
    credentials_path,
    resolve_target,
    write_credentials,
)
from gdts.cli.plan import Change, changed_fields, delete_order, make_plan, save_order
from gdts.cli.show import run_exit_code, table, when


def job(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "command": "true", "cronExpr": "@daily", **fields}


def test_a_plan_creates_changes_and_leaves_alone() -> None:
    wanted = {"a": job("a"), "b": job("b", timeout=30), "c": job("c")}
    current = {"b": job("b", retries=2), "c": job("c"), "old": job("old")}
    plan = make_plan(wanted, current, prune=False)
    assert plan.create == ("a",)
    assert plan.change == (Change("b", ("timeout", "retries")),)
    assert (plan.delete, plan.unchanged) == ((), ("c",))
    assert plan.lines() == ["create a", "change b: timeout, retries"]
    assert plan.summary() == "1 to create, 1 to change, 0 to delete, 1 unchanged"


def test_a_second_plan_after_the_first_is_empty() -> None:
    wanted = {"a": job("a")}
    plan = make_plan(wanted, dict(wanted), prune=True)
    assert plan.empty and plan.summary() == "nothing to change (1 jobs as in the file)"


def test_prune_deletes_what_the_file_lacks_only_in_the_team_given() -> None:
    current = {"x": job("x", team="ops"), "y": job("y"), "z": job("z", team="web")}
    assert make_plan({}, current, prune=True).delete == ("x", "y", "z")
    assert make_plan({}, current, prune=True, team="ops").delete == ("x",)
    assert make_plan({}, current, prune=True, team="default").delete == ("y",)
    assert make_plan({}, current, prune=False).delete == ()


def test_changed_fields_include_a_field_the_file_no_longer_gives() -> None:
    assert changed_fields(job("a", timeout=5, tags=["x"]), job("a", tags=["x"])) == ("timeout",)
    assert changed_fields(job("a"), job("a")) == ()


def test_linked_jobs_are_saved_after_and_deleted_before_the_jobs_they_name() -> None:
    jobs = {
        "report": job("report", parents=["load"]),
        "load": job("load", parents=["extract"]),
        "extract": job("extract", children=["zz-mail"]),
        "zz-mail": job("zz-mail"),
        "alone": job("alone"),
    }
    assert save_order(jobs) == ["alone", "zz-mail", "extract", "load", "report"]
    assert delete_order(jobs) == ["alone", "report", "load", "extract", "zz-mail"]
    # A cycle (which the server refuses) is cut rather than looped on.
    assert save_order({"a": job("a", parents=["b"]), "b": job("b", parents=["a"])}) == ["b", "a"]


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"status": "succeeded", "exitCode": 0}, 0),
        ({"status": "succeeded", "exitCode": 3}, 3),  # its expectedExitCode
        ({"status": "failed", "exitCode": 2}, 2),
        ({"status": "failed", "exitCode": 0}, 1),  # an output rule failed it
        ({"status": "succeeded", "exitCode": None}, 0),  # an http job
        ({"status": "failed", "exitCode": None}, 1),
        ({"status": "timeout", "exitCode": None}, 124),
        ({"status": "limit", "exitCode": None}, 125),
        ({"status": "killed", "exitCode": -9}, 137),
        ({"status": "lost", "exitCode": None}, 3),
        ({"status": "missed"}, 4),
        (None, 5),
    ],
)
def test_run_wait_exits_with_the_exit_code_or_one_per_status(record, code) -> None:
    assert run_exit_code(record) == code


def test_table_and_times() -> None:
    assert table(["A", "LONGER"], [["xyz", None], ["q", True]]) == "A    LONGER\nxyz  -\nq    yes"
    assert when(1767225600000) == "2026-01-01 00:00:00Z" and when(None) == "-"


def test_flags_win_over_the_environment_over_the_credentials_file(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert resolve_target(None, None, env) == Target(DEFAULT_URL, None)
    write_credentials(credentials_path(env), "http://m:8070", "gdts_file")
    path = tmp_path / ".config" / "gdts" / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert resolve_target(None, None, env) == Target("http://m:8070", "gdts_file")
    env |= {"GDTS_URL": "http://env/", "GDTS_TOKEN": "gdts_env"}
    assert resolve_target(None, None, env) == Target("http://env", "gdts_env")
    assert resolve_target("http://flag", "gdts_flag", env) == Target("http://flag", "gdts_flag")
    # The file's token goes only to the manager it was made on.
    assert resolve_target("http://other", None, {"HOME": str(tmp_path)}).token is None
    assert resolve_target("http://m:8070/", None, {"HOME": str(tmp_path)}).token == "gdts_file"
    assert credentials_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path("/x/gdts/credentials")


def test_a_url_without_its_scheme_is_a_usage_error() -> None:
    with pytest.raises(CliError, match="'m:8070': must start with http:// or https://") as info:
        resolve_target("m:8070", None, {"HOME": "/nonexistent"})
    assert info.value.code == 2


def test_a_broken_credentials_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / ".config" / "gdts" / "credentials"
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    with pytest.raises(CliError, match="credentials: not valid JSON; run gdts login again"):
        resolve_target(None, None, {"HOME": str(tmp_path)})
