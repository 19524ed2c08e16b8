"""Every example in ``http-examples/`` runs with httpyac against a live manager and worker, and
every ``client.test`` assertion in it passes.

No file leans on what another one left behind, as if each were run alone (as an IntelliJ user
runs one): one httpyac process runs several files in a row (a node start is half a second,
most of what a file costs), and what one file could leave to the next in that process is
checked for: a file reads a variable, named answer or ``client.global`` value only if no other
file defines it or it defined it itself first, and a file that logs in (the one thing that
fills httpyac's cookie jar) runs in a process of its own. The walk-through of the job
``http-example`` runs in the order ``http-examples/README.md`` gives, the other files after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gdts.secretbox import new_key_entry
from tests.support import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    ADMIN_USER,
    REPO_ROOT,
    Cluster,
    api_get,
    job_runs,
    wait_until,
)

pytestmark = pytest.mark.e2e

EXAMPLES = REPO_ROOT / "http-examples"
HTTPYAC = REPO_ROOT / ".venv" / "node" / "node_modules" / ".bin" / "httpyac"
# The files that share the job "http-example", in the README's order; job-log.http and
# job-output.http need a run of it, so the test waits for one after job-save.http.
WALK_THROUGH = (
    "job-save.http", "job-list.http", "job-log.http", "job-output.http", "job-kill.http",
    "job-delete.http",
)  # fmt: skip
WALK_THROUGH_JOB = "http-example"
# What httpyac exits with (its "testExitCode" hook): a failed assertion, a request not sent.
EXIT_TEST_FAILED = 20
EXIT_REQUEST_ERROR = 10


@dataclass(frozen=True)
class Outcome:
    """What one ``httpyac send --json`` run reported."""

    returncode: int
    report: dict[str, Any]
    stderr: str

    @property
    def files(self) -> set[str]:
        return {Path(request["fileName"]).name for request in self.report["requests"]}

    def requests_of(self, file_name: str) -> list[dict[str, Any]]:
        return [r for r in self.report["requests"] if Path(r["fileName"]).name == file_name]

    def failures(self) -> list[str]:
        """Every assertion that did not pass and every request that failed, readably."""
        found = []
        for request in self.report["requests"]:
            where = f"{Path(request['fileName']).name}: {request.get('name')!r}"
            for result in request.get("testResults") or []:
                if result["status"] != "SUCCESS":
                    error = (result.get("error") or {}).get("displayMessage", "")
                    found.append(f"{where}: {result['status']} {result['message']!r} {error}")
            if request["summary"]["failedTests"] or request["summary"]["erroredTests"]:
                found.append(f"{where}: answer {str(request.get('response'))[:1500]}")
        return found


async def httpyac(cwd: Path, file_names: list[str], variables: dict[str, str]) -> Outcome:
    """``httpyac send <file>... --all -e dev`` with ``--var``s (the files in the order given);
    its JSON report."""
    args = [str(HTTPYAC), "send", *file_names, "--all", "-e", "dev", "--json"]
    args += ["-o", "none", "--output-failed", "exchange"]
    for name, value in variables.items():
        args += ["--var", f"{name}={value}"]
    # The report goes to a file, not a pipe: node writes a pipe asynchronously and httpyac's
    # exit cuts what is still queued, so a report past 64 KiB (several files at once) arrived
    # cut at exactly 65,536 bytes.
    with tempfile.TemporaryFile() as report_file:
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env={**os.environ, "NO_COLOR": "1"},
            stdout=report_file, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 120)
        report_file.seek(0)
        stdout = report_file.read()
    try:
        report = json.loads(stdout)
    except ValueError:
        raise AssertionError(
            f"httpyac {' '.join(file_names)} exited {process.returncode} without a JSON report "
            f"({len(stdout)} bytes):\n{stdout.decode(errors='replace')[-3000:]}\n"
            f"{stderr.decode(errors='replace')[-3000:]}"
        ) from None
    assert process.returncode is not None
    return Outcome(process.returncode, report, stderr.decode(errors="replace"))


def expected_counts(path: Path) -> tuple[int, int]:
    """(requests, tests) the file holds: one request after each ``###`` separator, one test per
    ``client.test(`` call (the files call it unconditionally, once each)."""
    text = path.read_text()
    requests = len(re.findall(r"^###", text, flags=re.MULTILINE))
    tests = len(re.findall(r"\bclient\.test\(", text))
    return requests, tests


def check_outcome(outcome: Outcome, expected: dict[str, tuple[int, int]]) -> None:
    """Every file given ran (``expected``: file -> its requests and tests), every request was
    answered and every test passed."""
    names = " ".join(expected)
    failures = "\n".join(outcome.failures()) or outcome.stderr[-3000:]
    summary = outcome.report["summary"]
    assert outcome.returncode == 0, f"httpyac {names} exited {outcome.returncode}:\n{failures}"
    assert outcome.files == set(expected), outcome.files
    assert summary["failedTests"] == summary["erroredTests"] == 0, failures
    assert summary["failedRequests"] == summary["erroredRequests"] == 0, failures
    assert summary["skippedRequests"] == summary["skippedTests"] == 0, failures
    requests = sum(count for count, _ in expected.values())
    assert summary["totalRequests"] == summary["successRequests"] == requests, (names, summary)
    for file_name, (requests, tests) in expected.items():
        ran = [r["summary"] for r in outcome.requests_of(file_name)]
        assert len(ran) == requests, (file_name, ran)
        passed = sum(r["successTests"] for r in ran)
        assert passed == sum(r["totalTests"] for r in ran) == tests, (file_name, ran)


def logs_in(path: Path) -> bool:
    """Whether the file sends /auth/login, whose session cookie httpyac keeps for every later
    request of its process."""
    return re.search(r"^POST\s+\S*/auth/login\b", path.read_text(), flags=re.MULTILINE) is not None


def names_defined(text: str) -> dict[str, int]:
    """The names a file gives what later requests and scripts of a process can read (its
    variables ``@x = ...``, named answers ``# @name x`` and ``client.global`` values), each
    with where the file first defines it."""
    found: dict[str, int] = {}
    patterns = (r"^@(\w+)\s*=", r"^#\s*@name\s+(\w+)", r"client\.global\.set\(\s*[\"'](\w+)[\"']")
    for pattern in patterns:
        for match in re.finditer(pattern, text, flags=re.MULTILINE):
            found.setdefault(match[1], match.start())
    return found


def names_used(text: str) -> dict[str, int]:
    """The names a file reads (the identifiers in its ``{{...}}`` templates and ``{% ... %}``
    scripts, not properties, not words inside strings; the ``client.global`` values it gets),
    each with where the file first reads it."""
    found: dict[str, int] = {}
    strings = r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`(?:\\.|[^`\\])*`"
    for piece in re.finditer(r"\{\{(.*?)\}\}|\{%(.*?)%\}", text, flags=re.DOTALL):
        group = 1 if piece[1] is not None else 2
        code = re.sub(strings, lambda string: " " * len(string[0]), piece[group])
        for name in re.finditer(r"(?<![.\w$])([A-Za-z_$][\w$]*)", code):
            at = piece.start(group) + name.start()
            found[name[1]] = min(found.get(name[1], at), at)
    for match in re.finditer(r"client\.global\.get\(\s*[\"'](\w+)[\"']", text):
        found[match[1]] = min(found.get(match[1], match.start()), match.start())
    return found


def leaning(texts: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """file -> {name: the other files that define it} for every name a file reads that another
    file defines, unless the file defines it itself before it reads it: run after that other
    file in one process, it would read that file's value."""
    defined_by: dict[str, list[str]] = {}
    for file_name, text in texts.items():
        for name in names_defined(text):
            defined_by.setdefault(name, []).append(file_name)
    found: dict[str, dict[str, list[str]]] = {}
    for file_name, text in texts.items():
        own = names_defined(text)
        for name, at in names_used(text).items():
            others = [other for other in defined_by.get(name, []) if other != file_name]
            if others and not (name in own and own[name] < at):
                found.setdefault(file_name, {})[name] = others
    return found


def runs_of_files(order: list[str]) -> list[list[str]]:
    """The files in ``order``, cut into the httpyac processes that run them one after another:
    a file that logs in runs alone, the others in runs of consecutive files."""
    runs: list[list[str]] = []
    joinable = False
    for name in order:
        alone = logs_in(EXAMPLES / name)
        if joinable and not alone:
            runs[-1].append(name)
        else:
            runs.append([name])
        joinable = not alone
    return runs


@pytest.mark.asyncio
# About ten httpyac processes one after another, the longest running some 20 files (a second
# or two each for a process, a tenth or two for a file; more on a busy machine).
@pytest.mark.timeout(420)
async def test_every_http_example_passes_against_a_live_manager_and_worker(
    cluster: Cluster,
) -> None:
    keys = {"secretKeys": [new_key_entry("k1")]}  # secrets.http saves one
    manager, _ = await cluster.start_together(
        cluster.start_manager(**keys), cluster.start_worker("w1", **keys)
    )
    in_directory = sorted(path.name for path in EXAMPLES.glob("*.http"))
    assert set(WALK_THROUGH) <= set(in_directory)
    order = [*WALK_THROUGH, *(name for name in in_directory if name not in WALK_THROUGH)]
    variables = {
        "host": cluster.api,
        "token": ADMIN_TOKEN,
        "adminUser": ADMIN_USER,
        "adminPassword": ADMIN_PASSWORD,
    }

    async def has_run() -> bool:
        runs = await job_runs(cluster, WALK_THROUGH_JOB, limit=20)
        return any(run["status"] == "succeeded" for run in runs)

    ran: list[str] = []
    tests_passed = 0
    # job-save.http alone: the files after it need a run of the job it saves.
    for run in [order[:1], *runs_of_files(order[1:])]:
        if "job-list.http" in run:
            await wait_until(has_run, 30, f"a worker to run {WALK_THROUGH_JOB}", interval=0.5)
        outcome = await httpyac(EXAMPLES, run, variables)
        expected = {name: expected_counts(EXAMPLES / name) for name in run}
        for file_name, (requests, tests) in expected.items():
            assert requests > 0 and tests >= requests, f"{file_name}: a request without a test"
        check_outcome(outcome, expected)
        ran.extend(sorted(outcome.files))
        tests_passed += outcome.report["summary"]["successTests"]

    assert sorted(ran) == in_directory
    assert tests_passed == sum(expected_counts(EXAMPLES / name)[1] for name in in_directory)
    # The examples clean up after themselves: only their own leftovers would show here.
    leftovers = await job_names(cluster)
    assert not [name for name in leftovers if name.startswith("http-example")], leftovers
    assert "Traceback" not in manager.log_text(), manager.log_text()[-4000:]


async def job_names(cluster: Cluster) -> list[str]:
    return [job["name"] for job in await api_get(cluster.api, "/job/list")]


def test_no_example_reads_what_another_one_defines() -> None:
    """What makes running several files in one process the same as running each alone."""
    texts = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.http"))}
    found = leaning(texts)
    assert found == {}, f"files that would read what another file defines: {found}"
    assert {name for name in texts if logs_in(EXAMPLES / name)} >= {"auth-login.http"}
    # The check sees a leaning file: a variable, a named answer or a global of another file,
    # in a template or a script, unless the file defined it itself first; a property or a word
    # in a string of the same name is not one.
    defines = "@foo = 1\n# @name answer\nGET x\n\n> {%\nclient.global.set('kept', 1);\n%}\n"
    assert names_defined(defines).keys() == {"foo", "answer", "kept"}
    used = names_used("GET {{host}}/x?f={{foo}}&a={{ answer.data }}\n")
    assert used.keys() >= {"host", "foo", "answer"}
    script = '> {%\nvar n = answer.id + client.global.get("kept"); x.foo; "answer";\n%}\n'
    assert names_used(script).keys() >= {"answer", "kept"} and "foo" not in names_used(script)
    assert "answer" not in names_used("> {%\nclient.assert(r.answer, 'no answer');\n%}\n")
    reads = "GET {{foo}}/{{answer.id}}\n\n> {%\nclient.global.get('kept');\n%}\n"
    own_first = "# @name answer\nGET y\n\n###\nGET {{answer.id}}\n"
    own_later = "GET {{answer.id}}\n\n###\n# @name answer\nGET y\n"
    assert leaning({"a": defines, "b": reads, "c": own_first, "d": own_later}) == {
        "b": {"foo": ["a"], "answer": ["a", "c", "d"], "kept": ["a"]},
        "d": {"answer": ["a", "c"]},
    }


def test_the_dev_environment_names_host_token_and_admin_login() -> None:
    environments = json.loads((EXAMPLES / "http-client.env.json").read_text())
    assert set(environments["dev"]) >= {"host", "token", "adminUser", "adminPassword"}
    assert environments["dev"]["host"] == "http://127.0.0.1:8070"


@pytest.mark.asyncio
async def test_a_failed_assertion_or_an_unsent_request_fails_the_httpyac_run(
    tmp_path: Path,
) -> None:
    """The check above would notice: httpyac reports a failed ``client.test`` in its exit code
    and its JSON summary, and so does a request that could not be sent."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"errno": 0, "msg": "success", "data": "hello"})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address, port = runner.addresses[0][:2]
    host = f"http://{address}:{port}"
    (tmp_path / "http-client.env.json").write_text(json.dumps({"dev": {"host": "unset"}}))
    (tmp_path / "failing.http").write_text(
        "### passes\nGET {{host}}/hello\n\n"
        '> {%\nclient.test("passes", function() {\n'
        '  client.assert(response.body.data === "hello", "no hello");\n});\n%}\n\n'
        "### fails\nGET {{host}}/hello\n\n"
        '> {%\nclient.test("fails", function() {\n'
        '  client.assert(response.body.data === "goodbye", "expected goodbye");\n});\n%}\n'
    )
    (tmp_path / "unsent.http").write_text(
        "### needs a variable nobody set\nGET {{host}}/hello?who={{nobody}}\n\n"
        '> {%\nclient.test("never runs", function() {\n  client.assert(true, "");\n});\n%}\n'
    )
    try:
        failing = await httpyac(tmp_path, ["failing.http"], {"host": host})
        unsent = await httpyac(tmp_path, ["unsent.http"], {"host": host})
    finally:
        await runner.cleanup()

    assert failing.returncode == EXIT_TEST_FAILED, failing
    assert failing.report["summary"]["successTests"] == 1
    assert failing.report["summary"]["failedTests"] == 1
    assert any("expected goodbye" in failure for failure in failing.failures())
    with pytest.raises(AssertionError, match="exited 20"):
        check_outcome(failing, {"failing.http": expected_counts(tmp_path / "failing.http")})

    assert unsent.returncode == EXIT_REQUEST_ERROR, unsent
    with pytest.raises(AssertionError):
        check_outcome(unsent, {"unsent.http": expected_counts(tmp_path / "unsent.http")})
