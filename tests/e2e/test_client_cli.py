"""The command-line client as operators use it: ``gdts job ...``, ``worker ls``, ``login``,
``export`` and ``apply`` run as subprocesses against a live manager (and worker)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from tests.support import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    REPO_ROOT,
    Cluster,
    api_get,
    api_post,
    save_job,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
NEVER = "0 0 1 1 *"  # a schedule that does not fire during a test


def client_env(cluster: Cluster, home: Path, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDTS_", "XDG_"))}
    env.update(HOME=str(home), GDTS_URL=cluster.api)
    if token is not None:
        env["GDTS_TOKEN"] = token
    return env


async def gdts(
    env: dict[str, str], *args: str, stdin: str | None = None, limit_s: float = 30
) -> tuple[int, str, str]:
    """Run ``python -m gdts ARGS``; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gdts", *args, cwd=REPO_ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(
        process.communicate(None if stdin is None else stdin.encode()), limit_s
    )
    assert process.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return process.returncode, out.decode(), err.decode()


async def test_job_commands_and_their_errors(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_manager()
    env = client_env(cluster, tmp_path)
    job_file = tmp_path / "hello.yaml"
    job_file.write_text(f"name: hello\ncommand: echo hi\ncronExpr: '{NEVER}'\ntags: [demo]\n")

    assert await gdts(env, "job", "save", "-f", str(job_file)) == (0, "created hello\n", "")
    assert (await gdts(env, "job", "save", "-f", str(job_file)))[1] == "changed hello\n"
    code, out, _ = await gdts(env, "job", "ls")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["NAME", "SCHEDULE", "STATE"]
    assert out.splitlines()[1].startswith("hello") and "enabled" in out
    code, out, _ = await gdts(env, "job", "ls", "--json")
    assert code == 0 and [j["name"] for j in json.loads(out)] == ["hello"]
    code, out, _ = await gdts(env, "job", "get", "hello")
    assert code == 0 and json.loads(out)["command"] == "echo hi"
    code, out, _ = await gdts(env, "job", "get", "hello", "-o", "yaml")
    assert code == 0 and "  - name: hello\n    command: echo hi\n" in out

    assert (await gdts(env, "job", "disable", "hello"))[:2] == (0, "paused hello\n")
    assert (await api_get(cluster.api, "/job/list"))[0]["enabled"] is False
    assert (await gdts(env, "job", "enable", "hello"))[:2] == (0, "enabled hello\n")
    assert (await api_get(cluster.api, "/job/list"))[0]["enabled"] is True
    assert (await gdts(env, "job", "kill", "hello"))[0] == 0
    assert (await gdts(env, "job", "log", "hello"))[:2] == (0, "")

    # Errors: the API's message and field, exit 1, no traceback (gdts() checks).
    code, _, err = await gdts(env, "job", "get", "nope")
    assert code == 1 and err == "gdts: name: no job 'nope'\n"
    code, _, err = await gdts(env, "job", "run", "nope")
    assert code == 1 and err.startswith("gdts: name: ") and "nope" in err
    code, _, err = await gdts(env, "job", "log", "nope")
    assert code == 1 and "no job 'nope'" in err
    job_file.write_text("name: hello\ncommand: echo hi\ncronExpr: '*/5 * * * *'\ntimeout: -1\n")
    code, _, err = await gdts(env, "job", "save", "-f", str(job_file))
    assert code == 1 and err.startswith(f"gdts: {job_file}:4: job 'hello': timeout: "), err
    code, _, err = await gdts(client_env(cluster, tmp_path, token="gdts_wrong"), "job", "ls")
    assert code == 1 and err.startswith("gdts: ") and "token" in err
    code, _, err = await gdts({**env, "GDTS_URL": "http://127.0.0.1:1"}, "worker", "ls")
    assert code == 1 and "cannot reach the manager at http://127.0.0.1:1" in err
    assert (await gdts(env, "job", "frobnicate"))[0] == 2
    assert (await gdts(env, "job", "log"))[0] == 2  # the name is missing
    code, _, err = await gdts(env, "job", "log", "hello", "-n", "0")
    assert code == 2 and "argument -n: must be between 1 and 1000, got 0" in err

    assert (await gdts(env, "job", "rm", "hello"))[:2] == (0, "deleted hello\n")
    assert await api_get(cluster.api, "/job/list") == []
    assert (await gdts(env, "job", "rm", "hello"))[0] == 1


async def test_every_command_has_help_with_examples(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDTS_")}
    commands = [
        *(["job", c] for c in ("ls", "get", "save", "rm", "run", "kill", "enable", "disable")),
        ["job", "log"], ["worker", "ls"], ["login"], ["export"], ["apply"],
    ]  # fmt: skip
    results = await asyncio.gather(*(gdts(env, *c, "--help") for c in commands))
    for command, (code, out, _) in zip(commands, results, strict=True):
        assert code == 0 and "examples:\n  gdts " in out and "exit status:" in out, command


async def test_run_wait_log_follow_and_worker_ls(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_together(
        cluster.start_manager(), cluster.start_worker("w1", liveOutputAfter=0)
    )
    env = client_env(cluster, tmp_path)
    code, out, _ = await gdts(env, "worker", "ls")
    assert code == 0 and out.splitlines()[1].startswith("w1 ")

    await save_job(cluster.api, "fails", "echo about to fail; exit 3", NEVER)
    code, out, err = await gdts(env, "job", "run", "fails", "--wait")
    assert (code, out) == (3, "about to fail\n") and "failed (exit 3)" in err
    await save_job(cluster.api, "ok", "echo fine", NEVER)
    code, out, err = await gdts(env, "job", "run", "ok", "--wait")
    assert (code, out) == (0, "fine\n") and "succeeded (exit 0)" in err
    await save_job_fields(cluster.api, name="retried", command="echo try; exit 2",
                          cronExpr=NEVER, retries=1, retryBackoff=0.1)  # fmt: skip
    code, out, err = await gdts(env, "job", "run", "retried", "--wait")
    assert (code, out) == (2, "try\ntry\n") and "attempt 2 follows" in err
    await save_job_fields(cluster.api, name="slow", command="sleep 5", cronExpr=NEVER,
                          timeout=0.5)  # fmt: skip
    code, out, err = await gdts(env, "job", "run", "slow", "--wait")
    assert code == 124 and ": timeout" in err
    code, out, _ = await gdts(env, "job", "run", "ok")
    assert code == 0 and out.startswith("asked a worker to run ok (planTime ")
    code, out, _ = await gdts(env, "job", "log", "fails", "-n", "5")
    assert code == 0 and "attempt 1  manual  on w1  failed (exit 3)" in out
    assert out.endswith("about to fail\n")

    # --follow: the newest run, then a new one live while it goes on (it waits for a file).
    gate = tmp_path / "gate"
    command = f"echo started; while [ ! -e {gate} ]; do sleep 0.05; done; echo ended"
    await save_job(cluster.api, "slow", command, NEVER)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gdts", "job", "log", "fails", "-n", "1", "--follow",
        cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    follow = _Follower(process)
    try:
        await follow.until("about to fail\n")
        await api_post(cluster.api, "/job/save", job=json.dumps(
            {"name": "fails", "command": command, "cronExpr": NEVER}))  # fmt: skip
        await api_post(cluster.api, "/job/run", name="fails")
        await follow.until("started\n")
        assert "running" in follow.text and "ended" not in follow.text
        gate.touch()
        await follow.until("--- succeeded (exit 0)")
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 130
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert follow.text.count("started\n") == 1  # followed live, not printed again once stored
    assert process.stderr is not None and b"Traceback" not in await process.stderr.read()


class _Follower:
    """What a running ``gdts job log --follow`` printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.text = ""

    async def until(self, wanted: str) -> None:
        assert self.process.stdout is not None

        async def seen() -> bool:
            if wanted in self.text:
                return True
            chunk = await asyncio.wait_for(self.process.stdout.read(4096), 20)
            self.text += chunk.decode()
            return wanted in self.text

        await wait_until(seen, 20, f"{wanted!r} from gdts job log --follow")


async def test_login_stores_a_private_token_that_later_commands_use(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.start_manager()
    env = client_env(cluster, tmp_path, token=None)
    code, _, err = await gdts(env, "login", "--username", "admin", "--password-stdin",
                              stdin="wrong password\n")  # fmt: skip
    assert code == 1 and err.startswith("gdts: ") and "password" in err
    code, out, _ = await gdts(env, "login", "--username", "admin", "--password-stdin",
                              "--token-name", "laptop", stdin=f"{ADMIN_PASSWORD}\n")  # fmt: skip
    assert code == 0 and f"logged in to {cluster.api} as admin" in out
    path = tmp_path / ".config" / "gdts" / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["url"] == cluster.api and stored["token"].startswith("gdts_")
    stored_id = out.split("(id ")[1].split(")")[0]
    tokens = await api_get(cluster.api, "/token/list")
    assert [t["name"] for t in tokens if t.get("id") == stored_id] == ["laptop"]

    await save_job(cluster.api, "mine", "true", NEVER)
    code, out, _ = await gdts(env, "job", "ls")  # no GDTS_TOKEN: the stored one
    assert code == 0 and "mine" in out
    # The stored token belongs to its URL: another manager gets no token from it.
    code, _, err = await gdts({**env, "GDTS_URL": cluster.api + "/"}, "job", "ls")
    assert code == 0
    code, _, err = await gdts(env, "job", "ls", "--url", "http://localhost:1")
    assert code == 1


JOBS = f"""\
jobs:
  - name: extract
    command: ./extract.sh
    cronExpr: '{NEVER}'
  - name: load
    command: |
      ./load.sh
      ./report.sh
    cronExpr: '{NEVER}'
    timeout: 60
    parents: [extract]
  - name: ping
    type: http
    cronExpr: '{NEVER}'
    http: {{url: 'http://127.0.0.1:9/'}}
"""


async def test_export_and_apply(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.start_manager()
    env = client_env(cluster, tmp_path)
    await save_job(cluster.api, "legacy", "true", NEVER)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(JOBS)

    code, out, _ = await gdts(env, "apply", "-f", str(jobs), "--dry-run")
    assert code == 0 and out.splitlines()[:3] == ["create extract", "create load", "create ping"]
    assert "dry run: nothing changed" in out
    assert [j["name"] for j in await api_get(cluster.api, "/job/list")] == ["legacy"]

    code, out, _ = await gdts(env, "apply", "-f", str(jobs))
    assert code == 0 and "created extract\ncreated load\ncreated ping\n" in out
    code, out, _ = await gdts(env, "apply", "-f", str(jobs))
    assert (code, out) == (0, "nothing to change (3 jobs as in the file)\n")

    code, exported, _ = await gdts(env, "export")
    assert code == 0
    assert exported.startswith("jobs:\n  - name: extract\n    command: ./extract.sh\n")
    assert "  - name: load\n    command: |\n      ./load.sh\n      ./report.sh\n" in exported
    assert "owner" not in exported and "lastRun" not in exported
    assert exported == (await gdts(env, "export"))[1]  # stable
    (tmp_path / "exported.yaml").write_text(exported)
    code, out, _ = await gdts(env, "apply", "-f", str(tmp_path / "exported.yaml"))
    assert (code, out) == (0, "nothing to change (4 jobs as in the file)\n")

    # A change, a job gone from the file: --prune deletes it, without it it stays.
    jobs.write_text(JOBS.replace("timeout: 60", "timeout: 90").split("  - name: ping")[0])
    code, out, _ = await gdts(env, "apply", "-f", str(jobs))
    assert out.splitlines()[:2] == ["change load: timeout", "0 to create, 1 to change, 0 to "
                                    "delete, 1 unchanged"]  # fmt: skip
    assert (await gdts(env, "apply", "-f", str(jobs), "--prune", "--dry-run"))[1].startswith(
        "delete legacy\ndelete ping\n"
    )
    code, out, _ = await gdts(env, "apply", "-f", str(jobs), "--prune")
    assert code == 0 and "deleted legacy\ndeleted ping\n" in out
    listed = await api_get(cluster.api, "/job/list")
    assert [(j["name"], j["timeout"]) for j in listed] == [("extract", None), ("load", 90)]
    code, out, _ = await gdts(env, "apply", "-f", str(jobs), "--prune")
    assert (code, out) == (0, "nothing to change (2 jobs as in the file)\n")

    # A bad file: the line and the field, from the client's check or the API's answer.
    jobs.write_text(JOBS.replace("timeout: 60", "timeout: sixty"))
    code, out, err = await gdts(env, "apply", "-f", str(jobs))
    assert code == 1 and out == ""
    assert err.startswith(f"gdts: {jobs}:10: job 'load': timeout: "), err
    kept = JOBS.split("  - name: ping")[0]
    jobs.write_text(kept.replace("parents: [extract]", "parents: [extract, nosuch]"))
    code, _, err = await gdts(env, "apply", "-f", str(jobs))
    assert code == 1 and err == f"gdts: {jobs}:11: job 'load': parents: no job is named 'nosuch'\n"
    jobs.write_text("jobs:\n  - name: x\n    command: true\n    cronExpr: '* * * * *'\n"
                    "    cronExpr: '0 * * * *'\n")  # fmt: skip
    code, _, err = await gdts(env, "apply", "-f", str(jobs))
    assert code == 1 and err == f"gdts: {jobs}:5: cronExpr: given twice (first on line 4)\n"
    assert [j["name"] for j in await api_get(cluster.api, "/job/list")] == ["extract", "load"]

    # Teams: export --team writes one team's jobs; apply --prune --team prunes only in it.
    await api_post(cluster.api, "/team/save", name="data")
    teamed = tmp_path / "data.yaml"
    teamed.write_text("jobs:\n  - name: nightly\n    command: ./nightly.sh\n"
                      "    cronExpr: '0 3 * * *'\n    team: data\n")  # fmt: skip
    code, out, _ = await gdts(env, "apply", "-f", str(teamed), "--team", "data", "--prune")
    assert code == 0 and "1 to create, 0 to change, 0 to delete" in out, out
    code, exported, _ = await gdts(env, "export", "--team", "data")
    assert code == 0 and "name: nightly" in exported and "team: data" in exported
    assert "name: extract" not in exported
    code, out, _ = await gdts(env, "apply", "-f", str(teamed), "--team", "data", "--prune")
    assert (code, out) == (0, "nothing to change (1 jobs as in the file)\n")
    assert [j["name"] for j in await api_get(cluster.api, "/job/list")] == [
        "extract", "load", "nightly",
    ]  # fmt: skip
