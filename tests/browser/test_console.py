"""The web console, driven as an operator would drive it: a real headless Chromium against a
real manager, workers, etcd and mongod. Every wait is on a condition (Playwright's ``expect``
or ``wait_until``), never a fixed sleep."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gdts.secretbox import new_key_entry
from tests.browser.conftest import (
    NEVER,
    PHONE,
    TIMEOUT_MS,
    XSS_NAME,
    artifact,
    dialog_ready,
    expect,
    job_row,
    new_job,
    open_console,
)
from tests.support import (
    ADMIN_USER,
    Cluster,
    api_call,
    api_get,
    api_post,
    job_runs,
    save_job_fields,
    wait_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
XSS_COMMAND = "echo '<script>alert(1)</script>'; echo '<b id=injected>bold</b>'"


async def no_page_scroll(page: Any) -> bool:
    return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_job_dialog_shows_errors_next_to_the_field_and_keeps_what_was_typed(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    # The browser's zone is not the job's: times must show in the browser's.
    console = await open_console(browser, cluster.api, timezone_id="America/New_York")
    page = console.page
    await expect(page.locator("#tz-name")).to_have_text("America/New_York")

    await new_job(page, name="nightly", command="echo nightly", cronExpr="61 * * * *")
    # The live preview shows the parse error as it is typed...
    preview = page.locator("#cron-preview")
    await expect(preview).to_have_class(re.compile(r"\bpreview-error\b"))
    await expect(preview).to_contain_text("cronExpr")
    await expect(preview).to_contain_text("61")
    # ...and saving shows the API's error under the field, with the dialog still open.
    await page.click("#job-save-btn")
    await expect(page.locator("#job-cronExpr")).to_have_class(re.compile(r"\bis-invalid\b"))
    feedback = page.locator('#job-form .invalid-feedback[data-for="cronExpr"]')
    await expect(feedback).to_be_visible()
    await expect(feedback).to_contain_text("cronExpr")
    await expect(page.locator("#job-modal")).to_be_visible()
    await expect(page.locator("#job-name")).to_have_value("nightly")
    await expect(page.locator("#job-command")).to_have_value("echo nightly")
    await expect(page.locator("#job-cronExpr")).to_have_value("61 * * * *")
    await page.screenshot(path=str(artifact("console-job-dialog.png")))

    # A valid expression previews its next five runs, in the chosen zone.
    await page.fill("#job-timezone", "Europe/Berlin")
    await page.fill("#job-cronExpr", "30 2 * * *")
    await expect(preview.locator(".preview-runs li")).to_have_count(5)
    await expect(page.locator("#job-cronExpr")).not_to_have_class(re.compile(r"\bis-invalid\b"))
    server = await api_get(cluster.api, "/cron/preview", cronExpr="30 2 * * *",
                           timezone="Europe/Berlin", count=5)  # fmt: skip
    new_york = ZoneInfo("America/New_York")
    await expect(preview.locator(".preview-runs li")).to_have_text(
        [datetime.fromtimestamp(ms / 1000, new_york).strftime("%Y-%m-%d %H:%M:%S")
         for ms in server["next"]]
    )  # fmt: skip

    # The tables refresh behind the open dialog; what was typed stays.
    status = page.locator("#refresh-status")
    before = await status.inner_text()
    await expect(status).not_to_have_text(before)
    await expect(page.locator("#job-modal")).to_be_visible()
    await expect(page.locator("#job-name")).to_have_value("nightly")
    await expect(page.locator("#job-cronExpr")).to_have_value("30 2 * * *")

    # An advanced field's error opens the collapsed part and lands under that field.
    await page.click("#job-advanced-toggle")
    await page.fill("#job-timeout", "soon")
    await page.click("#job-advanced-toggle")  # folded again: the error must unfold it
    await page.click("#job-save-btn")
    await expect(page.locator("#job-timeout")).to_be_visible()
    await expect(page.locator("#job-timeout")).to_have_class(re.compile(r"\bis-invalid\b"))
    await expect(page.locator('#job-form .invalid-feedback[data-for="timeout"]')).to_contain_text(
        "timeout"
    )
    await page.fill("#job-timeout", "30")
    await page.select_option("#job-concurrencyPolicy", "replace")
    await page.fill("#job-keepRuns", "0")
    await page.click("#job-save-btn")
    await expect(page.locator('#job-form .invalid-feedback[data-for="keepRuns"]')).to_contain_text(
        "keepRuns: must be between 1 and 1000000"
    )
    await page.screenshot(path=str(artifact("console-job-keep-runs.png")))
    await page.fill("#job-keepRuns", "100")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()

    row = job_row(page, "nightly")
    await expect(row).to_contain_text("30 2 * * *")
    await expect(row).to_contain_text("Europe/Berlin")
    await expect(row).to_contain_text(ADMIN_USER)
    await expect(row.locator(".rel-time")).to_contain_text("in ")
    # A refresh keeps the rows that did not change (focus and scroll stay where they are).
    await row.evaluate("el => { el.dataset.seen = 'before-refresh'; }")
    before = await status.inner_text()
    await expect(status).not_to_have_text(before)
    await expect(row).to_have_attribute("data-seen", "before-refresh")
    [job] = [j for j in await api_get(cluster.api, "/job/list") if j["name"] == "nightly"]
    assert (job["timezone"], job["timeout"], job["concurrencyPolicy"], job["keepRuns"]) == (
        "Europe/Berlin", 30, "replace", 100,
    )  # fmt: skip
    assert job["command"] == "echo nightly" and job["nextRunTime"] is not None
    console.assert_quiet()


async def test_a_job_runs_and_its_output_shows_in_the_logs_view(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    console = await open_console(browser, cluster.api)
    page = console.page

    await new_job(
        page, name="report", command="echo report-start; seq 1 200", cronExpr="* * * * * *"
    )
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    row = job_row(page, "report")
    await expect(row.locator(".badge", has_text="succeeded")).to_be_visible()
    # Pause it from the page, so the log stops growing, then run it once by hand.
    await row.locator(".act-pause").click()
    await expect(row.locator(".state-paused")).to_be_visible()
    await expect(row).to_contain_text("paused")
    await wait_until(
        lambda: _job_field(cluster, "report", "enabled", False), 10, "the job to be paused"
    )
    screenshot = artifact("console-jobs.png")
    await page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the jobs page: {screenshot}")

    await row.locator(".act-run").click()

    async def manual_run() -> bool:
        return any(r["trigger"] == "manual" for r in await job_runs(cluster, "report"))

    await wait_until(manual_run, 20, "the manual run to be logged")
    await row.locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    logs = page.locator("#log-modal")
    newest = logs.locator(".run").first
    await expect(newest.locator(".run-trigger")).to_have_text("manual")
    await expect(newest.locator(".run-status")).to_have_text("succeeded")
    await expect(newest.locator(".run-exit")).to_have_text("0")
    await expect(newest).to_contain_text("planned")
    await expect(newest).to_contain_text("started")
    output = newest.locator("pre.log-output")
    await expect(output).to_contain_text("report-start")
    await expect(output).not_to_contain_text("\n200")  # long output starts folded
    await expect(logs.locator(".run").nth(1).locator(".run-trigger")).to_have_text("schedule")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot = artifact("console-logs.png")
    await page.screenshot(path=str(screenshot))
    print(f"screenshot of the logs view: {screenshot}")
    await newest.locator(".output-toggle").click()
    await expect(output).to_contain_text("199\n200")
    await logs.locator(".btn-close").click()
    await expect(logs).to_be_hidden()

    await row.locator(".act-resume").click()
    await expect(row.locator(".state-active")).to_be_visible()
    console.assert_quiet()


async def test_a_long_output_shows_cut_and_loads_whole_on_request(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    # 200,000 characters: a page of 20 runs carries 52 KiB of each.
    await save_job_fields(
        cluster.api, name="chatty", cronExpr=NEVER,
        command="echo chatty-start; head -c 200000 /dev/zero | tr '\\0' y; echo; echo chatty-end",
    )  # fmt: skip
    await api_post(cluster.api, "/job/run", name="chatty")
    await wait_until(lambda: job_runs(cluster, "chatty"), 20, "the run to be logged")
    console = await open_console(browser, cluster.api)
    page = console.page
    await job_row(page, "chatty").locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    run = page.locator("#log-modal .run").first
    whole = run.locator(".output-whole")
    await expect(whole).to_have_text(re.compile(r"Load the whole output \(2000\d\d bytes\)"))
    await run.locator(".output-toggle").click()
    await expect(run.locator("pre.log-output")).not_to_contain_text("chatty-end")
    await whole.click()
    await expect(run.locator("pre.log-output")).to_contain_text("chatty-end")
    await expect(run.locator(".output-whole")).to_have_count(0)
    console.assert_quiet()


async def _job_field(cluster: Cluster, name: str, key: str, value: object) -> bool:
    return any(
        j["name"] == name and j[key] == value for j in await api_get(cluster.api, "/job/list")
    )


async def test_a_running_job_is_killed_from_the_page_and_shown_on_its_worker(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    await save_job_fields(cluster.api, name="sleeper", command="sleep 60", cronExpr=NEVER)
    console = await open_console(browser, cluster.api)
    page = console.page
    row = job_row(page, "sleeper")
    await expect(row.locator(".act-kill")).to_be_disabled()  # nothing is running yet

    await row.locator(".act-run").click()
    await expect(row.locator(".state-running")).to_be_visible()
    await page.click("#tab-workers")
    worker = page.locator('#workers-body tr[data-key="w1"]')
    await expect(worker.locator(".running-job")).to_have_text("sleeper")
    [listed] = await api_get(cluster.api, "/worker/list")
    cap = listed["maxConcurrentRuns"]
    await expect(worker.locator(".cell-capacity")).to_have_text(f"1 / {cap}")
    assert listed["running"] == ["sleeper"] and listed["host"] and listed["pid"] > 0

    await page.click("#tab-jobs")
    await expect(row.locator(".act-kill")).to_be_enabled()
    await row.locator(".act-kill").click()
    await expect(page.locator("#toasts")).to_contain_text("Kill sent")

    async def killed() -> list[dict[str, Any]]:
        return [r for r in await job_runs(cluster, "sleeper") if r["status"] == "killed"]

    [run] = await wait_until(killed, 20, "the run to be logged as killed")
    assert run["endTime"] - run["startTime"] < 30_000
    await expect(row.locator(".state-running")).to_have_count(0)
    await expect(row.locator(".act-kill")).to_be_disabled()
    await row.locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    await expect(page.locator("#log-modal .run").first.locator(".run-status")).to_have_text(
        "killed"
    )
    await page.locator("#log-modal .btn-close").click()
    await page.click("#tab-workers")
    await expect(worker).to_contain_text("idle")
    console.assert_quiet()


async def test_clone_edit_and_delete_and_only_owners_may_change_a_job(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager(secretKeys=[new_key_entry("k1")])
    await api_post(cluster.api, "/team/save", name="ops")
    await api_post(cluster.api, "/secret/save", team="ops", name="pw", value="s3cr3t-value")
    await save_job_fields(
        cluster.api, name="base", command="echo base", cronExpr=NEVER, keepBackground=True,
        limits={"memoryMB": 256}, team="ops", env={"A": "1"}, secretEnv={"PW": "pw"},
    )  # fmt: skip
    await api_post(cluster.api, "/user/save", username="alice", role="user",
                   password="alice-password-1")  # fmt: skip
    # alice sees the ops team's jobs: she is in it (see tests/integration/test_teams.py).
    await api_post(cluster.api, "/team/member/save", team="ops", username="alice", role="user")
    console = await open_console(browser, cluster.api)
    page = console.page

    # Clone asks for the new name; a taken name is shown under the field, the dialog stays.
    await job_row(page, "base").locator(".act-clone").click()
    await dialog_ready(page, "#clone-modal", "#clone-newName")
    await expect(page.locator("#clone-newName")).to_have_value("base-copy")
    await page.fill("#clone-newName", "base")
    await page.click("#clone-save-btn")
    await expect(page.locator("#clone-newName")).to_have_class(re.compile(r"\bis-invalid\b"))
    await expect(page.locator('#clone-form .invalid-feedback[data-for="newName"]')).to_contain_text(
        "already exists"
    )
    await page.fill("#clone-newName", "base-2")
    await page.click("#clone-save-btn")
    await expect(page.locator("#clone-modal")).to_be_hidden()
    await expect(job_row(page, "base-2")).to_contain_text("echo base")

    # Edit: the dialog comes filled in; the name is fixed.
    await job_row(page, "base-2").locator(".act-edit").click()
    await dialog_ready(page, "#job-modal", "#job-command")
    await expect(page.locator("#job-name")).to_have_value("base-2")
    await expect(page.locator("#job-name")).to_have_attribute("readonly", "")
    await expect(page.locator("#job-cronExpr")).to_have_value(NEVER)
    await expect(page.locator("#cron-preview .preview-runs li")).to_have_count(5)
    await expect(page.locator("#job-limits-memoryMB")).to_have_value("256")
    await expect(page.locator("#job-keepBackground")).to_be_checked()
    await page.fill("#job-command", "echo edited")
    await page.click("#job-advanced-toggle")
    await page.fill("#job-limits-cpuSeconds", "60")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    await expect(job_row(page, "base-2")).to_contain_text("echo edited")
    assert await _job_field(cluster, "base-2", "command", "echo edited")
    # What the dialog shows is what it saves back: nothing of the job is lost by an edit.
    assert await _job_field(cluster, "base-2", "limits", {"memoryMB": 256, "cpuSeconds": 60})
    assert await _job_field(cluster, "base-2", "keepBackground", True)
    # Nor what it does not show: the job's team, env and secrets.
    assert await _job_field(cluster, "base-2", "team", "ops")
    assert await _job_field(cluster, "base-2", "env", {"A": "1"})
    assert await _job_field(cluster, "base-2", "secretEnv", {"PW": "pw"})

    # Delete asks first; cancelling keeps the job.
    await job_row(page, "base-2").locator(".act-delete").click()
    await dialog_ready(page, "#confirm-modal")
    await expect(page.locator("#confirm-text")).to_contain_text("base-2")
    await page.locator("#confirm-modal .btn-outline-secondary").click()
    await expect(page.locator("#confirm-modal")).to_be_hidden()
    await job_row(page, "base-2").locator(".act-delete").click()
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(job_row(page, "base-2")).to_have_count(0)
    assert [j["name"] for j in await api_get(cluster.api, "/job/list")] == ["base"]

    # A user may change only their own jobs: the buttons for the others' are disabled.
    alice = await open_console(browser, cluster.api, "alice", "alice-password-1")
    apage = alice.page
    await expect(apage.locator("#tab-audit")).to_be_hidden()
    base = job_row(apage, "base")
    for action in ("edit", "delete", "run", "pause"):
        await expect(base.locator(f".act-{action}")).to_be_disabled()
    await expect(base.locator(".act-logs")).to_be_enabled()
    await base.locator(".act-clone").click()
    await dialog_ready(apage, "#clone-modal", "#clone-newName")
    await apage.fill("#clone-newName", "alices")
    await apage.click("#clone-save-btn")
    await expect(job_row(apage, "alices").locator(".act-edit")).to_be_enabled()
    await expect(job_row(apage, "alices")).to_contain_text("alice")
    status, body = await api_call(cluster.api, "GET", "/job/list")
    assert status == 200 and {j["owner"] for j in body["data"]} == {ADMIN_USER, "alice"}
    # What the server refuses (403) is shown with its message: alice became a guest while
    # her page still offered the button.
    await api_post(cluster.api, "/user/save", username="alice", role="guest")
    await job_row(apage, "alices").locator(".act-run").click()
    await expect(apage.locator("#toasts")).to_contain_text("role 'guest' may not call")
    console.assert_quiet()
    alice.assert_quiet()


async def test_names_commands_and_output_are_shown_as_text_never_as_html(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    console = await open_console(browser, cluster.api)
    page = console.page

    await new_job(page, name=XSS_NAME, command=XSS_COMMAND, cronExpr="<img src=y onerror=alert(2)>")
    await expect(page.locator("#cron-preview")).to_contain_text("<img src=y")
    await page.click("#job-save-btn")
    await expect(page.locator('#job-form .invalid-feedback[data-for="cronExpr"]')).to_be_visible()
    await page.fill("#job-cronExpr", NEVER)
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()

    row = job_row(page, XSS_NAME)
    await expect(row.locator(".cell-name")).to_have_text(XSS_NAME)
    await expect(row.locator(".cell-command")).to_have_text(XSS_COMMAND)
    await row.locator(".act-run").click()

    async def ran() -> bool:
        return any(r["status"] == "succeeded" for r in await job_runs(cluster, XSS_NAME))

    await wait_until(ran, 20, "the job to run")
    await row.locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    await expect(page.locator("#log-modal-title")).to_have_text(f"Runs of {XSS_NAME}")
    output = page.locator("#log-modal .run pre.log-output").first
    await expect(output).to_have_text("<script>alert(1)</script>\n<b id=injected>bold</b>\n")
    await page.locator("#log-modal .btn-close").click()
    await row.locator(".act-delete").click()
    await dialog_ready(page, "#confirm-modal")
    await expect(page.locator("#confirm-text")).to_contain_text(XSS_NAME)
    await page.locator("#confirm-modal .btn-outline-secondary").click()

    # Nothing was injected: no such elements, no script beyond the page's own four (jQuery,
    # Bootstrap, Chart.js, the console).
    assert await page.locator("img").count() == 0
    assert await page.locator("#injected").count() == 0
    assert await page.locator("script").count() == 4
    assert XSS_NAME in await page.locator("body").inner_text()
    console.assert_quiet()


async def test_account_tokens_audit_and_users(cluster: Cluster, browser: Any) -> None:
    await cluster.start_manager()
    console = await open_console(
        browser, cluster.api, permissions=["clipboard-read", "clipboard-write"]
    )
    page = console.page
    await page.click("#tab-account")
    await expect(page.locator("#account-name")).to_have_text(ADMIN_USER)
    await expect(page.locator("#account-role")).to_have_text("admin")

    # A new token is shown once, with a copy button; it works until it is revoked.
    await page.fill("#token-name", "ci-script")
    await page.click("#token-create-btn")
    await expect(page.locator("#token-created")).to_be_visible()
    token = await page.locator("#token-value").input_value()
    assert token.startswith("gdts_")
    await page.click("#token-copy")
    assert await page.evaluate("navigator.clipboard.readText()") == token
    status, _ = await api_call(cluster.api, "GET", "/job/list", token=token)
    assert status == 200
    tokens_row = page.locator("#tokens-body tr.token-row", has_text="ci-script")
    await tokens_row.locator(".act-revoke").click()
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(tokens_row).to_have_count(0)
    status, _ = await api_call(cluster.api, "GET", "/job/list", token=token)
    assert status == 401

    # A wrong current password is shown under its field.
    await page.fill("#pw-current", "not-my-password")
    await page.fill("#pw-new", "a-new-password-1")
    await page.fill("#pw-repeat", "a-new-password-1")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#pw-current")).to_have_class(re.compile(r"\bis-invalid\b"))
    await expect(
        page.locator('#password-form .invalid-feedback[data-for="currentPassword"]')
    ).to_contain_text("wrong")

    # Users: create, change the role, delete.
    await page.click("#tab-users")
    await page.fill("#user-username", "bob")
    await page.select_option("#user-role", "guest")
    await page.fill("#user-password", "bob-password-1")
    await page.click("#user-form button[type=submit]")
    bob = page.locator('#users-body tr[data-user="bob"]')
    await expect(bob.locator("select")).to_have_value("guest")
    await bob.locator("select").select_option("user")
    await expect(page.locator("#toasts")).to_contain_text("bob is now user")
    roles = {u["username"]: u["role"] for u in await api_get(cluster.api, "/user/list")}
    assert roles["bob"] == "user"
    await bob.locator(".act-delete-user").click()
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(bob).to_have_count(0)

    # The audit trail, newest first, filtered by action.
    await page.click("#tab-audit")
    await expect(page.locator("#audit-body .audit-action").first).to_have_text("user.delete")
    await page.select_option("#audit-action", "token.revoke")
    await page.click("#audit-form button[type=submit]")
    await expect(page.locator("#audit-body tr.audit-row")).to_have_count(1)
    await expect(page.locator("#audit-body .audit-action")).to_have_text("token.revoke")
    await page.fill("#audit-user", "nobody-at-all")
    await page.select_option("#audit-action", "")
    await page.click("#audit-form button[type=submit]")
    await expect(page.locator("#audit-body")).to_contain_text("No entries")

    await page.click("#btn-logout")
    await expect(page).to_have_url(re.compile(r"/login\.html$"))
    console.assert_quiet()


async def test_the_console_fits_a_phone_without_page_level_horizontal_scroll(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_together(cluster.start_manager(), cluster.start_worker("w1"))
    long = "nightly-backup-of-the-customer-database-" + "x" * 60
    await save_job_fields(cluster.api, name=long, command="pg_dump " + "--option " * 40,
                          cronExpr="*/5 * * * *", timezone="Europe/Berlin")  # fmt: skip
    await api_post(cluster.api, "/job/run", name=long)
    console = await open_console(browser, cluster.api, viewport=PHONE)
    page = console.page
    await expect(job_row(page, long)).to_be_visible()
    await expect(page.locator('#workers-body tr[data-key="w1"]')).to_have_count(1)
    await page.screenshot(path=str(artifact("console-phone-jobs.png")))
    tabs = ("#tab-dashboard", "#tab-jobs", "#tab-workers", "#tab-notifications", "#tab-account",
            "#tab-audit", "#tab-users")  # fmt: skip
    for tab in tabs:
        await page.click(tab)
        await expect(page.locator(f"{tab}.active")).to_be_visible()
        assert await no_page_scroll(page), tab
    await page.click("#tab-jobs")
    await page.click("#btn-new-job")
    await dialog_ready(page, "#job-modal", "#job-name")
    await page.click("#job-advanced-toggle")
    await expect(page.locator("#job-timeout")).to_be_visible()
    assert await no_page_scroll(page), "job dialog"
    await page.locator("#job-modal .btn-close").click()
    await expect(page.locator("#job-modal")).to_be_hidden()
    await job_row(page, long).locator(".act-logs").click()
    await dialog_ready(page, "#log-modal")
    await expect(page.locator("#log-modal .run").first).to_be_visible(timeout=TIMEOUT_MS)
    assert await no_page_scroll(page), "logs view"
    await page.screenshot(path=str(artifact("console-phone-logs.png")))
    console.assert_quiet()
