"""The notifier's pure decisions (gdts.notify.rules, gdts.notify.policy), with literal runs and
times: which runs a worker marks, which event a run is for each rule, recovered following a
job's outcomes, the storm interval, the merged message and the retry backoff."""

from __future__ import annotations

from typing import Any

import pytest

from gdts.errors import InvalidFieldError
from gdts.job import Job
from gdts.notify.notice import CLUSTER_EVENTS
from gdts.notify.policy import (
    Queued,
    batch_of,
    merged,
    retry_delay_ms,
    run_link,
    send_at_ms,
    take_runs,
    worker_events,
)
from gdts.notify.rules import Rule, event_for, parse_rules, worth_flagging
from gdts.runrecord import RunStatus
from gdts.worker.records import notify_mark

T = 1_800_000_000_000  # epoch ms
FAILED_ONLY = Rule("ops", frozenset({"failed"}))
RECOVERY = Rule("ops", frozenset({"failed", "recovered"}))


def run(plan_ms: int, status: str, *rules: Rule, job: str = "j", **extra: Any) -> dict[str, Any]:
    return {
        "_id": f"{job}-{plan_ms}", "jobName": job, "planTime": plan_ms, "attempt": 1,
        "status": status, "startTime": plan_ms + 5, "endTime": plan_ms + 900, "worker": "w1",
        "exitCode": 1 if status == "failed" else 0, "err": "", "output": "",
        "notify": {"rules": [r.to_api() for r in rules], "minInterval": 60.0}, **extra,
    }  # fmt: skip


def test_rules_are_checked_naming_the_bad_element() -> None:
    rules = parse_rules("notify", [{"channel": "ops", "on": ["failed", "recovered"]}])
    assert rules == (RECOVERY,)
    assert parse_rules("notify", None) == ()
    for bad, where in (
        ("ops", "notify"),
        ([{"channel": "ops", "on": ["exploded"]}], r"notify\[0\]\.on"),
        ([{"channel": "ops", "on": []}], r"notify\[0\]\.on"),
        ([{"channel": "a/b", "on": ["failed"]}], r"notify\[0\]\.channel"),
        ([{"channel": "ops", "on": ["failed"], "to": "x"}], r"notify\[0\]\.to"),
        ([{"channel": "ops", "on": ["failed"]}] * 21, "notify"),
    ):
        with pytest.raises(InvalidFieldError, match=f"^{where}: "):
            parse_rules("notify", bad)
    with pytest.raises(InvalidFieldError, match="worker_offline"):
        parse_rules("rules", [{"channel": "ops", "on": ["failed"]}], CLUSTER_EVENTS)


def test_a_worker_marks_only_the_runs_a_rule_may_concern() -> None:
    assert worth_flagging([FAILED_ONLY], "failed")
    assert worth_flagging([FAILED_ONLY], "limit")  # over a limit: a failure
    assert not worth_flagging([FAILED_ONLY], "succeeded")
    assert not worth_flagging([], "failed")
    # recovered needs every outcome of the job; completed every run that ended, not a miss.
    assert worth_flagging([RECOVERY], "succeeded")
    completed = Rule("ops", frozenset({"completed"}))
    assert worth_flagging([completed], "killed") and not worth_flagging([completed], "missed")


def test_each_rule_gets_the_most_telling_event_it_listens_to() -> None:
    everything = Rule("ops", frozenset({"succeeded", "recovered", "completed"}))
    assert event_for(everything, "succeeded", was_failing=True) == "recovered"
    assert event_for(everything, "succeeded", was_failing=False) == "succeeded"
    assert event_for(everything, "timeout", was_failing=False) == "completed"
    assert event_for(FAILED_ONLY, "timeout", was_failing=False) is None
    assert event_for(RECOVERY, "succeeded", was_failing=False) is None


def test_recovered_follows_the_jobs_outcomes_in_planned_order() -> None:
    # Out of order as they came from the workers; a kill leaves the job's state as it was.
    runs = [run(T + 3000, "succeeded", RECOVERY), run(T + 1000, "failed", RECOVERY),
            run(T + 2000, "killed", RECOVERY), run(T + 4000, "succeeded", RECOVERY)]  # fmt: skip
    intake = take_runs(runs, {}, lambda r: "")
    assert [(q.notice.plan_ms, q.notice.event) for q in intake.queued] == [
        (T + 1000, "failed"),
        (T + 3000, "recovered"),
    ]
    assert intake.outcomes == {"j": (False, T + 4000)}
    # A job failing before this batch recovers with its first success in it.
    again = take_runs([run(T + 5000, "succeeded", RECOVERY)], {"j": True}, lambda r: "")
    assert [q.notice.event for q in again.queued] == ["recovered"]


def test_a_runs_event_has_one_id_per_run_and_channel_and_its_streams_are_per_rule() -> None:
    other = Rule("pager", frozenset({"failed"}))
    intake = take_runs([run(T, "failed", FAILED_ONLY, other, job="db")], {}, lambda r: "L")
    assert [(q.id, q.channel, q.stream) for q in intake.queued] == [
        (f"run/db/{T}/1", "ops", "job:db/ops"),
        (f"run/db/{T}/1", "pager", "job:db/pager"),
    ]
    notice = intake.queued[0].notice
    assert (notice.job, notice.status, notice.exit_code, notice.worker, notice.link) == (
        "db", "failed", 1, "w1", "L")  # fmt: skip
    assert intake.queued[0].min_interval_s == 60.0 and intake.queued[0].at_ms == T + 900


