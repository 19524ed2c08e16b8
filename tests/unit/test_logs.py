"""gdts.logs: one line per event as JSON or text, the job/tick/worker fields, and setup_logging."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator

import pytest
from _pytest.logging import LogCaptureHandler

from gdts.logs import EVENT_FIELDS, JsonFormatter, TextFormatter, event, setup_logging

CREATED = 1715953200.5  # 2024-05-17 13:40:00.500 UTC


def _record(
    msg: str = "started %s",
    args: tuple[object, ...] = ("backup",),
    level: int = logging.INFO,
    **extra: object,
) -> logging.LogRecord:
    record = logging.LogRecord("gdts.worker", level, __file__, 10, msg, args, None)
    record.created, record.msecs = CREATED, 500.0
    record.process = 4242
    for name, value in extra.items():
        setattr(record, name, value)
    return record


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """setup_logging replaces the root logger's handlers and level: put them back afterwards.

    pytest attaches its own capture handlers to the root logger for each test phase; the ones
    attached now (for teardown) are kept, and those of earlier phases are not brought back."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield root
    current = root.handlers[:]
    for handler in current:
        if handler not in saved_handlers and not isinstance(handler, LogCaptureHandler):
            handler.close()
    root.handlers[:] = [h for h in saved_handlers if not isinstance(h, LogCaptureHandler)] + [
        h for h in current if isinstance(h, LogCaptureHandler)
    ]
    root.setLevel(saved_level)


@pytest.fixture
def quiet_logger() -> Iterator[logging.Logger]:
    """A logger of its own, not propagating, for formatter tests through the logging API."""
    logger = logging.getLogger("gdts.test_logs")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


# --- event() ------------------------------------------------------------------------------------


def test_event_fields_are_job_tick_worker_chain() -> None:
    assert EVENT_FIELDS == ("job", "tick", "worker", "chain")


def test_event_returns_the_known_fields() -> None:
    assert event(job="backup", tick=1715953200000) == {"job": "backup", "tick": 1715953200000}
    assert event(job="backup", tick=1, worker="w1") == {"job": "backup", "tick": 1, "worker": "w1"}
    assert event() == {}


@pytest.mark.parametrize("fields", [{"jobs": "backup"}, {"job": "backup", "Tick": 1}, {"msg": "x"}])
def test_event_refuses_unknown_field_names(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="unknown log fields"):
        event(**fields)


def test_event_names_the_unknown_fields_sorted() -> None:
    with pytest.raises(ValueError) as raised:
        event(job="a", workr="w1", tik=3)
    assert str(raised.value) == "unknown log fields ['tik', 'workr']"


# --- JsonFormatter ------------------------------------------------------------------------------


def test_json_line_carries_time_level_logger_pid_and_message() -> None:
    line = JsonFormatter().format(_record())
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2024-05-17T13:40:00.500+00:00",
        "level": "INFO",
        "logger": "gdts.worker",
        "pid": 4242,
        "msg": "started backup",
    }


def test_json_line_carries_job_tick_worker_when_given() -> None:
    line = JsonFormatter().format(
        _record(level=logging.WARNING, job="backup", tick=1715953200000, worker="w1")
    )
    data = json.loads(line)
    assert data["level"] == "WARNING"
    assert data["job"] == "backup"
    assert data["tick"] == 1715953200000
    assert data["worker"] == "w1"


def test_json_line_leaves_out_fields_that_are_missing_or_none() -> None:
    data = json.loads(JsonFormatter().format(_record(job="backup", worker=None)))
    assert data["job"] == "backup"
    assert "tick" not in data
    assert "worker" not in data
    assert "exc" not in data


def test_json_keeps_a_zero_tick() -> None:
    assert json.loads(JsonFormatter().format(_record(tick=0)))["tick"] == 0


def test_json_message_with_quotes_and_newlines_stays_one_line() -> None:
    line = JsonFormatter().format(_record('said "hi"\nthen %s', ("left",)))
    assert "\n" not in line
    assert json.loads(line)["msg"] == 'said "hi"\nthen left'


