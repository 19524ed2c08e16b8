"""/openapi.json derives from the model and the endpoint table: nothing in it is a hand copy."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gdts import jobfields
from gdts.job import Job
from gdts.jobfields import JOB_FIELDS, STATUS_FIELDS, JobField
from gdts.manager.endpoints import ENDPOINTS
from gdts.manager.openapi import build_spec


def answer(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    response = spec["paths"][path][method]["responses"]["200"]
    data: dict[str, Any] = response["content"]["application/json"]["schema"]["properties"]["data"]
    return data


def test_every_job_field_is_in_the_spec_with_its_type_and_choices() -> None:
    spec = build_spec()
    job = answer(spec, "/job/enable", "post")["properties"]
    assert list(job) == [f.name for f in JOB_FIELDS]
    for field in JOB_FIELDS:
        kind = job[field.name]["type"]
        assert kind == ([field.kind, "null"] if field.nullable else field.kind), field.name
        assert job[field.name].get("enum", []) == list(field.choices), field.name
    assert job["concurrencyPolicy"]["enum"] == ["forbid", "allow", "replace"]
    listed = answer(spec, "/job/list", "get")["items"]["properties"]
    assert list(listed) == [f.name for f in (*JOB_FIELDS, *STATUS_FIELDS)]


def test_the_fields_a_job_answers_with_are_the_specs() -> None:
    shown = Job.create("a", "true", "* * * * *").to_api()
    job = answer(build_spec(), "/job/clone", "post")
    assert set(shown) == set(job["properties"])
    assert set(job["required"]) <= set(shown)


def test_a_new_job_field_appears_in_the_spec_without_touching_openapi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = JobField("priority", "integer", 0, "Runs first when workers are busy.")
    monkeypatch.setattr(jobfields, "JOB_FIELDS", (*JOB_FIELDS, extra))
    spec = build_spec()
    for path, method in (("/job/enable", "post"), ("/job/clone", "post")):
        assert answer(spec, path, method)["properties"]["priority"] == {
            "type": "integer",
            "description": "Runs first when workers are busy.",
        }
    assert "priority" in answer(spec, "/job/list", "get")["items"]["properties"]


def test_every_endpoint_of_the_table_is_described() -> None:
    paths = build_spec()["paths"]
    for endpoint in ENDPOINTS:
        assert endpoint.method.lower() in paths[endpoint.path], endpoint.path


def test_a_host_group_is_an_object_of_strings_and_the_list_says_its_live_workers() -> None:
    spec = build_spec()
    job = answer(spec, "/job/save", "post")["anyOf"][0]["properties"]
    assert job["hostGroup"]["type"] == ["object", "null"]
    assert job["hostGroup"]["additionalProperties"] == {"type": "string"}
    assert job["routing"]["enum"] == ["hash", "random", "roundRobin", "weighted", "leastBusy"]
    # Only the fields that say so hold one type of value.
    assert "additionalProperties" not in job["http"]
    listed = answer(spec, "/job/list", "get")["items"]["properties"]
    assert listed["liveWorkers"]["type"] == ["integer", "null"]


def test_the_worker_list_shows_labels_weight_and_busy() -> None:
    worker = answer(build_spec(), "/worker/list", "get")["items"]
    assert worker["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert worker["properties"]["weight"]["type"] == "integer"
    assert worker["properties"]["busy"]["type"] == "integer"
    assert {"id", "labels", "weight", "busy", "running"} <= set(worker["required"])


def test_parents_and_children_are_lists_of_names_and_their_modes_are_choices() -> None:
    job = answer(build_spec(), "/job/save", "post")["anyOf"][0]["properties"]
    for side in ("parents", "children"):
        assert job[side]["type"] == ["array", "null"]
        assert job[side]["items"] == {"type": "string"}
        assert job[f"{side}Mode"]["enum"] == ["serial", "parallel"]
    assert "items" not in job["hostGroup"] and "additionalProperties" not in job["parents"]


def test_the_log_takes_a_chain_id_and_its_runs_say_their_chain_run() -> None:
    spec = build_spec()
    query = {p["name"]: p for p in spec["paths"]["/job/log"]["get"]["parameters"]}
    assert query["name"]["required"] is False  # not with chainId
    chain_id = query["chainId"]["schema"]
    assert chain_id["pattern"] == "^[^/]+@[0-9]{1,19}/[0-9]{1,15}$"
    assert re.fullmatch(chain_id["pattern"][1:-1], "nightly@42/1767225600000")
    assert chain_id["maxLength"] == 128 + 1 + 19 + 1 + 15
    run = answer(spec, "/job/log", "get")["items"]["properties"]
    assert "skipped" in run["status"]["enum"] and "succeeded" in run["status"]["enum"]
    assert (run["chainId"]["type"], run["chainStep"]["type"], run["chainSteps"]["type"]) == (
        "string", "integer", "integer",
    )  # fmt: skip
    assert run["startTime"]["type"] == ["integer", "null"]  # never started: missed, skipped
