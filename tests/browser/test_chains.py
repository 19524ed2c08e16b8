"""Chains in the console: the job dialog's parents and children (the server's errors under their
inputs), the jobs table's chain line, a delete refused because a chain names the job, and the
log view's chain runs, each one row that opens to its steps. A real headless Chromium against a
real manager, etcd and mongod; the chain runs are run documents written through the run log.
Every wait is on a condition."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gdts.mongo import open_mongo
from gdts.runlog import RunLog
from gdts.runrecord import ChainStep, RunRecord, RunStatus
from tests.browser.conftest import (
    INVALID,
    NEVER,
    XSS_NAME,
    artifact,
    dialog_ready,
    expect,
    job_row,
    new_job,
    open_console,
)
from tests.support import Cluster, api_get, now_ms, save_job_fields

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def listed(cluster: Cluster, name: str) -> dict[str, Any]:
    [job] = [j for j in await api_get(cluster.api, "/job/list") if j["name"] == name]
    return job


async def test_a_chain_job_saved_in_the_dialog_reads_back_as_typed(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    for name in ("extract", "report", "mail"):
        await save_job_fields(cluster.api, name=name, command=f"echo {name}", cronExpr=NEVER)
    console = await open_console(browser, cluster.api)
    page = console.page

    await new_job(page, name="nightly", command="echo nightly", cronExpr=NEVER)
    await page.click("#job-chain-toggle")
    parents, children = page.locator("#job-parents"), page.locator("#job-children")
    await expect(parents).to_be_visible()
    # A bad name in a list (the server says parents[1]) lands under the list's input.
    await parents.fill("extract, a/b")
    await page.click("#job-save-btn")
    await expect(parents).to_have_class(INVALID)
    await expect(page.locator('#job-form .invalid-feedback[data-for="parents"]')).to_contain_text(
        "parents[1]: must not contain '/'"
    )
    await parents.fill("extract")
    await children.fill("report, mail, ghost")
    await page.select_option("#job-childrenMode", "parallel")
    await expect(page.locator("#job-chain-summary")).to_have_text(
        "(after extract · then report, mail, ghost (parallel))"
    )
    await page.click("#job-save-btn")
    await expect(children).to_have_class(INVALID)
    await expect(page.locator('#job-form .invalid-feedback[data-for="children"]')).to_contain_text(
        "children: no job is named 'ghost'"
    )
    await expect(page.locator("#job-modal")).to_be_visible()
    await children.fill("report, mail")
    await page.screenshot(path=str(artifact("console-job-chain.png")))
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()

    job = await listed(cluster, "nightly")
    assert {k: job[k] for k in ("parents", "parentsMode", "children", "childrenMode")} == {
        "parents": ["extract"], "parentsMode": "serial", "children": ["report", "mail"],
        "childrenMode": "parallel",
    }  # fmt: skip
    row = job_row(page, "nightly")
    await expect(row.locator(".chain-summary")).to_have_text(
        "after extract · then report, mail (parallel)"
    )

    # A job a chain names is not deleted: the toast says which chain and what to do.
    await job_row(page, "report").locator(".act-delete").click()
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(page.locator("#toasts")).to_contain_text(
        "job 'report' is in the children of 'nightly'"
    )
    await expect(job_row(page, "report")).to_have_count(1)

    # Edited, the dialog shows the chain unfolded as saved; emptied, the job has none.
    await row.locator(".act-edit").click()
    await dialog_ready(page, "#job-modal", "#job-command")
    await expect(parents).to_be_visible()
    await expect(parents).to_have_value("extract")
    await expect(children).to_have_value("report, mail")
    await expect(page.locator("#job-childrenMode")).to_have_value("parallel")
    await expect(page.locator("#job-parentsMode")).to_have_value("serial")
    await parents.fill("")
    await children.fill("")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    job = await listed(cluster, "nightly")
    assert (job["parents"], job["children"]) == (None, None)
    await expect(row.locator(".chain-summary")).to_have_count(0)
    console.assert_quiet()


def step(job: str, index: int, status: RunStatus, chain: str, plan_ms: int, *,
         attempt: int = 1, output: str = "", err: str = "") -> dict[str, Any]:  # fmt: skip
    """A chain run's step run as a worker records it (a skipped one never started)."""
    started = None if status is RunStatus.SKIPPED else plan_ms + 20
    return RunRecord(
        job_name=job, command=f"echo {job}", worker="w1", plan_time=plan_ms + 10 * index + attempt,
        schedule_time=plan_ms, start_time=None if started is None else started + 10 * index,
        end_time=plan_ms + 10 * index + 900, output=output, err=err,
        exit_code=None if started is None else int(status is not RunStatus.SUCCEEDED),
        status=status, attempt=attempt, trigger="chain", chain=ChainStep(chain, index, 4),
    ).to_document()  # fmt: skip


