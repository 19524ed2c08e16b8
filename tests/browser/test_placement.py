"""Where jobs run, in the console: the job dialog's host group and routing, the jobs table's
"no live worker in host group" badge and the workers' labels and weight, driven in a real
headless Chromium against a real manager and workers. Every wait is on a condition."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import (
    INVALID,
    NEVER,
    artifact,
    dialog_ready,
    expect,
    job_row,
    new_job,
    open_console,
)
from tests.support import Cluster, api_get, save_job_fields

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
DB_EU = {"group": "db", "zone": "eu-1"}


async def listed(cluster: Cluster, name: str) -> dict[str, Any]:
    [job] = [j for j in await api_get(cluster.api, "/job/list") if j["name"] == name]
    return job


def worker_row(page: Any, worker_id: str) -> Any:
    return page.locator(f'#workers-body tr.worker-row[data-key="{worker_id}"]')


async def test_a_job_saved_with_a_host_group_and_routing_reads_back_as_typed(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    await cluster.start_worker("w-db", labels=DB_EU)
    console = await open_console(browser, cluster.api)
    page = console.page

    await new_job(page, name="placed", command="echo placed", cronExpr=NEVER)
    await page.click("#job-placement-toggle")
    host_group = page.locator("#job-hostGroup")
    await expect(host_group).to_be_visible()
    feedback = page.locator('#job-form .invalid-feedback[data-for="hostGroup"]')
    # A malformed entry is told before asking the server, naming the entry.
    await host_group.fill("group=db, zone")
    await page.click("#job-save-btn")
    await expect(host_group).to_have_class(INVALID)
    await expect(feedback).to_contain_text("“zone” is not key=value")
    # A value the server refuses (hostGroup.group) lands under the same input.
    await host_group.fill("group=db/1")
    await page.click("#job-save-btn")
    await expect(feedback).to_contain_text("hostGroup.group: 'db/1' is not a label value")
    await expect(page.locator("#job-modal")).to_be_visible()

    await host_group.fill("group=db, zone=eu-1")
    await page.select_option("#job-routing", "roundRobin")
    await expect(page.locator("#job-routing-help")).to_contain_text("take turns")
    await expect(page.locator("#job-placement-summary")).to_contain_text("roundRobin")
    await page.screenshot(path=str(artifact("console-job-placement.png")))
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()

    job = await listed(cluster, "placed")
    assert (job["hostGroup"], job["routing"], job["liveWorkers"]) == (DB_EU, "roundRobin", 1)
    row = job_row(page, "placed")
    await expect(row.locator(".placement-summary")).to_have_text(
        "on {group=db, zone=eu-1} · roundRobin"
    )
    await expect(row.locator(".no-live-worker")).to_have_count(0)

    # Edited, the dialog shows it unfolded as saved; cleared, the job runs anywhere again.
    await row.locator(".act-edit").click()
    await dialog_ready(page, "#job-modal", "#job-command")
    await expect(host_group).to_be_visible()
    await expect(host_group).to_have_value("group=db, zone=eu-1")
    await expect(page.locator("#job-routing")).to_have_value("roundRobin")
    await host_group.fill("")
    await page.select_option("#job-routing", "hash")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    job = await listed(cluster, "placed")
    assert (job["hostGroup"], job["routing"], job["liveWorkers"]) == (None, "hash", None)
    await expect(row.locator(".placement-summary")).to_have_count(0)

    # A group no live worker is in: the table says so, and Run now is refused with the reason.
    await save_job_fields(cluster.api, name="gpu-only", command="true", cronExpr=NEVER,
                          hostGroup={"group": "gpu"})  # fmt: skip
    gpu = job_row(page, "gpu-only")
    await expect(gpu.locator(".no-live-worker")).to_have_text("no live worker in host group")
    await expect(gpu.locator(".placement-summary")).to_have_text("on {group=gpu}")
    await gpu.locator(".act-run").click()
    await expect(page.locator("#toasts")).to_contain_text(
        "no live worker in host group {group=gpu}"
    )
    console.assert_quiet()


async def test_the_workers_view_shows_each_workers_labels_and_weight(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    await cluster.start_worker("w-db", labels=DB_EU, weight=3)
    await cluster.start_worker("w-plain")
    console = await open_console(browser, cluster.api)
    page = console.page
    await page.click("#tab-workers")

    db = worker_row(page, "w-db")
    await expect(db.locator(".worker-label")).to_have_text(["group=db", "zone=eu-1"])
    await expect(db.locator(".cell-weight")).to_have_text("3")
    plain = worker_row(page, "w-plain")
    await expect(plain.locator(".worker-label")).to_have_count(0)
    await expect(plain.locator(".cell-labels")).to_have_text("none")
    await expect(plain.locator(".cell-weight")).to_have_text("1")
    await page.screenshot(path=str(artifact("console-workers-labels.png")))
    console.assert_quiet()
