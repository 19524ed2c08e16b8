"""gdts.worker.outcome: a job's success rules decide succeeded vs failed."""

from __future__ import annotations

from typing import Any

import pytest

from gdts.job import Job
from gdts.runrecord import RunStatus
from gdts.worker.outcome import decide


def shell(**fields: Any) -> Job:
    return Job.from_api({"name": "s", "command": "true", "cronExpr": "@daily", **fields})


def http(**target: Any) -> Job:
    return Job.from_api(
        {"name": "h", "type": "http", "cronExpr": "@daily", "http": {"url": "http://h/", **target}}
    )


@pytest.mark.parametrize(
    ("job", "result", "status", "err"),
    [
        (shell(), {"exit_code": 0}, RunStatus.SUCCEEDED, ""),
        (shell(), {"exit_code": 1}, RunStatus.FAILED, ""),
        (shell(), {"exit_code": None}, RunStatus.FAILED, ""),
        (shell(expectedExitCode=3), {"exit_code": 3}, RunStatus.SUCCEEDED, ""),
        (shell(expectedExitCode=3), {"exit_code": 0}, RunStatus.FAILED,
         "exit status 0, expected 3"),
        (shell(outputContains="OK"), {"exit_code": 0, "output": "all OK\n"}, RunStatus.SUCCEEDED,
         ""),
        (shell(outputContains="OK"), {"exit_code": 0, "output": "ok\n"}, RunStatus.FAILED,
         "output does not contain 'OK'"),
        (shell(outputNotContains="ERROR"), {"exit_code": 0, "output": "ERROR: x"},
         RunStatus.FAILED, "output contains 'ERROR'"),
        (shell(outputNotContains="ERROR"), {"exit_code": 0, "output": "fine"}, RunStatus.SUCCEEDED,
         ""),
        (shell(outputContains="OK"), {"exit_code": 2, "output": "OK"}, RunStatus.FAILED, ""),
        (shell(timeout=1.5), {"exit_code": None, "killed": True, "timed_out": True},
         RunStatus.TIMEOUT, "timed out after 1.5 s"),
        (shell(), {"exit_code": None, "killed": True, "output": "OK"}, RunStatus.KILLED, ""),
        (http(), {"http_status": 204}, RunStatus.SUCCEEDED, ""),
        (http(), {"http_status": 500}, RunStatus.FAILED, "HTTP status 500, expected 2xx"),
        (http(), {"http_status": None}, RunStatus.FAILED, "no response, expected 2xx"),
        (http(expectedStatus=404), {"http_status": 404}, RunStatus.SUCCEEDED, ""),
        (http(expectedStatus=404), {"http_status": 200}, RunStatus.FAILED,
         "HTTP status 200, expected 404"),
    ],
)  # fmt: skip
def test_success_rules(job: Job, result: dict[str, Any], status: RunStatus, err: str) -> None:
    outcome = decide(job, output=result.pop("output", ""), **result)
    assert (outcome.status, outcome.err) == (status, err)


def test_http_output_rules_apply_after_the_status() -> None:
    job = Job.from_api(
        {
            "name": "h",
            "type": "http",
            "cronExpr": "@daily",
            "outputContains": '"healthy": true',
            "http": {"url": "http://h/"},
        }
    )
    body = 'HTTP/1.1 200 OK\n\n{"healthy": false}'
    assert decide(job, output=body, http_status=200).status is RunStatus.FAILED
