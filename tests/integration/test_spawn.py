"""The spawner gives a job exactly the identity a setgroups/setgid/setuid child would have, and
the worker's own thread gets its identity back: through posix_spawn (the default) and through
the subprocess fallback alike."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gdts.worker.runas import JobUser
from gdts.worker.spawn import Spawner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can start a process as another user"
)

# Not an account: the spawner must not depend on the password database.
USER = JobUser(
    name="gdts-spawn-test", uid=61990, gid=61991, groups=(61991, 61992, 61993), home="/",
    workdir="/",
)  # fmt: skip
PROBE = (
    "grep -E '^(Uid|Gid|Groups|CapPrm|CapEff|CapAmb|SigIgn|SigBlk):' "
    "/proc/self/status; read -r _ _ _ _ _ sid _ < /proc/$$/stat; echo sid=$sid pid=$$; "
    "echo cwd=$PWD; ls /proc/self/fd"
)


def _spawners() -> list[Spawner]:
    return [Spawner(), Spawner(posix_spawn=False)]


def _run(spawner: Spawner, user: JobUser | None, command: str = PROBE) -> tuple[int, str]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        process = spawner.start(
            ["/bin/bash", "-c", command], {"PATH": "/usr/bin:/bin"}, write_fd, user
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as output:
        text = output.read().decode()
    return process.wait(), text


def _fields(text: str) -> dict[str, list[str]]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value.split() for key, value in pairs}


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the job's user can enter (pytest's tmp_path sits in a root-only one)."""
    path = Path(tempfile.mkdtemp(prefix="gdts-spawn-"))
    path.chmod(0o755)
    yield path
    path.rmdir()


@pytest.mark.parametrize("spawner", _spawners(), ids=["posix_spawn", "subprocess"])
def test_a_job_holds_the_users_ids_groups_and_nothing_of_root(
    spawner: Spawner, open_dir: Path
) -> None:
    tmp_path = open_dir
    user = dataclasses.replace(USER, workdir=str(tmp_path))
    before = os.getresuid(), os.getresgid(), sorted(os.getgroups())
    code, text = _run(spawner, user)
    assert code == 0, text
    status = _fields(text)
    assert status["Uid"] == [str(USER.uid)] * 4  # real, effective, saved, filesystem
    assert status["Gid"] == [str(USER.gid)] * 4
    assert sorted(status["Groups"]) == sorted(str(g) for g in USER.groups)
    for capabilities in ("CapPrm", "CapEff", "CapAmb"):
        assert int(status[capabilities][0], 16) == 0, capabilities
    # The worker ignores SIGPIPE; the job must not ignore any of signals 1-31. (glibc's
    # posix_spawn leaves its own two internal real-time signals, 32 and 33, ignored.)
    assert int(status["SigIgn"][0], 16) & 0x7FFFFFFF == 0
    assert int(status["SigBlk"][0], 16) == 0
    lines = text.splitlines()
    sid_line = next(line for line in lines if line.startswith("sid="))
    sid, pid = (part.split("=")[1] for part in sid_line.split())
    assert sid == pid  # a session (and process group) of its own
    assert f"cwd={tmp_path}" in lines
    # 0, 1, 2 and the one ls opened to list them: nothing else of the worker's leaks in.
    fds = lines[lines.index(f"cwd={tmp_path}") + 1 :]
    assert fds == ["0", "1", "2", "3"]
    assert (os.getresuid(), os.getresgid(), sorted(os.getgroups())) == before


@pytest.mark.parametrize("spawner", _spawners(), ids=["posix_spawn", "subprocess"])
def test_without_a_user_the_job_is_the_workers_own(spawner: Spawner) -> None:
    code, text = _run(spawner, None)
    assert code == 0, text
    assert _fields(text)["Uid"] == [str(os.getuid())] * 4


def test_a_failed_start_gives_the_worker_its_identity_back() -> None:
    spawner = Spawner()
    before = os.getresuid(), os.getresgid(), sorted(os.getgroups())
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with pytest.raises(FileNotFoundError):
            spawner.start(["/nonexistent/bash", "-c", "true"], {}, write_fd, USER)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert (os.getresuid(), os.getresgid(), sorted(os.getgroups())) == before


def test_a_working_directory_the_user_cannot_enter_is_named(tmp_path: Path) -> None:
    """The job's user enters its directory itself: a start that cannot says where."""
    user = dataclasses.replace(USER, workdir=str(tmp_path))  # below a root-only directory
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with pytest.raises(PermissionError, match=f"as uid {USER.uid} in {tmp_path}"):
            Spawner().start(["/bin/bash", "-c", "true"], {}, write_fd, user)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_other_threads_keep_their_identity_while_a_job_starts() -> None:
    """The switch is the spawning thread's alone: a thread reading its ids all along never
    sees the run's."""
    spawner = Spawner()
    seen: set[tuple[int, int, int]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(os.getresuid())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(50):
            assert _run(spawner, USER, "true")[0] == 0
    finally:
        stop.set()
        watcher.join()
    assert seen == {os.getresuid()}