async def test_a_chain_run_is_one_row_that_opens_to_its_steps(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    for name in ("extract", "report", XSS_NAME):
        await save_job_fields(cluster.api, name=name, command="true", cronExpr=NEVER)
    await save_job_fields(cluster.api, name="nightly", command="exit 3", cronExpr=NEVER,
                          parents=["extract"], children=["report", XSS_NAME],
                          childrenMode="parallel")  # fmt: skip
    hour_ago = (now_ms() - 3_600_000) // 1000 * 1000
    stopped, going = f"nightly@7/{hour_ago}", f"nightly@7/{hour_ago + 60_000}"
    why = "not run: the chain run stopped at step 2/4 (nightly failed: exit code 3)"
    runs = [
        step("extract", 0, RunStatus.SUCCEEDED, stopped, hour_ago, output="extracted 42 rows"),
        step("nightly", 1, RunStatus.FAILED, stopped, hour_ago, output="boom"),
        step("nightly", 1, RunStatus.FAILED, stopped, hour_ago, attempt=2, output="boom again"),
        step("report", 2, RunStatus.SKIPPED, stopped, hour_ago, err=why),
        step(XSS_NAME, 3, RunStatus.SKIPPED, stopped, hour_ago, err=why),
        # A chain run under way: its children have no run yet.
        step("extract", 0, RunStatus.SUCCEEDED, going, hour_ago + 60_000),
        step("nightly", 1, RunStatus.SUCCEEDED, going, hour_ago + 60_000),
    ]
    manual = RunRecord(
        job_name="nightly", command="exit 3", worker="w1", plan_time=hour_ago - 60_001,
        schedule_time=hour_ago - 60_001, start_time=hour_ago - 60_000, end_time=hour_ago - 59_000,
        output="by hand", err="", exit_code=3, status=RunStatus.FAILED, trigger="manual",
    ).to_document()  # fmt: skip
    mongo = open_mongo(cluster.stack.mongo_uri, 3000)
    try:
        assert await RunLog(mongo, cluster.stack.database).insert([*runs, manual]) == 0
    finally:
        await mongo.close()

    console = await open_console(browser, cluster.api)
    page = console.page
    await job_row(page, "nightly").locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    logs = page.locator("#log-list")
    # Three runs of nightly in one chain run and one in another: one row per chain run, and the
    # run of its own as before.
    chains = logs.locator(".chain-run")
    await expect(chains).to_have_count(2)
    await expect(logs.locator(".run")).to_have_count(1)
    await expect(logs.locator(".run .run-trigger")).to_have_text("manual")
    under_way, failed = chains.nth(0), chains.nth(1)
    await expect(under_way.locator(".chain-status")).to_have_text("running")
    await expect(failed.locator(".chain-status")).to_have_text("failed")
    await expect(failed.locator(".chain-head")).to_have_text("nightly")
    await expect(failed.locator(".chain-mine")).to_have_text("this job: step 2/4")
    await expect(failed.locator(".chain-steps")).to_be_hidden()

    await failed.locator(".chain-header").click()
    rows = failed.locator(".chain-step")
    await expect(rows).to_have_count(5)
    await expect(rows.locator(".step-position")).to_have_text(["1/4", "2/4", "2/4", "3/4", "4/4"])
    await expect(rows.locator(".step-job")).to_have_text(
        ["extract", "nightly", "nightly", "report", XSS_NAME]
    )
    await expect(rows.locator(".step-status .badge")).to_have_text(
        ["succeeded", "failed", "failed", "skipped", "skipped"]
    )
    skipped = rows.nth(3)
    await expect(skipped.locator(".badge")).to_have_class(re.compile(r"\btext-bg-secondary\b"))
    await expect(skipped.locator(".step-err")).to_have_text(why)
    await expect(skipped.locator(".step-started")).to_have_text("not started")
    await expect(rows.nth(2)).to_contain_text("attempt 2")
    # A name from a user is text, never markup.
    assert await page.locator("#log-list img").count() == 0
    await rows.nth(0).locator(".step-output-toggle").click()
    await expect(failed.locator(".chain-step-output").first).to_contain_text("extracted 42 rows")
    await page.screenshot(path=str(artifact("console-chain-run.png")))

    await under_way.locator(".chain-toggle").click()
    await expect(under_way.locator(".chain-step")).to_have_count(2)
    await expect(under_way.locator(".chain-waiting")).to_have_text("2 steps have no run yet.")

    # A step's job links to that run in its own log, where its chain run shows opened.
    await rows.nth(0).locator(".step-job").click()
    await expect(page.locator("#log-modal-title")).to_have_text("Runs of extract")
    linked = logs.locator(".chain-run.run-linked")
    await expect(linked).to_have_count(1)
    await expect(linked.locator(".chain-step")).to_have_count(5)
    await expect(logs.locator(".chain-run")).to_have_count(2)
    console.assert_quiet()
