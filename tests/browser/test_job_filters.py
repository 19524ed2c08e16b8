"""Finding jobs in the console: the filter bar above the jobs table (name, tag, owner, status,
host), the job dialog's tags and description, and the table's tag badges, driven in a real
headless Chromium against a real manager. Every wait is on a condition."""

from __future__ import annotations

from typing import Any

import pytest

from gdts.etcd import EtcdClient
from gdts.job import Job
from gdts.keys import KeyLayout
from gdts.markers import running_marker
from gdts.mongo import open_mongo
from gdts.runlog import RunLog
from gdts.runrecord import RunRecord, RunStatus
from tests.browser.conftest import (
    INVALID,
    NEVER,
    PHONE,
    TIMEOUT_MS,
    artifact,
    expect,
    job_row,
    new_job,
    open_console,
)
from tests.support import Cluster, api_get, save_job_fields, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
WORKER = "w-find"


async def shown(page: Any, *names: str) -> None:
    """Wait until the jobs table shows exactly these jobs, in this order."""
    rows = page.locator("#jobs-body tr.job-row")

    async def listed() -> bool:
        return await rows.evaluate_all("rows => rows.map(r => r.dataset.job)") == list(names)

    await wait_until(listed, TIMEOUT_MS / 1000, f"the jobs table to show {names}")


async def filter_by(page: Any, box: str, value: str) -> None:
    """Type into a filter box and press Enter, which applies it at once (typing alone applies
    once it pauses for 300 ms)."""
    await page.fill(f"#filter-{box}", value)
    await page.press(f"#filter-{box}", "Enter")


