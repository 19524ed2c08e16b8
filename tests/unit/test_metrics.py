"""gdts.metrics: exact lines of the Prometheus text exposition format 0.0.4, checked again by a
small strict parser so that malformed output fails the test, not only a changed line."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest

from gdts.metrics import CONTENT_TYPE, Registry

# --- a strict parser for the text format --------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class Family:
    name: str
    help: str
    type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not _FLOAT.fullmatch(text):
        raise ValueError(f"bad sample value {text!r}")
    return float(text)


def _help(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 >= len(text) or text[i + 1] not in ("\\", "n"):
                raise ValueError(f"bad escape in HELP text {text!r}")
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _labels(text: str, pos: int) -> tuple[dict[str, str], int]:
    """Parses ``{a="x",b="y"}`` starting at the ``{``; returns the labels and the position after
    the ``}``."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        if text.startswith("}", pos):
            return labels, pos + 1
        match = re.compile(_LABEL_NAME).match(text, pos)
        if match is None or not text.startswith('="', match.end()):
            raise ValueError(f"bad label at {pos} in {text!r}")
        name, pos = match.group(), match.end() + 2
        value = []
        while True:
            if pos >= len(text):
                raise ValueError(f"unterminated label value in {text!r}")
            char = text[pos]
            if char == "\\":
                escaped = text[pos + 1 : pos + 2]
                if escaped not in _UNESCAPE:
                    raise ValueError(f"bad escape \\{escaped} in {text!r}")
                value.append(_UNESCAPE[escaped])
                pos += 2
            elif char == '"':
                pos += 1
                break
            else:
                value.append(char)
                pos += 1
        if name in labels:
            raise ValueError(f"label {name} twice in {text!r}")
        labels[name] = "".join(value)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("}", pos):
            raise ValueError(f"expected , or }} at {pos} in {text!r}")


def _sample(line: str) -> tuple[str, dict[str, str], float]:
    match = re.compile(_NAME).match(line)
    if match is None:
        raise ValueError(f"bad sample line {line!r}")
    name, pos = match.group(), match.end()
    labels: dict[str, str] = {}
    if line.startswith("{", pos):
        labels, pos = _labels(line, pos)
    if not line.startswith(" ", pos):
        raise ValueError(f"no space before the value in {line!r}")
    parts = line[pos + 1 :].split(" ")
    if len(parts) not in (1, 2) or (len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1])):
        raise ValueError(f"bad value/timestamp in {line!r}")
    return name, labels, _value(parts[0])


def parse(text: str) -> dict[str, Family]:
    """Every line must be a HELP, a TYPE or a sample of the family just declared."""
    if not text.endswith("\n"):
        raise ValueError("exposition must end with a line feed")
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for line in text[:-1].split("\n"):
        if line == "":
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            if not re.fullmatch(_NAME, name) or name in families:
                raise ValueError(f"bad or repeated HELP line {line!r}")
            pending_help = (name, _help(help_text))
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            if pending_help is None or pending_help[0] != name or kind not in _TYPES:
                raise ValueError(f"TYPE line without its HELP line: {line!r}")
            current = families[name] = Family(name, pending_help[1], kind)
            pending_help = None
        elif line.startswith("#"):
            continue
        else:
            name, labels, value = _sample(line)
            allowed = {current.name} if current else set()
            if current and current.type == "histogram":
                allowed = {f"{current.name}_bucket", f"{current.name}_sum", f"{current.name}_count"}
            if name not in allowed:
                raise ValueError(f"sample {line!r} outside its family")
            assert current is not None
            current.samples.append((name, labels, value))
    return families


def test_the_parser_refuses_malformed_lines() -> None:
    header = "# HELP m x\n# TYPE m gauge\n"
    for bad in (
        'm{a="b"c"} 1',  # unescaped quote
        'm{a="b\\q"} 1',  # unknown escape
        'm{a="b"} ',  # no value
        'm{a="b"} one',  # not a number
        "m 1 2 3",  # too many fields
        "other 1",  # sample outside its family
        "m  1",  # two spaces
        'm{a="b",a="c"} 1',  # repeated label
    ):
        with pytest.raises(ValueError):
            parse(header + bad + "\n")
    with pytest.raises(ValueError):
        parse(header + "m 1")  # no final line feed
    with pytest.raises(ValueError):
        parse("# TYPE m gauge\nm 1\n")  # no HELP line
    with pytest.raises(ValueError):
        parse("# HELP m a\\q\n# TYPE m gauge\nm 1\n")  # bad escape in HELP


