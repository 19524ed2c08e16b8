"""The console's first view, the dashboard, in a real headless Chromium against a real manager
and worker: its charts hold the runs of the jobs this test made (read from the charts' data,
not their pixels), they refresh in place, and it reads at 1280 and 390 px under the CSP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import NEVER, PHONE, artifact, expect, open_console
from tests.support import Cluster, api_get, api_post, job_runs, save_job, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

# Each chart's data as Chart.js holds it: {labels, datasets: [{label, data}]}.
CHART_DATA = """() => Object.fromEntries(
  ['dash-runs', 'dash-failing', 'dash-running', 'dash-workers'].map(function (id) {
    const chart = Chart.getChart(document.getElementById(id));
    return [id, chart ? {
      labels: chart.data.labels.slice(),
      datasets: chart.data.datasets.map(d => ({ label: d.label, data: d.data.slice() }))
    } : null];
  }))"""


def _series(chart: dict[str, Any], label: str) -> list[Any]:
    [dataset] = [d for d in chart["datasets"] if d["label"] == label]
    return dataset["data"]


async def test_the_dashboard_charts_the_runs_of_the_tests_jobs(
    cluster: Cluster, browser: Any
) -> None:
    # The worker first: the manager's first rollup pass then counts it online.
    await cluster.start_worker("w1")
    await cluster.start_manager()
    await save_job(cluster.api, "fine", "true", NEVER)
    await save_job(cluster.api, "broken", "exit 3", NEVER)
    await save_job(cluster.api, "sleeper", "sleep 60", NEVER)
    for name in ("fine", "broken", "sleeper"):
        await api_post(cluster.api, "/job/run", name=name)

    async def fine_ran() -> bool:
        return len(await job_runs(cluster, "fine")) == 1

    # Once its first run is over: asked while it runs, a second is refused (forbid).
    await wait_until(fine_ran, 30, "fine's first run to be logged")
    await api_post(cluster.api, "/job/run", name="fine")

    async def ran() -> bool:
        done = [len(await job_runs(cluster, name)) for name in ("fine", "broken")]
        running = {w["id"]: w["running"] for w in await api_get(cluster.api, "/worker/list")}
        return done == [2, 1] and running == {"w1": ["sleeper"]}

    await wait_until(ran, 30, "the runs to be logged and sleeper to run")

    console = await open_console(browser, cluster.api, view="dashboard")
    page = console.page
    await expect(page.locator("#tab-dashboard.active")).to_be_visible()

    async def charted() -> dict[str, Any] | None:
        charts = await page.evaluate(CHART_DATA)
        runs = charts["dash-runs"]
        if runs is None or sum(_series(runs, "succeeded")) != 2:
            return None
        return charts

    charts = await wait_until(charted, 15, "the dashboard to chart the runs")
    runs = charts["dash-runs"]
    assert len(runs["labels"]) == 60  # the last hour, a bar a minute
    assert sum(_series(runs, "failed")) == 1
    assert sum(sum(d["data"]) for d in runs["datasets"]) == 3
    failing = charts["dash-failing"]
    assert failing["labels"] == ["broken"] and failing["datasets"][0]["data"] == [1]
    running = charts["dash-running"]
    assert running["labels"] == ["w1"] and running["datasets"][0]["data"] == [1]
    online = [n for n in charts["dash-workers"]["datasets"][0]["data"] if n is not None]
    assert online and online[-1] == 1
    await expect(page.locator("#dash-failure-rate")).to_have_text("33.3 %")
    await page.screenshot(path=str(artifact("console-dashboard-1280.png")), full_page=True)

    # The day: 15-minute buckets; the same runs, drawn into the same charts (never remade).
    made = await page.evaluate("() => Chart.getChart(document.getElementById('dash-runs')).id")
    await page.click('label[for="dash-window-day"]')

    async def daily() -> bool:
        charts = await page.evaluate(CHART_DATA)
        return len(charts["dash-runs"]["labels"]) == 96

    await wait_until(daily, 15, "the day's buckets")
    assert made == await page.evaluate(
        "() => Chart.getChart(document.getElementById('dash-runs')).id"
    )
    await api_post(cluster.api, "/job/kill", name="sleeper")

    await page.set_viewport_size(PHONE)

    async def stacked() -> bool:
        # Each chart resized to the phone's width, one under another (Chart.js follows its box).
        canvases = "document.querySelectorAll('#pane-dashboard canvas')"
        widths = await page.evaluate(f"() => Array.from({canvases}, c => c.clientWidth)")
        return all(250 < w < PHONE["width"] for w in widths)

    await wait_until(stacked, 15, "the charts to fit the phone")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=str(artifact("console-dashboard-390.png")), full_page=True)
    console.assert_quiet()