async def test_the_filter_bar_narrows_the_jobs_table_by_each_filter(
    cluster: Cluster, browser: Any, etcd: EtcdClient
) -> None:
    await cluster.start_manager()
    api = cluster.api
    await save_job_fields(
        api,
        name="backup-db",
        command="true",
        cronExpr=NEVER,
        tags=["prod", "db"],
        description="Dumps the main database",
    )
    await save_job_fields(
        api, name="backup-web", command="true", cronExpr=NEVER, tags=["prod"], enabled=False
    )
    await save_job_fields(api, name="breaks", command="false", cronExpr=NEVER)
    await save_job_fields(api, name="sleeper", command="sleep 60", cronExpr=NEVER)  # fmt: skip
    # What a worker leaves in the stores, written as it writes them (starting one and running
    # the jobs would double the test's time; the e2e tests run jobs): another owner's job
    # (the manager owns a job to whoever saves it), the failed run of "breaks" and the running
    # marker of "sleeper".
    keys = KeyLayout(cluster.stack.prefix)
    bobs = Job.from_api({"name": "bobs-report", "command": "true", "cronExpr": NEVER,
                         "owner": "bob", "tags": ["prod"]})  # fmt: skip
    await etcd.put(keys.job("bobs-report"), bobs.to_record())
    sleeper = await etcd.get(keys.job("sleeper"))
    await etcd.put(keys.running("sleeper", sleeper.create_revision),
                   running_marker(WORKER, 1000, 1000))  # fmt: skip
    mongo = open_mongo(cluster.stack.mongo_uri, 3000)
    try:
        await RunLog(mongo, cluster.stack.database).insert([RunRecord(
            job_name="breaks", command="false", worker=WORKER, plan_time=1000,
            schedule_time=1000, start_time=1005, end_time=1009, output="", err="exit 1",
            exit_code=1, status=RunStatus.FAILED,
        ).to_document()])  # fmt: skip
    finally:
        await mongo.close()
    console = await open_console(browser, api)
    page = console.page
    everyone = ("backup-db", "backup-web", "bobs-report", "breaks", "sleeper")
    await shown(page, *everyone)
    row = job_row(page, "backup-db")
    await expect(row.locator(".job-tag")).to_have_text(["prod", "db"])
    await expect(row.locator(".job-description")).to_have_text("Dumps the main database")
    await expect(row.locator(".job-description")).to_have_attribute(
        "title", "Dumps the main database"
    )

    # Each filter alone, then cleared.
    await page.fill("#filter-name", "BACKUP")
    await shown(page, "backup-db", "backup-web")
    await expect(page.locator("#jobs-count")).to_have_text("2 matching")
    await filter_by(page, "name", "")
    await filter_by(page, "command", "SLEEP 6")
    await shown(page, "sleeper")
    await filter_by(page, "command", "")
    await filter_by(page, "tag", "prod, db")
    await shown(page, "backup-db")
    await filter_by(page, "tag", "")
    await filter_by(page, "owner", "bob")
    await shown(page, "bobs-report")
    await filter_by(page, "owner", "")
    for status, names in (
        ("paused", ["backup-web"]),
        ("failing", ["breaks"]),
        ("running", ["sleeper"]),
    ):
        await page.select_option("#filter-status", status)
        await shown(page, *names)
    await page.select_option("#filter-status", "")
    await page.fill("#filter-host", WORKER)
    await shown(page, "breaks", "sleeper")

    # Combined, and kept as they are while the table refreshes (every 3 seconds, or at once
    # with Refresh: the same call).
    await filter_by(page, "name", "s")
    await page.select_option("#filter-status", "running")
    await shown(page, "sleeper")
    async with page.expect_response(lambda r: "status=running" in r.url, timeout=TIMEOUT_MS):
        await page.click("#btn-refresh")
    await shown(page, "sleeper")
    await expect(page.locator("#filter-host")).to_have_value(WORKER)
    await expect(page.locator("#filter-status")).to_have_value("running")

    # Clear empties every box; a tag's badge filters by that tag.
    await page.click("#filter-clear")
    await shown(page, *everyone)
    await expect(page.locator("#filter-clear")).to_be_disabled()
    await job_row(page, "bobs-report").locator('.job-tag[data-tag="prod"]').click()
    await expect(page.locator("#filter-tag")).to_have_value("prod")
    await shown(page, "backup-db", "backup-web", "bobs-report")

    # A filter the API refuses is shown under its box, naming it; fixed, the table is back.
    await filter_by(page, "tag", "not a tag")
    await expect(page.locator("#filter-tag")).to_have_class(INVALID)
    await expect(page.locator('#job-filters .invalid-feedback[data-for="tag"]')).to_contain_text(
        "tag: 'not a tag' is not a tag"
    )
    await filter_by(page, "tag", "db")
    await shown(page, "backup-db")
    await expect(page.locator("#filter-tag")).not_to_have_class(INVALID)

    # The dialog's Tags and Description; a bad tag is shown under the Tags box.
    await new_job(page, name="tagged", command="true", cronExpr=NEVER, tags="db, x y",
                  description="Line one\nline two")  # fmt: skip
    await page.click("#job-save-btn")
    await expect(page.locator("#job-tags")).to_have_class(INVALID)
    await expect(page.locator('#job-form .invalid-feedback[data-for="tags"]')).to_contain_text(
        "tags[1]: 'x y' is not a tag"
    )
    await page.fill("#job-tags", "db, nightly, db")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    await shown(page, "backup-db", "tagged")  # the tag filter still holds
    [tagged] = await api_get(api, "/job/list", name="tagged")
    assert (tagged["tags"], tagged["description"]) == (["db", "nightly"], "Line one\nline two")
    await job_row(page, "tagged").locator(".act-edit").click()
    await expect(page.locator("#job-tags")).to_have_value("db, nightly")
    await expect(page.locator("#job-description")).to_have_value("Line one\nline two")
    await page.keyboard.press("Escape")
    await expect(page.locator("#job-modal")).to_be_hidden()

    await page.screenshot(path=str(artifact("console-job-filters-desktop.png")))
    # On a phone the bar wraps to the screen's width.
    await page.set_viewport_size(PHONE)
    await filter_by(page, "tag", "prod")
    await page.select_option("#filter-status", "paused")
    await shown(page, "backup-web")
    bar = await page.locator("#job-filters").bounding_box()
    assert bar is not None and bar["x"] >= 0 and bar["x"] + bar["width"] <= PHONE["width"], bar
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], f"the page is {overflow} px wide"
    await page.screenshot(path=str(artifact("console-job-filters.png")))
    console.assert_quiet()
