"""A run's directory is handed to the next run of its uid only as new: an untouched one is kept
(no mkdir and chown at each start), anything a run changed about it makes it anew."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gdts.worker.runuids import _make_fresh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives directories to other uids")

UID = 61980


def _is_new(path: Path) -> None:
    info = path.lstat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (UID, UID, 0o700)
    assert list(path.iterdir()) == []
    assert os.listxattr(path) == []


def test_a_missing_directory_is_made(tmp_path: Path) -> None:
    _make_fresh(tmp_path / "run", UID)
    _is_new(tmp_path / "run")


def test_an_untouched_directory_is_kept(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    _make_fresh(workdir, UID)
    inode = workdir.stat().st_ino
    _make_fresh(workdir, UID)
    assert workdir.stat().st_ino == inode
    _is_new(workdir)


def _leave_a_file(path: Path) -> None:
    (path / "sub").mkdir()
    (path / "sub" / "secret").write_text("x")


def _set_an_attribute(path: Path) -> None:
    os.setxattr(path, "user.note", b"left for the next run")


@pytest.mark.parametrize(
    "change",
    [
        _leave_a_file,
        lambda path: path.chmod(0o777),
        lambda path: os.chown(path, UID + 1, UID),
        lambda path: os.chown(path, UID, UID + 1),
        _set_an_attribute,
    ],
    ids=["files", "mode", "owner", "group", "xattr"],
)
def test_a_directory_a_run_changed_is_made_anew(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    workdir = tmp_path / "run"
    _make_fresh(workdir, UID)
    try:
        change(workdir)
    except OSError as exc:  # a file system without user xattrs
        pytest.skip(f"cannot change the directory this way here: {exc}")
    _make_fresh(workdir, UID)
    _is_new(workdir)


def test_a_file_in_its_place_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a directory")
    _make_fresh(tmp_path / "run", UID)
    _is_new(tmp_path / "run")
