"""The console's Notifications view and the job dialog's notify rules, driven in a real headless
Chromium against a real manager (and workers), with a real webhook receiver on loopback that
checks each message's HMAC signature (tests/notify_receiver.py). Every wait is on a condition."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from gdts.localstack import free_port
from tests.browser.conftest import (
    INVALID,
    NEVER,
    PHONE,
    XSS_NAME,
    artifact,
    dialog_ready,
    expect,
    job_row,
    new_job,
    open_console,
)
from tests.notify_receiver import FAST_NOTIFIER, PUBLIC_URL, WebhookReceiver
from tests.support import Cluster, api_get, api_post, job_runs, save_job_fields, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


def channel_row(page: Any, name: str) -> Any:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return page.locator(f'#channels-body tr.channel-row[data-channel="{quoted}"]')


async def save_channel(cluster: Cluster, channel: dict[str, Any]) -> Any:
    return await api_post(cluster.api, "/notify/channel/save", channel=json.dumps(channel))


async def channel_view(cluster: Cluster, name: str) -> dict[str, Any]:
    [found] = [c for c in await api_get(cluster.api, "/notify/channels") if c["name"] == name]
    return found


async def assert_no_secret_in_page(page: Any, receiver: WebhookReceiver) -> None:
    html = await page.content()
    assert receiver.secret not in html
    assert receiver.url not in html  # the URL is a secret too: only "http://127.0.0.1/…" shows


async def test_an_admin_adds_a_webhook_channel_whose_secrets_never_reach_the_page(
    cluster: Cluster, browser: Any, receiver: WebhookReceiver
) -> None:
    await cluster.start_manager(**FAST_NOTIFIER)
    console = await open_console(browser, cluster.api)
    page = console.page
    await page.click("#tab-notifications")
    await expect(page.locator("#channels-body")).to_contain_text("No channel yet")

    await page.click("#btn-new-channel")
    await dialog_ready(page, "#channel-modal", "#channel-name")
    await page.fill("#channel-name", "ops")
    await page.select_option("#channel-type", "webhook")
    # The fields follow the type: a webhook takes a URL, headers and a signing secret.
    await expect(page.locator("#channel-settings [name^='settings.']")).to_have_count(3)
    await page.fill("#channel-s-url", receiver.url)
    await page.fill("#channel-s-secret", receiver.secret)
    await page.click("#channel-save-btn")
    await expect(page.locator("#channel-modal")).to_be_hidden()

    row = channel_row(page, "ops")
    await expect(row.locator(".channel-type")).to_have_text("webhook")
    await expect(row.locator('.secret-set[data-setting="url"]')).to_have_text("url: set")
    await expect(row.locator('.secret-set[data-setting="secret"]')).to_have_text("secret: set")
    await expect(row.locator('.secret-unset[data-setting="headers"]')).to_have_text(
        "headers: not set"
    )
    await expect(row.locator('.setting[data-setting="url"]')).to_have_text(
        "url: http://127.0.0.1/…"
    )
    await assert_no_secret_in_page(page, receiver)
    assert (await channel_view(cluster, "ops"))["secretsSet"] == ["url", "secret"]

    # "Send test": a message the receiver takes, signed with the secret.
    await row.locator(".act-test-channel").click()
    await expect(row.locator(".test-result")).to_have_text("delivered")
    assert [m["event"] for m in receiver.bodies] == ["test"] and receiver.refused == []

    # Edit: the secrets come empty, saying they are set; saved without them, they are kept.
    await row.locator(".act-edit-channel").click()
    await dialog_ready(page, "#channel-modal", "#channel-s-url")
    await expect(page.locator("#channel-name")).to_have_attribute("readonly", "")
    for setting in ("url", "secret"):
        field = page.locator(f"#channel-s-{setting}")
        await expect(field).to_have_value("")
        await expect(field).to_have_attribute("type", "password")
        await expect(field).to_have_attribute(
            "placeholder", re.compile(r"set — leave empty to keep")
        )
    await expect(page.locator("#channel-s-headers")).to_have_attribute("placeholder", "(not set)")
    await page.fill("#channel-s-headers", "X-Team: ops")
    await page.screenshot(path=str(artifact("console-channel-dialog.png")))
    await page.click("#channel-save-btn")
    await expect(page.locator("#channel-modal")).to_be_hidden()
    await expect(row.locator('.secret-set[data-setting="headers"]')).to_be_visible()
    assert (await channel_view(cluster, "ops"))["secretsSet"] == ["url", "headers", "secret"]
    await row.locator(".act-test-channel").click()
    await expect(row.locator(".test-result")).to_have_text("delivered")
    # Signed with the kept secret (the receiver refuses a wrong signature), sent to the kept URL.
    assert [m["event"] for m in receiver.bodies] == ["test", "test"] and receiver.refused == []

    # The receiver goes away: the next test shows why it was not delivered.
    await receiver.down()
    await row.locator(".act-test-channel").click()
    result = row.locator(".test-result.test-failed")
    await expect(result).to_contain_text("Not delivered: cannot connect to 127.0.0.1")
    await expect(page.locator("#toasts")).to_contain_text("not delivered")
    await assert_no_secret_in_page(page, receiver)

    # A bad setting is named under its field; the dialog keeps what was typed.
    await page.click("#btn-new-channel")
    await dialog_ready(page, "#channel-modal", "#channel-name")
    await page.fill("#channel-name", "mail")
    await page.select_option("#channel-type", "email")
    await page.fill("#channel-s-host", "smtp.example.test")
    await page.fill("#channel-s-from", "gdts@example.test")
    await page.fill("#channel-s-to", "ops@example.test\nnot-an-address")
    await page.click("#channel-save-btn")
    await expect(page.locator("#channel-s-to")).to_have_class(INVALID)
    feedback = page.locator('#channel-form .invalid-feedback[data-for="settings.to"]')
    await expect(feedback).to_contain_text("settings.to[1]")
    await page.fill("#channel-s-to", "ops@example.test, oncall@example.test")
    await page.fill("#channel-s-port", "2525")
    await page.click("#channel-save-btn")
    await expect(page.locator("#channel-modal")).to_be_hidden()
    mail = await channel_view(cluster, "mail")
    assert mail["settings"] == {"host": "smtp.example.test", "port": 2525,
                                "security": "starttls", "from": "gdts@example.test",
                                "to": ["ops@example.test", "oncall@example.test"]}  # fmt: skip
    await expect(channel_row(page, "mail").locator('.setting[data-setting="to"]')).to_have_text(
        "to: ops@example.test, oncall@example.test"
    )

    # Delete asks first; cancelling keeps the channel.
    await row.locator(".act-delete-channel").click()
    await dialog_ready(page, "#confirm-modal")
    await expect(page.locator("#confirm-text")).to_contain_text("“ops”")
    await page.locator("#confirm-modal .btn-outline-secondary").click()
    await expect(page.locator("#confirm-modal")).to_be_hidden()
    await row.locator(".act-delete-channel").click()
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(row).to_have_count(0)
    assert [c["name"] for c in await api_get(cluster.api, "/notify/channels")] == ["mail"]
    console.assert_quiet()


async def test_cluster_rules_are_edited_and_the_outbox_shows_what_was_sent_and_what_failed(
    cluster: Cluster, browser: Any, receiver: WebhookReceiver
) -> None:
    # One try only: a delivery that fails is recorded failed at once.
    await cluster.start_manager(**FAST_NOTIFIER, notifyMaxTries=1)
    await save_channel(cluster, receiver.channel("ops"))
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    await save_channel(cluster, {"name": "dead", "type": "webhook", "settings": {"url": closed}})
    console = await open_console(browser, cluster.api)
    page = console.page
    await page.click("#tab-notifications")
    await expect(page.locator("#outbox-body")).to_contain_text("Nothing sent yet")
    await expect(page.locator("#notify-minInterval")).to_have_value("300")

    rules = page.locator("#notify-rules-list .rule-row")
    await expect(rules).to_have_count(0)
    await page.click("#notify-rules-add")
    await page.click("#notify-rules-add")
    await rules.nth(0).locator("select").select_option("ops")
    await expect(rules.nth(0).locator('input[value="worker_offline"]')).to_be_checked()
    await rules.nth(0).locator('input[value="worker_online"]').check()
    await rules.nth(1).locator("select").select_option("dead")
    await rules.nth(1).locator('input[value="worker_offline"]').uncheck()
    # Errors land next to their field: a rule with no event, then the interval.
    await page.click("#notify-rules-save")
    await expect(rules.nth(1).locator('input[value="worker_online"]')).to_have_class(INVALID)
    await expect(rules.nth(1).locator('.invalid-feedback[data-for="rules[1].on"]')).to_contain_text(
        "rules[1].on"
    )
    await rules.nth(1).locator('input[value="worker_online"]').check()
    await page.fill("#notify-minInterval", "soon")
    await page.click("#notify-rules-save")
    await expect(page.locator("#notify-minInterval")).to_have_class(INVALID)
    await expect(
        page.locator('#notify-rules-form .invalid-feedback[data-for="minInterval"]')
    ).to_contain_text("minInterval")
    await page.fill("#notify-minInterval", "1")
    await page.click("#notify-rules-save")
    await expect(page.locator("#toasts")).to_contain_text("Saved the cluster’s rules")
    assert await api_get(cluster.api, "/notify/rules") == {
        "rules": [{"channel": "ops", "on": ["worker_offline", "worker_online"]},
                  {"channel": "dead", "on": ["worker_online"]}],
        "minInterval": 1.0,
    }  # fmt: skip

    # A worker comes online: the receiver hears of it; the closed port's delivery fails.
    await cluster.start_worker("w1")
    sent = page.locator('#outbox-body tr.outbox-row[data-channel="ops"]')
    failed = page.locator('#outbox-body tr.outbox-row[data-channel="dead"]')
    await expect(sent.locator(".outbox-state")).to_have_text("sent")
    await expect(sent.locator(".outbox-title")).to_contain_text("worker w1 came online")
    await expect(failed.locator(".outbox-state")).to_have_text("failed")
    await expect(failed).to_have_class(re.compile(r"\btable-danger\b"))
    await expect(failed.locator(".outbox-error")).to_contain_text("cannot connect to 127.0.0.1")
    await expect(page.locator("#outbox-count-sent")).to_have_text("sent 1")
    await expect(page.locator("#outbox-count-failed")).to_have_text("failed 1")
    await expect(page.locator("#outbox-count-failed")).to_have_class(re.compile(r"text-bg-danger"))
    assert receiver.about(event="worker_online", worker="w1")
    await page.screenshot(path=str(artifact("console-notifications.png")), full_page=True)
    await page.select_option("#outbox-state", "failed")
    await expect(page.locator("#outbox-body tr.outbox-row")).to_have_count(1)
    await expect(page.locator("#outbox-body tr.outbox-row")).to_have_attribute(
        "data-channel", "dead"
    )

    # The rules are what the view shows when it is opened again.
    await page.reload()
    await page.click("#tab-notifications")
    await expect(rules).to_have_count(2)
    await expect(rules.nth(0).locator("select")).to_have_value("ops")
    await expect(rules.nth(1).locator("select")).to_have_value("dead")
    await expect(rules.nth(1).locator('input[value="worker_offline"]')).not_to_be_checked()
    await expect(page.locator("#notify-minInterval")).to_have_value("1")
    # Filled in, the view still fits a phone: wide tables scroll inside their own box.
    await page.set_viewport_size(PHONE)
    await expect(page.locator("#outbox-body tr.outbox-row")).to_have_count(2)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.screenshot(path=str(artifact("console-phone-notifications.png")), full_page=True)
    console.assert_quiet()


async def test_a_jobs_notify_rules_round_trip_through_the_job_dialog(
    cluster: Cluster, browser: Any
) -> None:
    await cluster.start_manager()
    for name in ("ops", "pager"):
        url = f"https://hooks.example.test/{name}"
        await save_channel(cluster, {"name": name, "type": "slack", "settings": {"url": url}})
    console = await open_console(browser, cluster.api)
    page = console.page
    rows = page.locator("#job-notify-rules .rule-row")

    await new_job(page, name="nightly", command="echo nightly", cronExpr=NEVER)
    # The preview of the next runs appears above: wait for it, or the rows move under a click.
    await expect(page.locator("#cron-preview .preview-runs li")).to_have_count(5)
    await expect(page.locator("#job-notify")).to_be_hidden()  # folded: no rules yet
    await page.click("#job-notify-toggle")
    await page.click("#job-notify-add")
    await rows.nth(0).locator("select").select_option("ops")
    await page.click("#job-notify-add")
    await rows.nth(1).locator("select").select_option("pager")
    for event in ("failed", "timeout", "missed", "lost"):  # what a new rule starts with
        await rows.nth(1).locator(f'input[value="{event}"]').uncheck()
    for event in ("succeeded", "recovered"):
        await rows.nth(1).locator(f'input[value="{event}"]').check()
    await page.fill("#job-notifyMinInterval", "60")
    await page.screenshot(path=str(artifact("console-job-notify.png")))
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    row = job_row(page, "nightly")
    await expect(row.locator(".notify-summary")).to_have_text("notifies ops, pager")
    job = await listed_job(cluster, "nightly")
    assert job["notify"] == [
        {"channel": "ops", "on": ["failed", "timeout", "missed", "lost"]},
        {"channel": "pager", "on": ["succeeded", "recovered"]},
    ]
    assert job["notifyMinInterval"] == 60

    # Editing shows them; one removed, the other is saved as it was.
    await edit_job(page, "nightly")
    await expect(page.locator("#job-notify")).to_be_visible()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator("select")).to_have_value("ops")
    await expect(rows.nth(1).locator("select")).to_have_value("pager")
    await expect(rows.nth(1).locator('input[value="succeeded"]')).to_be_checked()
    await expect(rows.nth(1).locator('input[value="failed"]')).not_to_be_checked()
    await expect(page.locator("#job-notifyMinInterval")).to_have_value("60")
    await rows.nth(0).locator(".rule-remove").click()
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0).locator("select")).to_have_attribute("name", "notify[0].channel")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    await expect(row.locator(".notify-summary")).to_have_text("notifies pager")
    job = await listed_job(cluster, "nightly")
    assert job["notify"] == [{"channel": "pager", "on": ["succeeded", "recovered"]}]
    assert job["notifyMinInterval"] == 60

    # The channel is deleted: the dialog still shows the rule, and saving names its field.
    await api_post(cluster.api, "/notify/channel/delete", name="pager")
    await edit_job(page, "nightly")
    select = rows.nth(0).locator("select")
    await expect(select).to_have_value("pager")
    await expect(select.locator("option:checked")).to_have_text("pager (no such channel)")
    await page.click("#job-save-btn")
    await expect(select).to_have_class(INVALID)
    await expect(
        page.locator('#job-form .invalid-feedback[data-for="notify[0].channel"]')
    ).to_contain_text("no channel named 'pager'")
    await expect(page.locator("#job-modal")).to_be_visible()
    await select.select_option("ops")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    await expect(row.locator(".notify-summary")).to_have_text("notifies ops")
    assert (await listed_job(cluster, "nightly"))["notify"] == [
        {"channel": "ops", "on": ["succeeded", "recovered"]}
    ]

    # No rule left: the job notifies nobody; the interval goes back to its default.
    await edit_job(page, "nightly")
    await rows.nth(0).locator(".rule-remove").click()
    await page.fill("#job-notifyMinInterval", "")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    await expect(row.locator(".notify-summary")).to_have_count(0)
    job = await listed_job(cluster, "nightly")
    assert job["notify"] is None and job["notifyMinInterval"] == 300
    console.assert_quiet()


async def edit_job(page: Any, name: str) -> None:
    """Open a job's dialog, settled: the preview of its next runs has come (it moves what is
    below it)."""
    await job_row(page, name).locator(".act-edit").click()
    await dialog_ready(page, "#job-modal", "#job-command")
    await expect(page.locator("#cron-preview .preview-runs li")).to_have_count(5)


async def listed_job(cluster: Cluster, name: str) -> dict[str, Any]:
    [job] = [j for j in await api_get(cluster.api, "/job/list") if j["name"] == name]
    return job


async def test_a_notifications_link_opens_the_jobs_log_at_that_run(
    cluster: Cluster, browser: Any, receiver: WebhookReceiver
) -> None:
    await cluster.start_together(cluster.start_manager(**FAST_NOTIFIER), cluster.start_worker("w1"))
    await save_channel(cluster, receiver.channel("ops"))
    name = "nightly report & co"  # the link encodes it
    await save_job_fields(
        cluster.api, name=name, command="echo broke; exit 3", cronExpr=NEVER,
        concurrencyPolicy="allow", notify=[{"channel": "ops", "on": ["failed"]}],
        notifyMinInterval=1,
    )  # fmt: skip
    linked = (await api_post(cluster.api, "/job/run", name=name))["planTime"]

    async def told() -> list[dict[str, Any]]:
        return [m for m in receiver.about(job=name) if m["planTime"] == linked]

    [message] = await wait_until(told, 30, "the failed run's message")
    link = message["link"]
    assert link.startswith(f"{PUBLIC_URL}/#log=nightly%20report%20%26%20co&planTime={linked}&")
    # Newer runs push the linked one to the log's second page.
    for _ in range(21):
        await api_post(cluster.api, "/job/run", name=name)

    async def all_logged() -> bool:
        return len(await job_runs(cluster, name)) == 22

    await wait_until(all_logged, 60, "22 runs to be logged")

    # Opened logged out: the login page keeps the link, and the console opens it after login.
    console = await open_console(browser, cluster.api, path="/#" + urlsplit(link).fragment)
    page = console.page
    await dialog_ready(page, "#log-modal")
    await expect(page.locator("#log-modal-title")).to_have_text(f"Runs of {name}")
    run = page.locator("#log-modal .run.run-linked")
    await expect(run).to_have_attribute("data-plan", str(linked))
    await expect(run.locator(".run-status")).to_have_text("failed")
    await expect(run.locator(".run-linked-badge")).to_be_visible()
    await expect(page.locator("#log-page-info")).to_have_text("Runs 21–22")
    await page.screenshot(path=str(artifact("console-linked-run.png")))
    await page.locator("#log-modal .btn-close").click()
    await expect(page.locator("#log-modal")).to_be_hidden()
    # A reload shows the view (the dashboard, the first), not the run again.
    await expect(page).to_have_url(re.compile(r"/#dashboard$"))

    # In an open console, the outbox's link to the run opens it the same way.
    await page.click("#tab-notifications")
    await page.locator(f'#outbox-body a.outbox-run[href*="planTime={linked}&"]').click()
    await dialog_ready(page, "#log-modal")
    await expect(run).to_have_attribute("data-plan", str(linked))
    console.assert_quiet()


async def test_a_user_sees_the_channels_names_but_no_admin_controls(
    cluster: Cluster, browser: Any, receiver: WebhookReceiver
) -> None:
    await cluster.start_manager()
    await save_channel(cluster, receiver.channel("ops"))
    slack = {"url": "https://hooks.example.test/T0/B0/key"}
    await save_channel(cluster, {"name": XSS_NAME, "type": "slack", "settings": slack})
    await api_post(cluster.api, "/user/save", username="alice", role="user",
                   password="alice-password-1")  # fmt: skip
    alice = await open_console(browser, cluster.api, "alice", "alice-password-1")
    page = alice.page
    await page.click("#tab-notifications")
    await expect(channel_row(page, "ops").locator(".channel-type")).to_have_text("webhook")
    await expect(channel_row(page, XSS_NAME).locator(".channel-name")).to_have_text(XSS_NAME)
    await expect(page.locator("#channels-body tr.channel-row")).to_have_count(2)
    await expect(channel_row(page, "ops").locator("td")).to_have_count(2)  # name and type only
    for admin_only in ("#btn-new-channel", "#notify-rules-card", "#notify-outbox-card"):
        await expect(page.locator(admin_only)).to_be_hidden()
    for action in ("test", "edit", "delete"):
        await expect(page.locator(f".act-{action}-channel")).to_have_count(0)
    await expect(page.locator(".secret-set, .setting")).to_have_count(0)
    html = await page.content()
    assert "hooks.example.test" not in html and "127.0.0.1" not in html
    assert await page.locator("img").count() == 0

    # Her job's rules pick from the same channels.
    await page.click("#tab-jobs")
    await new_job(page, name="alices", command="true", cronExpr=NEVER)
    await expect(page.locator("#cron-preview .preview-runs li")).to_have_count(5)
    await page.click("#job-notify-toggle")
    await page.click("#job-notify-add")
    options = page.locator("#job-notify-rules .rule-row select option")
    await expect(options).to_have_text(["— pick a channel —", XSS_NAME, "ops"])
    await page.locator("#job-notify-rules .rule-row select").select_option("ops")
    await page.click("#job-save-btn")
    await expect(page.locator("#job-modal")).to_be_hidden()
    assert (await listed_job(cluster, "alices"))["notify"] == [
        {"channel": "ops", "on": ["failed", "timeout", "missed", "lost"]}
    ]
    alice.assert_quiet()