def test_a_message_shows_the_outputs_first_and_last_lines_bounded() -> None:
    output = "\n".join(f"line {i}" for i in range(100)) + "\n" + "x" * 5000
    notice = (
        take_runs([run(T, "failed", FAILED_ONLY, output=output)], {}, lambda r: "").queued[0].notice
    )
    assert notice.output_head == tuple(f"line {i}" for i in range(5))
    assert notice.output_tail[:4] == ("line 96", "line 97", "line 98", "line 99")
    assert len(notice.output_tail[-1]) == 300 and notice.output_tail[-1].endswith("…")
    assert len(notice.text()) < 5000


def test_the_link_opens_the_run_in_the_console() -> None:
    doc = run(T, "failed", job="a b/c")
    assert run_link("https://gdts.example/", doc) == (
        f"https://gdts.example/#log=a%20b%2Fc&planTime={T}&attempt=1"
    )
    assert run_link("", doc) == ""


def test_a_stream_sends_after_its_interval_and_after_a_retrys_backoff() -> None:
    assert send_at_ms({}, 300) == 0  # never sent: at once
    assert send_at_ms({"lastSentAt": T}, 300) == T + 300_000
    assert send_at_ms({"lastSentAt": T, "nextTryAt": T + 400_000}, 300) == T + 400_000
    assert [retry_delay_ms(n, 5000, 60_000) for n in (1, 2, 3, 4, 5, 9)] == [
        5000, 10_000, 20_000, 40_000, 60_000, 60_000]  # fmt: skip


def test_a_held_back_burst_is_one_message_about_the_latest_counting_all() -> None:
    intake = take_runs(
        [run(T + i * 1000, "failed", FAILED_ONLY) for i in range(60)], {}, lambda r: ""
    )
    notice = merged(batch_of(intake.queued))
    assert notice.count == 60 and notice.plan_ms == T + 59_000 and notice.first_ms == T + 900
    assert "(+59 more)" in notice.title() and "stands for 60 events" in notice.text()
    single = merged(batch_of(intake.queued[:1]))
    assert single.count == 1 and "more" not in single.title()


def test_a_workers_event_goes_to_the_rules_that_listen_named_by_its_registration() -> None:
    rules = [Rule("ops", frozenset({"worker_offline"})), Rule("chat", frozenset(CLUSTER_EVENTS))]
    offline = worker_events("w7", 0xABC, "worker_offline", T, rules, 30.0)
    assert [(q.id, q.channel, q.stream) for q in offline] == [
        ("worker_offline/w7/abc", "ops", "cluster:worker_offline/ops"),
        ("worker_offline/w7/abc", "chat", "cluster:worker_offline/chat"),
    ]
    assert offline[0].notice.title() == "[GDTS] worker w7 went offline"
    online = worker_events("w7", 0xABD, "worker_online", T, rules, 30.0)
    assert [q.channel for q in online] == ["chat"]
    assert isinstance(online[0], Queued)


def test_a_workers_record_carries_the_rules_only_when_one_may_concern_the_run() -> None:
    plain = Job.create("j", "true", "* * * * *")
    told = plain.with_changes(notify=[{"channel": "ops", "on": ["failed"]}], notifyMinInterval=60)
    assert notify_mark(plain, RunStatus.FAILED) is None  # no rules: nothing on the record
    assert notify_mark(told, RunStatus.SUCCEEDED) is None
    assert notify_mark(None, RunStatus.LOST) is None  # a lost run of a deleted job
    assert notify_mark(told, RunStatus.FAILED) == {
        "rules": [{"channel": "ops", "on": ["failed"]}], "minInterval": 60.0}  # fmt: skip


def test_names_holding_a_bar_never_share_a_stream_or_an_entry() -> None:
    # Job "a|b" to channel "c" and job "a" to channel "b|c": "/" joins, which no name holds.
    one = take_runs([run(T, "failed", Rule("c", frozenset({"failed"})), job="a|b")], {},
                    lambda r: "").queued[0]  # fmt: skip
    two = take_runs([run(T, "failed", Rule("b|c", frozenset({"failed"})), job="a")], {},
                    lambda r: "").queued[0]  # fmt: skip
    assert one.stream != two.stream
    assert batch_of([one]).ids != batch_of([two]).ids


def test_a_worker_coming_back_never_stands_for_others_going_away() -> None:
    rules = [Rule("ops", frozenset(CLUSTER_EVENTS))]
    gone = [q for i in range(9) for q in worker_events(f"w{i}", i, "worker_offline", T + i,
                                                       rules, 300.0)]  # fmt: skip
    back = worker_events("w0", 99, "worker_online", T + 20, rules, 300.0)
    assert {q.stream for q in gone} == {"cluster:worker_offline/ops"}
    assert back[0].stream == "cluster:worker_online/ops"
    told = merged(batch_of(gone))
    assert told.title() == "[GDTS] worker w8 went offline (+8 more)"
    assert "9 times a worker went offline" in told.text()
