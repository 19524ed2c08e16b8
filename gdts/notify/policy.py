"""The notifier's decisions, pure (no I/O, no clock: times are arguments): which events a batch
of marked runs makes, when a stream may send its next message, what that message says, and how
long a failed delivery waits before the next try."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from gdts.notify.notice import Notice, output_lines, short_error
from gdts.notify.rules import DEFAULT_MIN_INTERVAL_S, FAILING, Rule, event_for

CLUSTER_SUBJECT = "cluster"


@dataclass(frozen=True)
class Queued:
    """An event waiting in the outbox for its channel."""

    id: str
    stream: str  # the rule's stream: what it is about and the channel (see stream_of)
    channel: str
    notice: Notice
    min_interval_s: float
    at_ms: int


# Ids and streams are joined with "/", which no job, channel or worker name may hold: two
# different things never share one.


def stream_of(subject: str, channel: str) -> str:
    """One rule's messages: a job's (or one kind of the cluster's events) to one channel. The
    storm limit holds per stream."""
    return f"{subject}/{channel}"


def outbox_id(event_id: str, channel: str) -> str:
    """An event's entry for one channel: queued once however many managers take the event."""
    return f"{event_id}/{channel}"


@dataclass(frozen=True)
class Intake:
    """What a batch of marked runs comes to."""

    queued: list[Queued]
    outcomes: dict[str, tuple[bool, int]]  # job -> (failing after its latest run, its plan)


def run_event_id(run: dict[str, Any]) -> str:
    return f"run/{run['jobName']}/{run['planTime']}/{run.get('attempt', 1)}"


def run_link(public_url: str, run: dict[str, Any]) -> str:
    if not public_url:
        return ""
    job = quote(str(run["jobName"]), safe="")
    return (f"{public_url.rstrip('/')}/#log={job}&planTime={run['planTime']}"
            f"&attempt={run.get('attempt', 1)}")  # fmt: skip


def take_runs(
    runs: Iterable[dict[str, Any]], failing: dict[str, bool], link: Callable[[dict[str, Any]], str]
) -> Intake:
    """The events of marked runs, taken in planned order per job so that ``recovered`` follows
    each job's outcomes (``failing``: whether each job was failing before these runs)."""
    queued: list[Queued] = []
    outcomes: dict[str, tuple[bool, int]] = {}
    ordered = sorted(runs, key=lambda r: (r["jobName"], r["planTime"], r.get("attempt", 1)))
    for run in ordered:
        name, status = run["jobName"], str(run.get("status", ""))
        mark = run.get("notify") or {}
        rules = [Rule(r["channel"], frozenset(r["on"])) for r in mark.get("rules", [])]
        min_interval = float(mark.get("minInterval", DEFAULT_MIN_INTERVAL_S))
        was_failing = failing.get(name, False)
        for rule in rules:
            event = event_for(rule, status, was_failing)
            if event is None:
                continue
            notice = notice_of_run(run, event, link(run))
            queued.append(Queued(
                run_event_id(run), stream_of(f"job:{name}", rule.channel), rule.channel,
                notice, min_interval, int(run.get("endTime") or run["planTime"]),
            ))  # fmt: skip
        now_failing = status in FAILING if status != "killed" else was_failing
        failing[name] = now_failing
        outcomes[name] = (now_failing, int(run["planTime"]))
    return Intake(queued, outcomes)


def notice_of_run(run: dict[str, Any], event: str, link: str) -> Notice:
    head, tail = output_lines(str(run.get("output") or ""))
    return Notice(
        id=run_event_id(run),
        event=event,
        job=str(run["jobName"]),
        status=str(run.get("status", "")),
        plan_ms=run.get("planTime"),
        start_ms=run.get("startTime"),
        end_ms=run.get("endTime"),
        worker=str(run.get("worker") or ""),
        exit_code=run.get("exitCode"),
        error=short_error(str(run.get("err") or "")),
        output_head=head,
        output_tail=tail,
        link=link,
    )


def worker_events(
    worker: str, lease: int, event: str, at_ms: int, rules: Sequence[Rule], min_interval_s: float
) -> list[Queued]:
    """A worker's coming or going, queued for every cluster rule that listens to it; its id
    names the registration (the lease), so each is told once whoever saw it."""
    event_id = f"{event}/{worker}/{lease:x}"
    notice = Notice(id=event_id, event=event, worker=worker, end_ms=at_ms)
    # A stream per kind: a worker coming back never stands for others going away.
    subject = f"{CLUSTER_SUBJECT}:{event}"
    return [
        Queued(event_id, stream_of(subject, rule.channel), rule.channel, notice, min_interval_s,
               at_ms)
        for rule in rules if event in rule.on
    ]  # fmt: skip


def send_at_ms(stream: dict[str, Any], min_interval_s: float) -> int:
    """When a stream may send: not before its last message plus the storm interval, nor before
    a failed try's backoff is over."""
    last = stream.get("lastSentAt")
    after_last = 0 if last is None else int(last) + int(min_interval_s * 1000)
    return max(after_last, int(stream.get("nextTryAt") or 0))


@dataclass(frozen=True)
class Batch:
    """What a stream holds when its message goes: every queued event's outbox id, the latest
    event, and when the first of them happened."""

    ids: list[str]
    latest: Queued
    first_ms: int


def batch_of(queued: Sequence[Queued]) -> Batch:
    latest = max(queued, key=lambda q: q.at_ms)
    ids = [outbox_id(q.id, q.channel) for q in queued]
    return Batch(ids, latest, min(q.at_ms for q in queued))


def merged(batch: Batch) -> Notice:
    """One message for the events a stream held back: the latest, counting them all."""
    if len(batch.ids) == 1:
        return batch.latest.notice
    return replace(batch.latest.notice, count=len(batch.ids), first_ms=batch.first_ms)


def retry_delay_ms(tries: int, first_ms: int, cap_ms: int) -> int:
    """Backoff after ``tries`` failed tries: doubling from ``first_ms``, at most ``cap_ms``."""
    return min(cap_ms, first_ms * 2 ** max(0, tries - 1))