def test_the_parser_reads_escapes_and_special_values() -> None:
    families = parse(
        '# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{a="x\\\\y\\"z\\nw",b=""} +Inf\nm -1.5e-3\n'
    )
    assert families["m"].help == "a \\ b\nc"
    assert families["m"].samples == [
        ("m", {"a": 'x\\y"z\nw', "b": ""}, math.inf),
        ("m", {}, -0.0015),
    ]


# --- counters -----------------------------------------------------------------------------------


def test_unlabelled_counter_renders_zero_before_any_increment() -> None:
    registry = Registry()
    registry.counter("gdts_lost_runs_total", "Runs recorded as lost.")
    assert registry.render() == (
        "# HELP gdts_lost_runs_total Runs recorded as lost.\n"
        "# TYPE gdts_lost_runs_total counter\n"
        "gdts_lost_runs_total 0\n"
    )
    assert parse(registry.render())["gdts_lost_runs_total"].samples == [
        ("gdts_lost_runs_total", {}, 0.0)
    ]


def test_counter_increments_by_one_and_by_amount() -> None:
    registry = Registry()
    counter = registry.counter("gdts_missed_ticks_total", "Missed ticks.")
    counter.inc()
    counter.inc()
    assert counter.value() == 2.0
    assert registry.render().splitlines()[-1] == "gdts_missed_ticks_total 2"
    counter.inc(0.5)
    assert counter.value() == 2.5
    assert registry.render().splitlines()[-1] == "gdts_missed_ticks_total 2.5"


def test_counter_refuses_a_negative_increment_and_keeps_its_value() -> None:
    registry = Registry()
    counter = registry.counter("gdts_claims_total", "Claims.")
    counter.inc(3)
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1)
    assert counter.value() == 3.0
    assert registry.render().splitlines()[-1] == "gdts_claims_total 3"


def test_counter_accepts_a_zero_increment() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "C.")
    counter.inc(0)
    assert counter.value() == 0.0


def test_labelled_counter_has_no_sample_until_incremented() -> None:
    registry = Registry()
    registry.counter("gdts_runs_total", "Runs finished, by status.", ["status"])
    assert registry.render() == (
        "# HELP gdts_runs_total Runs finished, by status.\n# TYPE gdts_runs_total counter\n"
    )


def test_labelled_counter_renders_one_sorted_line_per_label_set() -> None:
    registry = Registry()
    runs = registry.counter("gdts_runs_total", "Runs finished, by status.", ["status"])
    runs.inc(status="succeeded")
    runs.inc(status="failed")
    runs.inc(status="succeeded")
    assert runs.value(status="succeeded") == 2.0
    assert runs.value(status="failed") == 1.0
    assert runs.value(status="timeout") == 0.0
    assert registry.render() == (
        "# HELP gdts_runs_total Runs finished, by status.\n"
        "# TYPE gdts_runs_total counter\n"
        'gdts_runs_total{status="failed"} 1\n'
        'gdts_runs_total{status="succeeded"} 2\n'
    )


def test_several_labels_render_in_declared_order_whatever_the_call_order() -> None:
    registry = Registry()
    requests = registry.counter("http_requests_total", "Requests.", ["method", "code"])
    requests.inc(code="200", method="GET")
    assert registry.render().splitlines()[-1] == 'http_requests_total{method="GET",code="200"} 1'
    assert parse(registry.render())["http_requests_total"].samples == [
        ("http_requests_total", {"method": "GET", "code": "200"}, 1.0)
    ]


@pytest.mark.parametrize(
    "labels",
    [
        {},  # missing
        {"status": "ok", "job": "backup"},  # extra
        {"state": "ok"},  # wrong name
    ],
)
def test_counter_labels_must_match_the_declared_names_exactly(labels: dict[str, str]) -> None:
    registry = Registry()
    runs = registry.counter("gdts_runs_total", "Runs.", ["status"])
    with pytest.raises(ValueError, match="gdts_runs_total takes labels"):
        runs.inc(**labels)
    with pytest.raises(ValueError):
        runs.value(**labels)
    assert "gdts_runs_total{" not in registry.render()


def test_unlabelled_counter_refuses_labels() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "C.")
    with pytest.raises(ValueError):
        counter.inc(status="ok")
    assert registry.render().splitlines()[-1] == "c_total 0"


