"""Notification rules: which events of a job (or of the cluster) go to which channel, and the
one event a run's end is for each rule. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gdts.errors import InvalidFieldError
from gdts.names import type_name, validate_name
from gdts.notify.notice import CLUSTER_EVENTS, RUN_EVENTS

MAX_RULES = 20
DEFAULT_MIN_INTERVAL_S = 300.0
MAX_MIN_INTERVAL_S = 24 * 3600.0
# The run log's status -> the event it is (limit: a run stopped over one of its limits failed).
STATUS_EVENT = {
    "succeeded": "succeeded", "failed": "failed", "limit": "failed", "timeout": "timeout",
    "missed": "missed", "lost": "lost", "killed": "killed",
}  # fmt: skip
# What a later success recovers from (a kill is an operator's choice, not a failure).
FAILING = frozenset(("failed", "limit", "timeout", "lost", "missed"))
_ENDED = frozenset(STATUS_EVENT) - {"missed"}  # completed: every run that ended, not a miss


@dataclass(frozen=True, slots=True)
class Rule:
    channel: str
    on: frozenset[str]

    def to_api(self) -> dict[str, Any]:
        return {"channel": self.channel, "on": [e for e in (*RUN_EVENTS, *CLUSTER_EVENTS)
                                                if e in self.on]}  # fmt: skip


def parse_rules(
    field_name: str, value: object, events: tuple[str, ...] = RUN_EVENTS
) -> tuple[Rule, ...]:
    """Rules from untrusted JSON: a list of ``{channel, on}``; the bad element is named
    (``notify[1].on``)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidFieldError(field_name, f"must be a list of rules, got {type_name(value)}")
    if len(value) > MAX_RULES:
        raise InvalidFieldError(field_name, f"must have at most {MAX_RULES} rules")
    rules = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise InvalidFieldError(where, f"must be an object, got {type_name(item)}")
        unknown = item.keys() - {"channel", "on"}
        if unknown:
            raise InvalidFieldError(f"{where}.{min(unknown)}", "unknown (known: channel, on)")
        channel = validate_name(item.get("channel"), f"{where}.channel")
        on = item.get("on")
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, list) or not on:
            raise InvalidFieldError(f"{where}.on", f"must list events of {', '.join(events)}")
        for event in on:
            if event not in events:
                raise InvalidFieldError(
                    f"{where}.on", f"must list events of {', '.join(events)} (got {event!r})"
                )
        rules.append(Rule(channel, frozenset(on)))
    return tuple(rules)


def worth_flagging(rules: Iterable[Rule], status: str) -> bool:
    """Whether a run that ended with ``status`` may concern one of the rules: the worker marks
    only such runs for the notifier. A ``recovered`` rule needs every run of its job (the
    notifier follows whether the job was failing)."""
    event = STATUS_EVENT.get(status)
    for rule in rules:
        if event in rule.on or "recovered" in rule.on:
            return True
        if "completed" in rule.on and status in _ENDED:
            return True
    return False


def event_for(rule: Rule, status: str, was_failing: bool) -> str | None:
    """The one event a run's end is for this rule (None: the rule does not care): the most
    telling of those it listens to."""
    event = STATUS_EVENT.get(status)
    if event == "succeeded" and was_failing and "recovered" in rule.on:
        return "recovered"
    if event in rule.on:
        return event
    if "completed" in rule.on and status in _ENDED:
        return "completed"
    return None
