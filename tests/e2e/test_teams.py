"""Teams with a real worker: a member sees its team's job running on a worker and its runs on
the dashboard; a member of another team sees neither."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support import Cluster, api_call, api_post, wait_until

pytestmark = pytest.mark.asyncio
PASSWORD = "correct horse battery"


async def token_of(cluster: Cluster, username: str) -> str:
    """An account of role user, and an API token it makes for itself through a login."""
    await api_post(cluster.api, "/user/save", username=username, role="user", password=PASSWORD)
    # unsafe: the manager is 127.0.0.1, whose cookies the default jar does not keep.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            cluster.api + "/auth/login", data={"username": username, "password": PASSWORD}
        ) as response:
            csrf = (await response.json())["data"]["csrfToken"]
        async with http.post(
            cluster.api + "/token/create", data={"name": "t"}, headers={"X-CSRF-Token": csrf}
        ) as response:
            return (await response.json())["data"]["token"]  # fmt: skip


async def as_caller(cluster: Cluster, token: str, path: str, **params: str) -> object:
    status, body = await api_call(cluster.api, "GET", path, token=token, params=params)
    assert status == 200, body
    return body["data"]


async def test_workers_and_dashboard_name_only_the_callers_teams_jobs(cluster: Cluster) -> None:
    await cluster.start_manager()
    await cluster.start_worker("w1")
    member, outsider = await token_of(cluster, "member"), await token_of(cluster, "outsider")
    for team, who in (("alpha", "member"), ("beta", "outsider")):
        await api_post(cluster.api, "/team/save", name=team)
        await api_post(cluster.api, "/team/member/save", team=team, username=who, role="user")
        await api_post(cluster.api, "/team/member/delete", team="default", username=who)
    job = {"name": "alpha-runs", "command": "sleep 3", "cronExpr": "* * * * * *",
           "concurrencyPolicy": "allow"}  # fmt: skip
    status, body = await api_call(cluster.api, "POST", "/job/save", {"job": json.dumps(job)},
                                  token=member)  # fmt: skip
    assert status == 200, body

    async def running_as(token: str) -> list[str]:
        workers = await as_caller(cluster, token, "/worker/list")
        assert isinstance(workers, list)
        return [name for w in workers for name in w["running"]]

    await wait_until(lambda: running_as(member), 30, "the member seeing its job running")
    assert await running_as(outsider) == []

    async def runs_counted(token: str) -> int:
        summary = await as_caller(cluster, token, "/dashboard/summary")
        assert isinstance(summary, dict)
        return sum(summary["runs"].values())

    await wait_until(lambda: runs_counted(member), 30, "the member's dashboard counting runs")
    assert await runs_counted(outsider) == 0
    busy = await as_caller(cluster, outsider, "/dashboard/summary")
    assert isinstance(busy, dict)
    assert all(row["running"] == 0 for row in busy["runningPerWorker"])