def test_label_values_escape_backslash_quote_and_newline() -> None:
    registry = Registry()
    counter = registry.counter("gdts_etcd_errors_total", "etcd errors.", ["operation"])
    counter.inc(operation='put "a\\b"\nnext')
    line = registry.render().splitlines()[-1]
    assert line == 'gdts_etcd_errors_total{operation="put \\"a\\\\b\\"\\nnext"} 1'
    assert parse(registry.render())["gdts_etcd_errors_total"].samples == [
        ("gdts_etcd_errors_total", {"operation": 'put "a\\b"\nnext'}, 1.0)
    ]


def test_an_escaped_looking_label_value_is_escaped_again() -> None:
    registry = Registry()
    gauge = registry.gauge("g", "G.", ["path"])
    gauge.set(1, path="C:\\n")  # a backslash followed by the letter n, not a newline
    assert registry.render().splitlines()[-1] == 'g{path="C:\\\\n"} 1'
    assert parse(registry.render())["g"].samples == [("g", {"path": "C:\\n"}, 1.0)]


# --- number formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (3, "3"),
        (2.0, "2"),
        (0.0, "0"),
        (-4.0, "-4"),
        (0.25, "0.25"),
        (0.1, "0.1"),
        (-1.5, "-1.5"),
        (1234567.5, "1234567.5"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_gauge_values_render_integers_without_a_point_and_floats_exactly(
    value: float, rendered: str
) -> None:
    registry = Registry()
    gauge = registry.gauge("gdts_clock_offset_seconds", "Clock offset.")
    gauge.set(value)
    assert registry.render().splitlines()[-1] == f"gdts_clock_offset_seconds {rendered}"
    [(_, _, parsed)] = parse(registry.render())["gdts_clock_offset_seconds"].samples
    assert parsed == value


# --- gauges -------------------------------------------------------------------------------------


def test_gauge_set_replaces_the_value() -> None:
    registry = Registry()
    gauge = registry.gauge("gdts_clock_offset_seconds", "This worker's clock minus MongoDB's.")
    gauge.set(5)
    gauge.set(-0.5)
    assert gauge.value() == -0.5
    assert registry.render() == (
        "# HELP gdts_clock_offset_seconds This worker's clock minus MongoDB's.\n"
        "# TYPE gdts_clock_offset_seconds gauge\n"
        "gdts_clock_offset_seconds -0.5\n"
    )


def test_labelled_gauge_refuses_wrong_labels() -> None:
    registry = Registry()
    gauge = registry.gauge("g", "G.", ["shard"])
    with pytest.raises(ValueError):
        gauge.set(1)
    with pytest.raises(ValueError):
        gauge.set(1, shard="a", zone="b")
    gauge.set(2, shard="a")
    assert registry.render().splitlines()[-1] == 'g{shard="a"} 2'


def test_gauge_with_a_read_function_reports_its_current_value_at_each_render() -> None:
    registry = Registry()
    depth: list[float] = [7]
    gauge = registry.gauge("gdts_result_buffer_depth", "Results in memory.", read=lambda: depth[0])
    assert registry.render() == (
        "# HELP gdts_result_buffer_depth Results in memory.\n"
        "# TYPE gdts_result_buffer_depth gauge\n"
        "gdts_result_buffer_depth 7\n"
    )
    depth[0] = 12
    assert registry.render().splitlines()[-1] == "gdts_result_buffer_depth 12"
    assert gauge.value() == 12.0
    depth[0] = 0.75
    assert registry.render().splitlines()[-1] == "gdts_result_buffer_depth 0.75"


def test_gauge_read_function_is_called_at_render_not_at_registration() -> None:
    calls: list[int] = []

    def read() -> float:
        calls.append(1)
        return 1.0

    registry = Registry()
    registry.gauge("gdts_lease_alive", "Lease confirmed.", read=read)
    assert calls == []
    registry.render()
    registry.render()
    assert len(calls) == 2


# --- histograms ---------------------------------------------------------------------------------


def test_empty_histogram_renders_zero_buckets_sum_and_count() -> None:
    registry = Registry()
    registry.histogram("lag_seconds", "Lag.", [1, 0.25])
    assert registry.render() == (
        "# HELP lag_seconds Lag.\n"
        "# TYPE lag_seconds histogram\n"
        'lag_seconds_bucket{le="0.25"} 0\n'
        'lag_seconds_bucket{le="1"} 0\n'
        'lag_seconds_bucket{le="+Inf"} 0\n'
        "lag_seconds_sum 0\n"
        "lag_seconds_count 0\n"
    )


def test_histogram_buckets_are_cumulative_and_upper_bounds_inclusive() -> None:
    registry = Registry()
    histogram = registry.histogram("gdts_fire_lag_seconds", "Fire lag.", [5, 0.25, 1])
    for value in (0.125, 0.25, 0.5, 1, 3, 10):
        histogram.observe(value)
    assert histogram.count == 6
    assert registry.render() == (
        "# HELP gdts_fire_lag_seconds Fire lag.\n"
        "# TYPE gdts_fire_lag_seconds histogram\n"
        'gdts_fire_lag_seconds_bucket{le="0.25"} 2\n'
        'gdts_fire_lag_seconds_bucket{le="1"} 4\n'
        'gdts_fire_lag_seconds_bucket{le="5"} 5\n'
        'gdts_fire_lag_seconds_bucket{le="+Inf"} 6\n'
        "gdts_fire_lag_seconds_sum 14.875\n"
        "gdts_fire_lag_seconds_count 6\n"
    )


def test_histogram_parses_with_inf_bucket_equal_to_count() -> None:
    registry = Registry()
    histogram = registry.histogram("h", "H.", [0.5, 2.5])
    for value in (0.5, 0.75, 100, 100):
        histogram.observe(value)
    samples = parse(registry.render())["h"].samples
    assert samples == [
        ("h_bucket", {"le": "0.5"}, 1.0),
        ("h_bucket", {"le": "2.5"}, 2.0),
        ("h_bucket", {"le": "+Inf"}, 4.0),
        ("h_sum", {}, 201.25),
        ("h_count", {}, 4.0),
    ]


def test_histogram_negative_observation_falls_in_the_first_bucket() -> None:
    registry = Registry()
    histogram = registry.histogram("h", "H.", [0, 1])
    histogram.observe(-0.5)
    assert registry.render().splitlines()[2:] == [
        'h_bucket{le="0"} 1',
        'h_bucket{le="1"} 1',
        'h_bucket{le="+Inf"} 1',
        "h_sum -0.5",
        "h_count 1",
    ]


# --- the registry -------------------------------------------------------------------------------


def test_duplicate_metric_names_are_refused_across_kinds() -> None:
    registry = Registry()
    first = registry.counter("gdts_jobs", "Jobs.")
    first.inc(4)
    with pytest.raises(ValueError, match="gdts_jobs registered twice"):
        registry.counter("gdts_jobs", "Jobs again.")
    with pytest.raises(ValueError, match="registered twice"):
        registry.gauge("gdts_jobs", "Jobs as a gauge.")
    with pytest.raises(ValueError, match="registered twice"):
        registry.histogram("gdts_jobs", "Jobs as a histogram.", [1])
    assert registry.render() == "# HELP gdts_jobs Jobs.\n# TYPE gdts_jobs counter\ngdts_jobs 4\n"


def test_separate_registries_may_reuse_a_name() -> None:
    Registry().counter("c_total", "C.")
    Registry().counter("c_total", "C.")


def test_render_keeps_registration_order_and_parses_as_a_whole() -> None:
    registry = Registry()
    registry.gauge("zeta", "Last letter.", read=lambda: 1)
    runs = registry.counter("alpha_total", "First letter.", ["status"])
    runs.inc(status="ok")
    registry.histogram("mid_seconds", "Middle.", [1]).observe(0.5)
    text = registry.render()
    assert [line for line in text.splitlines() if line.startswith("# TYPE")] == [
        "# TYPE zeta gauge",
        "# TYPE alpha_total counter",
        "# TYPE mid_seconds histogram",
    ]
    families = parse(text)
    assert list(families) == ["zeta", "alpha_total", "mid_seconds"]
    assert families["alpha_total"].help == "First letter."
    assert families["mid_seconds"].type == "histogram"
    assert text.endswith("mid_seconds_count 1\n")
    assert not text.endswith("\n\n")


def test_content_type_is_text_format_0_0_4() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_help_text_escapes_backslash_and_newline() -> None:
    # Format 0.0.4: in HELP text, backslash and line feed must be written as \\ and \n.
    registry = Registry()
    registry.counter("c_total", "Paths like C:\\tmp.\nSecond line.")
    assert (
        registry.render().splitlines()[0] == "# HELP c_total Paths like C:\\\\tmp.\\nSecond line."
    )
    assert parse(registry.render())["c_total"].help == "Paths like C:\\tmp.\nSecond line."
