"""The metrics GDTS serves: every family with the name, type, help and labels it has always had,
rendered by prometheus-client in the text format 0.0.4 and read back by the library's parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gdts.manager.health import ManagerStats
from gdts.metrics import CONTENT_TYPE, render
from gdts.worker.stats import FIRE_LAG_BUCKETS, WorkerStats

# (type, label names) of every family, as GDTS served them before prometheus-client.
WORKER_FAMILIES = {
    "gdts_runs": ("counter", ("status",)),
    "gdts_fire_lag_seconds": ("histogram", ()),
    "gdts_claims": ("counter", ("outcome",)),
    "gdts_missed_ticks": ("counter", ()),
    "gdts_lost_runs": ("counter", ()),
    "gdts_etcd_errors": ("counter", ("operation",)),
    "gdts_etcd_watch_restarts": ("gauge", ()),
    "gdts_mongodb_write_errors": ("gauge", ()),
    "gdts_result_buffer_depth": ("gauge", ()),
    "gdts_result_buffer_limit": ("gauge", ()),
    "gdts_result_spill_segments": ("gauge", ()),
    "gdts_results_dropped": ("gauge", ()),
    "gdts_running_jobs": ("gauge", ()),
    "gdts_jobs": ("gauge", ()),
    "gdts_lease_alive": ("gauge", ()),
    "gdts_max_concurrent_runs": ("gauge", ()),
    "gdts_at_capacity": ("gauge", ()),
    "gdts_clock_offset_seconds": ("gauge", ()),
}
MANAGER_FAMILIES = {
    "gdts_http_requests": ("counter", ("route", "status")),
    "gdts_http_request_seconds": ("histogram", ()),
    "gdts_store_errors": ("counter", ("store",)),
}


def worker_stats(**reads: float) -> WorkerStats:
    names = ("jobs", "running", "buffered", "buffer_limit", "spilled_segments",
             "result_write_errors", "results_dropped", "watch_restarts", "lease_alive", "run_slots",
             "at_capacity")  # fmt: skip
    values = {name: reads.get(name, 0.0) for name in names}
    return WorkerStats(**{name: (lambda v=v: v) for name, v in values.items()})


def scrape(registry: Any) -> dict[str, Any]:
    text = render(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def label_names(family: Any) -> tuple[str, ...]:
    names = {n for s in family.samples for n in s.labels if n != "le"}
    return tuple(sorted(names))


def test_the_worker_serves_every_family_with_its_type_in_order() -> None:
    stats = worker_stats()
    stats.runs.labels(status="succeeded").inc()
    stats.claims.labels(outcome="won").inc()
    stats.etcd_errors.labels(operation="claim").inc()
    families = scrape(stats.registry)
    assert list(families) == list(WORKER_FAMILIES)
    for name, (kind, labels) in WORKER_FAMILIES.items():
        assert families[name].type == kind, name
        assert label_names(families[name]) == tuple(sorted(labels)), name
        assert families[name].documentation, name


def test_the_manager_serves_its_families() -> None:
    stats = ManagerStats()
    stats.requests.labels(route="/job/list", status="200").inc()
    stats.store_errors.labels(store="etcd").inc()
    families = scrape(stats.registry)
    assert {n: (f.type, label_names(f)) for n, f in families.items()} == {
        n: (kind, tuple(sorted(labels))) for n, (kind, labels) in MANAGER_FAMILIES.items()
    }


def test_counters_have_no_created_series_and_unlabelled_ones_start_at_zero() -> None:
    stats = worker_stats()
    text = render(stats.registry).decode()
    assert "_created" not in text
    assert "gdts_missed_ticks_total 0.0" in text.splitlines()
    # A labelled counter has no sample until a label set is used.
    assert samples(scrape(stats.registry)["gdts_runs"]) == {}
    stats.missed_ticks.inc(3)
    assert samples(scrape(stats.registry)["gdts_missed_ticks"]) == {
        ("gdts_missed_ticks_total", ()): 3.0
    }


def test_gauges_read_their_value_at_each_scrape() -> None:
    current = {"jobs": 2.0}
    stats = WorkerStats(
        jobs=lambda: current["jobs"], running=lambda: 1, buffered=lambda: 0,
        buffer_limit=lambda: 100,
        spilled_segments=lambda: 0, result_write_errors=lambda: 0, results_dropped=lambda: 0,
        watch_restarts=lambda: 0,
        lease_alive=lambda: 1, run_slots=lambda: 4, at_capacity=lambda: 0,
    )  # fmt: skip
    assert samples(scrape(stats.registry)["gdts_jobs"]) == {("gdts_jobs", ()): 2.0}
    current["jobs"] = 5.0
    assert samples(scrape(stats.registry)["gdts_jobs"]) == {("gdts_jobs", ()): 5.0}
    stats.clock_offset.set(-0.25)
    offset = scrape(stats.registry)["gdts_clock_offset_seconds"]
    assert samples(offset) == {("gdts_clock_offset_seconds", ()): -0.25}


def test_fire_lag_buckets_are_cumulative_with_inclusive_upper_bounds() -> None:
    stats = worker_stats()
    for lag in (0.005, 0.3, 0.3, 20.0):
        stats.fire_lag.observe(lag)
    values = samples(scrape(stats.registry)["gdts_fire_lag_seconds"])
    bucket = {dict(k[1])["le"]: v for k, v in values.items() if k[0].endswith("_bucket")}
    assert [float(le) for le in bucket if le != "+Inf"] == list(FIRE_LAG_BUCKETS)
    assert bucket["0.005"] == 1  # the bound itself falls in its bucket
    assert bucket["0.25"] == 1 and bucket["0.5"] == 3 and bucket["10.0"] == 3
    assert bucket["+Inf"] == 4 == values[("gdts_fire_lag_seconds_count", ())]
    assert values[("gdts_fire_lag_seconds_sum", ())] == 20.605


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    stats = ManagerStats()
    odd = 'a"b\\c\nd'
    stats.store_errors.labels(store=odd).inc()
    assert samples(scrape(stats.registry)["gdts_store_errors"]) == {
        ("gdts_store_errors_total", (("store", odd),)): 1.0
    }


def test_two_registries_in_one_process_do_not_collide() -> None:
    first, second = worker_stats(), worker_stats()
    first.lost_runs.inc()
    assert samples(scrape(second.registry)["gdts_lost_runs"]) == {("gdts_lost_runs_total", ()): 0}


def test_content_type_is_text_format_0_0_4() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
