"""The logs view shows a run's output while it goes on, growing until the run ends, then the
finished record in its place; a running run is killed from there."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import NEVER, artifact, dialog_ready, expect, job_row, open_console
from tests.support import Cluster, api_post, save_job_fields

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
TWENTY_LINES = "for i in $(seq 1 20); do echo line $i; sleep 0.5; done"


async def test_a_running_runs_output_grows_in_the_logs_view_and_it_is_killed_from_there(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    await save_job_fields(cluster.api, name="lines", command=TWENTY_LINES, cronExpr=NEVER)
    await save_job_fields(cluster.api, name="sleeper", command="echo zzz; sleep 60",
                          cronExpr=NEVER)  # fmt: skip
    await api_post(cluster.api, "/job/run", name="lines")
    console = await open_console(browser, cluster.api)
    page = console.page
    logs = page.locator("#log-modal")

    await job_row(page, "lines").locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    running = logs.locator("#log-running .running-run")
    await expect(running).to_have_count(1)
    await running.locator(".live-show").click()
    live = running.locator("pre.live-output-text")
    await expect(live).to_contain_text("line 3")
    seen = await live.text_content()
    assert "line 3\n" in seen and "line 20" not in seen, seen  # before the run's end
    await page.screenshot(path=str(artifact("console-live-output.png")))
    # It grows, then the finished record takes its place.
    await expect(live).to_contain_text("line 5")
    finished = logs.locator("#log-list .run").first
    await expect(finished.locator(".run-status")).to_have_text("succeeded", timeout=30_000)
    await expect(running).to_have_count(0)
    await expect(finished.locator("pre.log-output")).to_contain_text("line 1")
    await logs.locator(".btn-close").click()
    await expect(logs).to_be_hidden()

    await api_post(cluster.api, "/job/run", name="sleeper")
    await job_row(page, "sleeper").locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    await logs.locator("#log-running .running-run .live-kill").click()
    await expect(page.locator("#toasts")).to_contain_text("Killing the runs of sleeper")
    killed = logs.locator("#log-list .run").first
    await expect(killed.locator(".run-status")).to_have_text("killed", timeout=20_000)
    await expect(logs.locator("#log-running .running-run")).to_have_count(0)
    console.assert_quiet()
