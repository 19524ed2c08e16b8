"""gdts.worker.runas: who jobs run as, decided at start from runAs, allowRoot and the worker's
own uid. Users come from this host's real password database (root and nobody exist everywhere
GDTS runs); the worker's uid is an argument, so the non-root cases run as root too."""

from __future__ import annotations

import logging
import pwd
from pathlib import Path

import pytest

from gdts.errors import ConfigError
from gdts.worker.runas import JobUser, job_user, lookup_user, workdir_for

NOBODY = pwd.getpwnam("nobody")
SOME_UID = 4321  # a non-root worker that is neither root nor nobody

USER = JobUser(name="alice", uid=1000, gid=1000, groups=(1000, 27), home="/home/alice", workdir="/")


# --- the user from the password database --------------------------------------------------------


def test_lookup_finds_the_users_ids_groups_and_home() -> None:
    user = lookup_user("nobody")
    assert (user.name, user.uid, user.gid) == ("nobody", NOBODY.pw_uid, NOBODY.pw_gid)
    assert user.home == NOBODY.pw_dir
    assert user.groups[0] == NOBODY.pw_gid  # the primary group leads, as with initgroups
    assert 0 not in user.groups  # none of root's groups come along
    assert user.switch


def test_lookup_of_root_starts_jobs_in_its_home() -> None:
    assert lookup_user("root").workdir == pwd.getpwnam("root").pw_dir


@pytest.mark.parametrize("name", ["gdts-no-such-user", "nobody\x00", "0"])
def test_lookup_of_an_unknown_user_is_a_config_error_naming_runas(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^config runAs: no such user .* on this host$"):
        lookup_user(name)


def test_workdir_is_the_home_only_when_it_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert workdir_for(str(tmp_path)) == str(tmp_path)
    assert workdir_for(str(tmp_path / "file")) == "/"
    assert workdir_for(str(tmp_path / "missing")) == "/"
    assert workdir_for("") == "/"


# --- how a job process becomes the user ---------------------------------------------------------


def test_env_names_the_user_and_keeps_everything_else() -> None:
    base = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "PATH": "/bin", "GDTS_X": "1"}
    assert USER.env(base) == {
        "HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "PATH": "/bin", "GDTS_X": "1"
    }  # fmt: skip
    assert base["HOME"] == "/root"  # the worker's own environment is left alone


def test_spawn_options_set_uid_gid_and_every_group() -> None:
    assert USER.spawn_options() == {
        "cwd": "/", "user": 1000, "group": 1000, "extra_groups": [1000, 27]
    }  # fmt: skip


def test_spawn_options_without_a_switch_only_move_to_the_workdir() -> None:
    user = JobUser("alice", 1000, 1000, (1000,), "/home/alice", "/home/alice", switch=False)
    assert user.spawn_options() == {"cwd": "/home/alice"}


# --- whether the worker may start, and as whom its jobs run -------------------------------------


def test_a_root_worker_with_neither_runas_nor_allowroot_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"^config runAs: this worker runs as root.*set runAs.*"
                       r"allowRoot: true if running jobs as root is intended\)$"):  # fmt: skip
        job_user("", allow_root=False, euid=0)


def test_a_root_worker_with_allowroot_runs_jobs_as_itself_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gdts.worker.runas"):
        assert job_user("", allow_root=True, euid=0) is None
    assert [r.getMessage() for r in caplog.records] == [
        "jobs run as root: allowRoot is true and runAs is not set"
    ]


def test_a_root_worker_with_runas_switches_to_that_user(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gdts.worker.runas"):
        user = job_user("nobody", allow_root=False, euid=0)
    assert user is not None and user.uid == NOBODY.pw_uid and user.switch
    assert f"jobs run as nobody (uid {NOBODY.pw_uid}" in caplog.text
    # allowRoot changes nothing once runAs names an unprivileged user, and warns of nothing.
    assert job_user("nobody", allow_root=True, euid=0) == user
    assert "WARNING" not in caplog.text


def test_runas_naming_root_needs_allowroot(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"^config runAs: 'root' is root \(uid 0\).*allowRoot"):
        job_user("root", allow_root=False, euid=0)
    with caplog.at_level(logging.WARNING, logger="gdts.worker.runas"):
        user = job_user("root", allow_root=True, euid=0)
    assert user is not None and user.uid == 0 and not user.switch  # already root
    assert "jobs run as root: runAs names 'root'" in caplog.text


def test_a_non_root_worker_runs_jobs_as_itself() -> None:
    assert job_user("", allow_root=False, euid=SOME_UID) is None
    assert job_user("", allow_root=True, euid=SOME_UID) is None


def test_a_non_root_worker_may_name_its_own_user_and_switches_nothing() -> None:
    user = job_user("nobody", allow_root=False, euid=NOBODY.pw_uid)
    assert user is not None and not user.switch
    assert user.env({})["HOME"] == NOBODY.pw_dir


@pytest.mark.parametrize("run_as", ["nobody", "root"])
def test_a_non_root_worker_cannot_become_another_user(run_as: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"^config runAs: this worker runs as uid {SOME_UID} and cannot start jobs as "
        rf"'{run_as}' .*start the worker as root",
    ):
        job_user(run_as, allow_root=True, euid=SOME_UID)


def test_an_unknown_user_fails_before_anything_else() -> None:
    with pytest.raises(ConfigError, match="no such user 'ghost-of-gdts'"):
        job_user("ghost-of-gdts", allow_root=True, euid=0)
