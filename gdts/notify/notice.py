"""What a notification says: one event (or a burst of them, counted), as a title and a text
every channel shows in its own format. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A run's end, by the run log's status (limit: over one of its limits, reported as a failure).
RUN_EVENTS = ("failed", "timeout", "missed", "lost", "killed", "succeeded", "recovered",
              "completed")  # fmt: skip
CLUSTER_EVENTS = ("worker_offline", "worker_online")
TEST_EVENT = "test"
OUTPUT_LINES = 5  # of the output's head and of its tail
OUTPUT_LINE_CHARS = 300
ERROR_CHARS = 1000


@dataclass(frozen=True)
class Notice:
    """One message: the event it is about (the latest, if it stands for several)."""

    id: str  # the event's id: a receiver may drop a message it has seen
    event: str  # one of RUN_EVENTS, CLUSTER_EVENTS or TEST_EVENT
    job: str = ""
    status: str = ""  # the run log's status
    plan_ms: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    worker: str = ""
    exit_code: int | None = None
    error: str = ""
    output_head: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = ()  # lines after the head (none when the output is short)
    link: str = ""  # the run in the console
    count: int = 1  # events this message stands for (a storm, held back, counted)
    first_ms: int | None = None  # the first of them

    def title(self) -> str:
        if self.event == TEST_EVENT:
            return "[GDTS] test message"
        more = f" (+{self.count - 1} more)" if self.count > 1 else ""
        if self.event in CLUSTER_EVENTS:
            what = "went offline" if self.event == "worker_offline" else "came online"
            return f"[GDTS] worker {self.worker} {what}{more}"
        return f"[GDTS] job {self.job} {self.event}{more}"

    def lines(self) -> list[str]:
        """The body, line by line, plain text."""
        if self.event == TEST_EVENT:
            return ["A test message from GDTS: this channel works."]
        if self.event in CLUSTER_EVENTS:
            if self.event == "worker_offline":
                out = [f"Worker {self.worker} went offline at {_at(self.end_ms)}: its lease "
                       "expired without a clean stop."]  # fmt: skip
            else:
                out = [f"Worker {self.worker} came online at {_at(self.end_ms)}."]
            if self.count > 1:
                what = "went offline" if self.event == "worker_offline" else "came online"
                out.append(f"{self.count} times a worker {what} since {_at(self.first_ms)}; "
                           "the latest is shown (see the console's Workers).")  # fmt: skip
            return out
        out = [
            f"Job: {self.job}",
            f"Status: {self.status}" + (f" ({self.event})" if self.event != self.status else ""),
            f"Planned: {_at(self.plan_ms)}",
            f"Started: {_at(self.start_ms)}",
            f"Ended: {_at(self.end_ms)}",
            f"Worker: {self.worker or '-'}",
            f"Exit code: {'-' if self.exit_code is None else self.exit_code}",
        ]
        if self.error:
            out.append(f"Error: {self.error}")
        if self.count > 1:
            out.append(f"This message stands for {self.count} events since "
                       f"{_at(self.first_ms)}; the latest is shown.")  # fmt: skip
        if self.output_head:
            out += ["Output:", *self.output_head]
            if self.output_tail:
                out += ["…", *self.output_tail]
        if self.link:
            out.append(f"Run: {self.link}")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, Any]:
        """The webhook's body (documented in the README)."""
        return {
            "id": self.id,
            "event": self.event,
            "job": self.job or None,
            "status": self.status or None,
            "planTime": self.plan_ms,
            "startTime": self.start_ms,
            "endTime": self.end_ms,
            "worker": self.worker or None,
            "exitCode": self.exit_code,
            "error": self.error,
            "output": {"head": list(self.output_head), "tail": list(self.output_tail)},
            "link": self.link or None,
            "count": self.count,
            "firstTime": self.first_ms,
            "title": self.title(),
            "text": self.text(),
        }


def output_lines(output: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The first and last lines of a run's output, each line cut short: a bounded message
    whatever the run printed."""
    lines = output.splitlines()
    cut = tuple(_short(line, OUTPUT_LINE_CHARS) for line in lines[:OUTPUT_LINES])
    rest = lines[OUTPUT_LINES:]
    return cut, tuple(_short(line, OUTPUT_LINE_CHARS) for line in rest[-OUTPUT_LINES:])


def short_error(error: str) -> str:
    return _short(error, ERROR_CHARS)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _at(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
