"""Process logging: one line per event, as text or JSON, carrying job, tick and worker fields
when a record has them (``log.info(..., extra=event(job=..., tick=...))``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

EVENT_FIELDS = ("job", "tick", "worker", "chain")


def event(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call; unknown names are refused so typos do not vanish silently."""
    unknown = set(fields) - set(EVENT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}")
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in EVENT_FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{text} {' '.join(fields)}" if fields else text


def setup_logging(level: str, fmt: str = "text", worker: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if worker is not None:
        handler.addFilter(_WorkerFilter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _WorkerFilter(logging.Filter):
    """Stamps the worker id on every record of a worker process."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:
            record.worker = self._worker
        return True


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (say, a NUL in a header) as an error with a
    traceback; it is the client's fault and already answered 400, so it gets one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "refused a malformed request: %s", (error.message,)
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())
