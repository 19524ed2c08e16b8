"""Operators hear about failures (README, "Notifications"): through real managers and workers,
to a real webhook receiver on loopback. One message per event however many managers see it;
none lost when the worker dies right after the run or the receiver is down for a while; a
storm counted into one message; a worker's death told once, its clean stop not at all; no
secret in any answer or audit entry."""

from __future__ import annotations

import json
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

from tests.notify_receiver import FAST_NOTIFIER, PUBLIC_URL, WebhookReceiver
from tests.support import ADMIN_TOKEN, Child, Cluster, api_get, api_post, wait_until


def _managers(cluster: Cluster, count: int = 2) -> list[Coroutine[Any, Any, Child]]:
    """Starts of ``count`` managers that notify fast, for Cluster.start_together."""
    return [cluster.start_manager(**FAST_NOTIFIER) for _ in range(count)]


async def _save(cluster: Cluster, **job: Any) -> None:
    await api_post(cluster.api, "/job/save", job=json.dumps(job))


async def _channel(cluster: Cluster, channel: dict[str, Any]) -> dict[str, Any]:
    return await api_post(cluster.api, "/notify/channel/save", channel=json.dumps(channel))


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_each_failed_run_is_told_once_with_what_happened(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    # Two managers: both take marked runs, one message each.
    await cluster.start_together(
        *_managers(cluster), *(cluster.start_worker(f"w{i}") for i in range(3))
    )
    await _channel(cluster, receiver.channel("ops"))
    await _save(cluster, name="nightly", command="echo starting; echo it broke >&2; exit 3",
                cronExpr="0 0 0 1 1 *", notify=[{"channel": "ops", "on": ["failed"]}],
                notifyMinInterval=1)  # fmt: skip
    plans = []
    for n in range(1, 4):
        plans.append((await api_post(cluster.api, "/job/run", name="nightly"))["planTime"])
        await wait_until(_at_least(receiver, n, job="nightly"), 30, f"message {n}")
    # A run that succeeds is not a rule's event: the next failure's message comes after it.
    await _save(cluster, name="nightly", command="true", cronExpr="0 0 0 1 1 *",
                notify=[{"channel": "ops", "on": ["failed"]}], notifyMinInterval=1)  # fmt: skip
    ok_plan = (await api_post(cluster.api, "/job/run", name="nightly"))["planTime"]
    await wait_until(lambda: _run_logged(cluster, "nightly", ok_plan), 30, "the good run")
    await _save(cluster, name="nightly", command="exit 4", cronExpr="0 0 0 1 1 *",
                notify=[{"channel": "ops", "on": ["failed"]}], notifyMinInterval=1)  # fmt: skip
    plans.append((await api_post(cluster.api, "/job/run", name="nightly"))["planTime"])
    await wait_until(_at_least(receiver, 4, job="nightly"), 30, "message 4")

    told = receiver.about(job="nightly")
    assert sorted(m["planTime"] for m in told) == sorted(plans), told  # once each, no other
    first = next(m for m in told if m["planTime"] == plans[0])
    assert first["event"] == "failed" and first["status"] == "failed"
    assert first["exitCode"] == 3 and first["count"] == 1 and first["worker"] in {"w0", "w1", "w2"}
    assert first["output"]["head"] == ["starting", "it broke"]
    assert first["startTime"] and first["endTime"] >= first["startTime"]
    assert first["link"] == f"{PUBLIC_URL}/#log=nightly&planTime={plans[0]}&attempt=1"
    assert "nightly" in first["title"] and "failed" in first["text"]
    assert receiver.refused == []
    outbox = await api_get(cluster.api, "/notify/outbox", state="sent")
    assert outbox["counts"].get("sent") == 4 and not outbox["counts"].get("queued")


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_worker_killed_right_after_a_failed_run_still_tells_once(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    # The result waits in the worker's buffer (and its journal) for a minute: the worker dies
    # holding it, unwritten.
    _, worker = await cluster.start_together(
        *_managers(cluster, 1), cluster.start_worker("w0", jobLogCommitTimeout=60_000)
    )
    await _channel(cluster, receiver.channel("ops"))
    done = cluster.stack.tmp / "ran"
    await _save(cluster, name="fragile", command=f"touch {done}; exit 1", cronExpr="0 0 0 1 1 *",
                notify=[{"channel": "ops", "on": ["failed", "lost"]}],
                notifyMinInterval=1)  # fmt: skip
    plan = (await api_post(cluster.api, "/job/run", name="fragile"))["planTime"]
    await wait_until(lambda: _exists(done), 30, "the run")
    await wait_until(lambda: _released(cluster, "fragile"), 30, "the run's end")
    await worker.kill()
    assert not await _run_logged(cluster, "fragile", plan)  # nothing written yet
    await cluster.supervisor.restart(worker)  # its journal is written at start
    await wait_until(_at_least(receiver, 1, job="fragile"), 60, "the message")
    # A second run's message (on a worker that writes at once): the first is not told again
    # meanwhile.
    assert await worker.terminate(grace=30) == 0
    await cluster.start_worker("w1")
    second = (await api_post(cluster.api, "/job/run", name="fragile"))["planTime"]
    await wait_until(_at_least(receiver, 2, job="fragile"), 30, "the second message")
    told = receiver.about(job="fragile")
    assert sorted(m["planTime"] for m in told) == [plan, second], told
    assert told[0]["status"] == "failed" and told[0]["event"] == "failed"


@pytest.mark.asyncio
@pytest.mark.timeout(180)
@pytest.mark.waits
async def test_a_storm_is_counted_and_a_receiver_down_for_30_s_gets_its_message(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    await cluster.start_together(
        *_managers(cluster), cluster.start_worker("w0"), cluster.start_worker("w1")
    )
    late = WebhookReceiver("late-s3cr3t")  # down at first
    await _channel(cluster, receiver.channel("ops"))
    await _channel(cluster, late.channel("late"))
    await _save(cluster, name="once", command="exit 2", cronExpr="0 0 0 1 1 *",
                notify=[{"channel": "late", "on": ["failed"]}])  # fmt: skip
    await api_post(cluster.api, "/job/run", name="once")
    # A storm: every second a run and its three retries fail (each attempt is an event), so
    # 60 failures take 15 s.
    await _save(cluster, name="storm", command="exit 1", cronExpr="* * * * * *", retries=3,
                retryBackoff=0.1, notify=[{"channel": "ops", "on": ["failed"]}],
                notifyMinInterval=20)  # fmt: skip
    try:
        # The storm's first failure is told at once; the ones after it wait for the interval.
        await wait_until(_at_least(receiver, 1, job="storm"), 30, "the storm's first")
        first = receiver.about(job="storm")[0]
        # At once: what was queued when it went (the first tick's attempts, taken in one look).
        assert first["count"] <= 4

        async def trying() -> list[dict[str, Any]]:
            events = (await api_get(cluster.api, "/notify/outbox", state="queued"))["events"]
            return [e for e in events if e["channel"] == "late" and e.get("tries", 0) >= 1]

        queued = await wait_until(trying, 30, "the late channel's message tried")
        assert queued[0]["job"] == "once" and "cannot connect" in queued[0]["error"]
        down_since = time.monotonic()

        async def down_30_s() -> bool:
            return time.monotonic() - down_since >= 30 and bool(await trying())

        await wait_until(down_30_s, 45, "30 s of the receiver down, the message still queued")
        assert late.bodies == []
        await late.up()
        await wait_until(_at_least(late, 1, job="once"), 30, "the late message")
        assert len(late.about(job="once")) == 1

        await wait_until(_at_least(receiver, 2, job="storm"), 30, "the storm's count")
        await _save(cluster, name="storm", command="exit 1", cronExpr="* * * * * *",
                    enabled=False)  # fmt: skip
        told = receiver.about(job="storm")
        assert len(told) == 2, told  # one message per interval
        counted = told[1]
        assert first["count"] + counted["count"] >= 60  # 20 s of failures, 3 or 4 a second
        assert counted["firstTime"] > first["planTime"]
        assert f"stands for {counted['count']} events" in counted["text"]
    finally:
        await late.down()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_worker_offline_is_told_once_after_a_kill_and_not_after_a_clean_stop(
    cluster: Cluster, receiver: WebhookReceiver
) -> None:
    await cluster.start_together(*_managers(cluster))
    await _channel(cluster, receiver.channel("ops"))
    await api_post(cluster.api, "/notify/rules/save", minInterval="1",
                   rules=json.dumps([{"channel": "ops", "on": ["worker_offline"]}]))  # fmt: skip
    leaving, doomed = await cluster.start_together(
        cluster.start_worker("leaving"), cluster.start_worker("doomed")
    )
    assert await leaving.terminate(grace=30) == 0
    await doomed.kill()
    await wait_until(_at_least(receiver, 1, event="worker_offline"), 30, "offline")
    # The next registration to die is told too, and nothing else came in between.
    other = await cluster.start_worker("later")
    await other.kill()
    await wait_until(_at_least(receiver, 2, event="worker_offline"), 30, "second")
    assert [m["worker"] for m in receiver.bodies] == ["doomed", "later"], receiver.bodies
    assert "doomed went offline" in receiver.bodies[0]["title"]


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_no_answer_or_audit_entry_holds_a_secret(cluster: Cluster) -> None:
    await cluster.start_manager(**FAST_NOTIFIER)
    secrets = {
        "webhook": {"url": "https://hooks.example.test/T0KEN-IN-URL", "secret": "hmac-s3cr3t",
                    "headers": {"Authorization": "Bearer header-s3cr3t"}},
        "slack": {"url": "https://hooks.slack.com/services/SLACK-S3CR3T"},
        "telegram": {"botToken": "123:TELEGRAM-S3CR3T", "chatId": "42"},
        "dingtalk": {"url": "https://oapi.dingtalk.com/robot/send?access_token=DING-S3CR3T",
                     "secret": "SECding-sign-s3cr3t"},
        "wecom": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=WECOM-S3CR3T"},
        "email": {"host": "smtp.example.test", "username": "ops", "password": "smtp-s3cr3t",
                  "from": "gdts@example.test", "to": ["ops@example.test"]},
    }  # fmt: skip
    answers = []
    for kind, settings in secrets.items():
        channel = {"name": f"{kind}-ch", "type": kind, "settings": settings}
        answers.append(await _channel(cluster, channel))
        # Saved again without its secrets: they are kept, not erased, and still not shown.
        public = {k: v for k, v in settings.items() if k in ("chatId", "host", "from", "to")}
        answers.append(await _channel(cluster, {**channel, "settings": public}))
    answers.append(await api_get(cluster.api, "/notify/channels"))
    answers.append(await api_post(cluster.api, "/notify/channel/delete", name="wecom-ch"))
    answers.append(await api_get(cluster.api, "/audit", limit=100))
    text = json.dumps(answers)
    for leaked in ("T0KEN-IN-URL", "hmac-s3cr3t", "header-s3cr3t", "SLACK-S3CR3T",
                   "TELEGRAM-S3CR3T", "DING-S3CR3T", "ding-sign-s3cr3t", "WECOM-S3CR3T",
                   "smtp-s3cr3t"):  # fmt: skip
        assert leaked not in text, leaked
    listed = {c["name"]: c for c in answers[12]}
    assert listed["telegram-ch"]["secretsSet"] == ["botToken"]
    assert listed["webhook-ch"]["settings"]["url"] == "https://hooks.example.test/…"
    assert listed["email-ch"]["settings"]["to"] == ["ops@example.test"]


def _at_least(receiver: WebhookReceiver, count: int, **fields: Any) -> Any:
    """A check for wait_until: ``count`` messages with these fields have arrived."""

    async def check() -> bool:
        return len(receiver.about(**fields)) >= count

    return check


async def _run_logged(cluster: Cluster, name: str, plan: int) -> bool:
    runs = await api_get(cluster.api, "/job/log", name=name, limit=100)
    return any(r["planTime"] == plan for r in runs)


async def _released(cluster: Cluster, name: str) -> bool:
    jobs = await api_get(cluster.api, "/job/list")
    return not next(j for j in jobs if j["name"] == name)["running"]


async def _exists(path: Any) -> bool:
    return path.exists()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_message_given_up_after_its_tries_is_recorded_failed_with_a_metric(
    cluster: Cluster,
) -> None:
    await cluster.start_together(
        cluster.start_manager(**{**FAST_NOTIFIER, "notifyMaxTries": 2}), cluster.start_worker("w0")
    )
    nowhere = WebhookReceiver("unused")  # never up: its port refuses
    await _channel(cluster, nowhere.channel("void"))
    await _save(cluster, name="doomed", command="exit 1", cronExpr="0 0 0 1 1 *",
                notify=[{"channel": "void", "on": ["failed"]}])  # fmt: skip
    await api_post(cluster.api, "/job/run", name="doomed")

    async def failed() -> list[dict[str, Any]]:
        return (await api_get(cluster.api, "/notify/outbox", state="failed"))["events"]

    events = await wait_until(failed, 30, "the event given up")
    assert events[0]["job"] == "doomed" and events[0]["tries"] == 2
    assert "127.0.0.1" in events[0]["error"]
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with session.get(cluster.api + "/metrics", headers=auth) as response:
            metrics = await response.text()
    assert "gdts_notification_events_failed_total 1.0" in metrics
    assert 'gdts_notifications_total{result="retry",type="webhook"} 1.0' in metrics