def test_json_exception_appears_in_exc_field(quiet_logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    quiet_logger.addHandler(handler)
    try:
        raise RuntimeError("etcd went away")
    except RuntimeError:
        quiet_logger.exception("watch failed", extra=event(job="backup"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["level"] == "ERROR"
    assert data["msg"] == "watch failed"
    assert data["job"] == "backup"
    assert data["exc"].startswith("Traceback (most recent call last):\n")
    assert data["exc"].endswith("RuntimeError: etcd went away")


def test_json_through_a_logger_with_event_extra(quiet_logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    quiet_logger.addHandler(handler)
    quiet_logger.info("claimed %s", "backup", extra=event(job="backup", tick=1715953200000))
    data = json.loads(stream.getvalue())
    assert data["logger"] == "gdts.test_logs"
    assert data["msg"] == "claimed backup"
    assert (data["job"], data["tick"]) == ("backup", 1715953200000)


# --- TextFormatter ------------------------------------------------------------------------------


def _text(record: logging.LogRecord) -> str:
    formatter = TextFormatter()
    formatter.converter = time.gmtime  # asctime in UTC so the line is exact
    return formatter.format(record)


def test_text_line_without_fields_has_no_trailing_space() -> None:
    assert _text(_record()) == "2024-05-17 13:40:00,500 INFO gdts.worker [4242] started backup"


def test_text_line_appends_job_tick_worker_in_that_order() -> None:
    record = _record(worker="w1", tick=1715953200000, job="backup")
    assert _text(record) == (
        "2024-05-17 13:40:00,500 INFO gdts.worker [4242] started backup "
        "job=backup tick=1715953200000 worker=w1"
    )


def test_text_line_appends_only_the_fields_given() -> None:
    assert _text(_record(tick=7)) == (
        "2024-05-17 13:40:00,500 INFO gdts.worker [4242] started backup tick=7"
    )


# --- setup_logging ------------------------------------------------------------------------------


def test_setup_logging_installs_one_stderr_handler_and_the_level(
    root_logger: logging.Logger,
) -> None:
    root_logger.addHandler(logging.NullHandler())
    setup_logging("warning")
    assert len(root_logger.handlers) == 1
    handler = root_logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
    assert isinstance(handler.formatter, TextFormatter)
    assert root_logger.level == logging.WARNING


def test_setup_logging_json_writes_json_lines_to_stderr(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO", fmt="json")
    logging.getLogger("gdts.manager").info("listening on %d", 8080, extra=event(job="api"))
    logging.getLogger("gdts.manager").debug("not shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert (data["level"], data["logger"], data["msg"], data["job"]) == (
        "INFO",
        "gdts.manager",
        "listening on 8080",
        "api",
    )
    assert "worker" not in data


def test_setup_logging_stamps_the_worker_on_records_without_one(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("debug", fmt="json", worker="w1")
    logging.getLogger("gdts.worker.runner").debug("tick", extra=event(job="backup", tick=5))
    data = json.loads(capsys.readouterr().err)
    assert (data["job"], data["tick"], data["worker"]) == ("backup", 5, "w1")


def test_setup_logging_does_not_override_a_worker_already_on_the_record(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", fmt="json", worker="w1")
    log = logging.getLogger("gdts.worker.lost")
    log.info("run lost", extra=event(job="backup", worker="w2"))
    log.info("own run")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["worker"] for line in lines] == ["w2", "w1"]


def test_setup_logging_text_format_shows_the_stamped_worker(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", worker="w1")
    logging.getLogger("gdts.worker").info("started", extra=event(job="backup", tick=9))
    line = capsys.readouterr().err.rstrip("\n")
    assert line.endswith(f" INFO gdts.worker [{os.getpid()}] started job=backup tick=9 worker=w1")


def test_setup_logging_without_worker_stamps_nothing(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info")
    logging.getLogger("gdts.manager").info("started")
    line = capsys.readouterr().err.rstrip("\n")
    assert line.endswith(f" INFO gdts.manager [{os.getpid()}] started")


def test_setup_logging_twice_keeps_a_single_handler(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", fmt="json")
    setup_logging("info", fmt="json")
    logging.getLogger("gdts").info("once")
    assert len(capsys.readouterr().err.splitlines()) == 1
