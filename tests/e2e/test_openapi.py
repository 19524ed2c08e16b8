"""``/openapi.json`` is accurate: schemathesis fuzzes the live manager (with a token) from it and
finds no 5xx, no undocumented status and no answer outside the schema."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gdts.secretbox import new_key_entry
from tests.support import ADMIN_TOKEN, Cluster, api_call

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        # Data the schema forbids is refused, and methods it does not list get 405.
        "negative_data_rejection",
        "unsupported_method",
    )
)


async def test_schemathesis_finds_nothing_wrong_with_the_live_api(cluster: Cluster) -> None:
    # With a secret key, as a manager is meant to run (without one /secret/save says 503).
    manager = await cluster.start_manager(secretKeys=[new_key_entry("k1")])
    spec = await api_json(cluster.api, "/openapi.json")
    operations = sum(len(methods) for methods in spec["paths"].values())
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", cluster.api + "/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25", "--seed", "20261122", "--workers", "1",
        "--request-timeout", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=cluster.stack.tmp, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    report = output.decode(errors="replace")
    failures = report.find("FAILURES")
    assert process.returncode == 0, report[failures:][:8000] if failures >= 0 else report[-6000:]
    # Every operation but the schema's own URL, which schemathesis leaves out.
    assert f"Tested: {operations - 1}" in report, report[-3000:]
    assert "Traceback" not in manager.log_text()


async def api_json(base: str, path: str) -> dict:
    status, body = await api_call(base, "GET", path)
    assert status == 200
    return body
