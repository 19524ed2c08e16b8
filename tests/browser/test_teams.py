"""The console's Teams view, driven in a real headless Chromium against a real manager: an admin
makes a team, places members and manages its secrets (whose values never reach the page); a
maintainer of the team manages its secrets; a guest of the team sees their names only."""

from __future__ import annotations

from typing import Any

import pytest

from gdts.secretbox import new_key_entry
from tests.browser.conftest import INVALID, NEVER, artifact, dialog_ready, expect, open_console
from tests.support import Cluster, api_get, api_post, save_job_fields

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

SECRET_VALUE = "hunter2-Zq81-never-shown"
ALICE_VALUE = "alice-token-Kx27-never-shown"


def _row(page: Any, body: str, kind: str, name: str) -> Any:
    return page.locator(f'#{body} tr.{kind}-row[data-{kind}="{name}"]')


def team_row(page: Any, name: str) -> Any:
    return _row(page, "teams-body", "team", name)


def member_row(page: Any, name: str) -> Any:
    return page.locator(f'#members-body tr.member-row[data-user="{name}"]')


def secret_row(page: Any, name: str) -> Any:
    return _row(page, "secrets-body", "secret", name)


async def confirm(page: Any) -> None:
    await dialog_ready(page, "#confirm-modal")
    await page.click("#confirm-ok")
    await expect(page.locator("#confirm-modal")).to_be_hidden()


async def assert_no_value_in_page(page: Any) -> None:
    html = await page.content()
    assert SECRET_VALUE not in html and ALICE_VALUE not in html


async def test_teams_their_members_and_secrets_by_role(cluster: Cluster, browser: Any) -> None:
    await cluster.start_manager(secretKeys=[new_key_entry("k1")])
    for name in ("alice", "bob"):
        await api_post(cluster.api, "/user/save", username=name, role="user",
                       password=f"{name}-password-1")  # fmt: skip
    admin = await open_console(browser, cluster.api, view="teams")
    page = admin.page
    await expect(team_row(page, "default")).to_be_visible()

    # Create a team; a name taken is shown under the field.
    await page.fill("#team-name", "ops")
    await page.click("#team-create-btn")
    await expect(team_row(page, "ops")).to_be_visible()
    await expect(page.locator("#team-name")).to_have_value("")
    await page.fill("#team-name", "ops")
    await page.click("#team-create-btn")
    await expect(page.locator("#team-name")).to_have_class(INVALID)
    await expect(page.locator('#team-form .invalid-feedback[data-for="name"]')).to_contain_text(
        "exists"
    )

    # Members: alice as maintainer, bob as user, then a guest (his role changed in the table).
    await expect(page.locator("#team-detail-name")).to_have_text("ops")
    await page.fill("#member-username", "alice")
    await page.select_option("#member-role", "maintainer")
    await page.click("#member-save-btn")
    await expect(member_row(page, "alice").locator("select")).to_have_value("maintainer")
    await page.fill("#member-username", "bob")
    await page.select_option("#member-role", "user")
    await page.click("#member-save-btn")
    await member_row(page, "bob").locator("select").select_option("guest")
    await expect(team_row(page, "ops").locator(".team-members")).to_contain_text("bob (guest)")
    # An account that does not exist is named under the username.
    await page.fill("#member-username", "nobody")
    await page.click("#member-save-btn")
    feedback = page.locator('#member-form .invalid-feedback[data-for="username"]')
    await expect(feedback).to_contain_text("no account named")

    # A secret: its name shows, its value nowhere; the value input is emptied.
    await expect(page.locator("#secrets-body")).to_contain_text("No secret yet")
    await page.fill("#secret-name", "db-password")
    await page.fill("#secret-value", SECRET_VALUE)
    await page.click("#secret-save-btn")
    row = secret_row(page, "db-password")
    await expect(row.locator(".secret-by")).to_have_text("admin")
    await expect(row.locator(".secret-key")).to_have_text("k1")
    await expect(page.locator("#secret-value")).to_have_value("")
    await expect(page.locator("#secret-value")).to_have_attribute("type", "password")
    await assert_no_value_in_page(page)

    # The team has a secret: it is not deleted, and the page says why.
    await team_row(page, "ops").locator(".act-delete-team").click()
    await confirm(page)
    await expect(page.locator("#teams-error")).to_contain_text("still has 1 secret(s)")
    await expect(team_row(page, "ops")).to_be_visible()

    # A job names the secret: it is not deleted, and the page names the job.
    await save_job_fields(cluster.api, name="dump", command="true", cronExpr=NEVER, team="ops",
                          secretEnv={"PGPASSWORD": "db-password"})  # fmt: skip
    await row.locator(".act-delete-secret").click()
    await confirm(page)
    await expect(page.locator("#team-detail-error")).to_contain_text("dump")
    await expect(row).to_be_visible()
    await page.screenshot(path=str(artifact("console-teams-admin.png")), full_page=True)
    await api_post(cluster.api, "/job/delete", name="dump")
    await row.locator(".act-delete-secret").click()
    await confirm(page)
    await expect(row).to_have_count(0)
    assert (await api_get(cluster.api, "/secret/list", team="ops"))["secrets"] == []

    # alice, a maintainer of ops: her role, and the secret form.
    await api_post(cluster.api, "/secret/save", team="ops", name="db-password", value=SECRET_VALUE)
    alice = await open_console(browser, cluster.api, "alice", "alice-password-1", view="teams")
    apage = alice.page
    await expect(team_row(apage, "ops").locator(".team-role")).to_have_text("maintainer")
    await team_row(apage, "ops").locator(".act-open-team").click()
    await expect(apage.locator("#team-detail-name")).to_have_text("ops")
    await expect(apage.locator("#team-form")).to_be_hidden()
    await expect(apage.locator("#member-form")).to_be_hidden()
    await expect(secret_row(apage, "db-password")).to_be_visible()
    await expect(apage.locator("#secret-form")).to_be_visible()
    await apage.fill("#secret-name", "api-token")
    await apage.fill("#secret-value", ALICE_VALUE)
    await apage.click("#secret-save-btn")
    await expect(secret_row(apage, "api-token").locator(".secret-by")).to_have_text("alice")
    await secret_row(apage, "api-token").locator(".act-delete-secret").click()
    await confirm(apage)
    await expect(secret_row(apage, "api-token")).to_have_count(0)
    await assert_no_value_in_page(apage)

    # bob, a guest of ops: the names only.
    bob = await open_console(browser, cluster.api, "bob", "bob-password-1", view="teams")
    bpage = bob.page
    await expect(team_row(bpage, "ops").locator(".team-role")).to_have_text("guest")
    await team_row(bpage, "ops").locator(".act-open-team").click()
    await expect(bpage.locator("#team-detail-name")).to_have_text("ops")
    await expect(secret_row(bpage, "db-password")).to_be_visible()
    await expect(bpage.locator("#secrets-readonly-note")).to_be_visible()
    await expect(bpage.locator("#secret-form")).to_be_hidden()
    await expect(bpage.locator("#secrets-body .act-delete-secret")).to_have_count(0)
    await bpage.screenshot(path=str(artifact("console-teams-guest.png")), full_page=True)

    # The admin takes bob out of the team.
    await member_row(page, "bob").locator(".act-remove-member").click()
    await confirm(page)
    await expect(member_row(page, "bob")).to_have_count(0)
    [ops] = [t for t in await api_get(cluster.api, "/team/list") if t["name"] == "ops"]
    assert ops["members"] == [{"username": "alice", "role": "maintainer"}]

    for console in (admin, alice, bob):
        console.assert_quiet()  # no CSP violation, no script error, no browser dialog
