"""The worker's Prometheus metrics, defined in one place."""

from __future__ import annotations

from collections.abc import Callable

from gdts.metrics import Registry

FIRE_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerStats:
    def __init__(
        self,
        *,
        jobs: Callable[[], float],
        running: Callable[[], float],
        buffered: Callable[[], float],
        spilled_segments: Callable[[], float],
        result_write_errors: Callable[[], float],
        watch_restarts: Callable[[], float],
        lease_alive: Callable[[], float],
    ) -> None:
        self.registry = registry = Registry()
        self.runs = registry.counter("gdts_runs_total", "Runs finished, by status.", ["status"])
        self.fire_lag = registry.histogram(
            "gdts_fire_lag_seconds", "Start of a run minus its planned tick.", FIRE_LAG_BUCKETS
        )
        self.claims = registry.counter(
            "gdts_claims_total",
            "Tick claims by outcome: won, taken (another worker won), busy (previous run still "
            "going), deferred (left to the job's owner, which claimed it), fenced (own lease "
            "not confirmed), error (etcd did not answer).",
            ["outcome"],
        )
        self.missed_ticks = registry.counter(
            "gdts_missed_ticks_total",
            "Jobs that skipped ticks because they could not start within the start window.",
        )
        self.lost_runs = registry.counter(
            "gdts_lost_runs_total", "Runs this worker recorded as lost (their worker died)."
        )
        self.etcd_errors = registry.counter(
            "gdts_etcd_errors_total", "etcd requests that failed, by operation.", ["operation"]
        )
        registry.gauge(
            "gdts_etcd_watch_restarts",
            "Times the cluster watch was re-established (reconnects and full re-reads).",
            read=watch_restarts,
        )
        registry.gauge(
            "gdts_mongodb_write_errors",
            "Failed MongoDB writes of results.",
            read=result_write_errors,
        )
        registry.gauge("gdts_result_buffer_depth", "Results waiting in memory.", read=buffered)
        registry.gauge(
            "gdts_result_spill_segments", "Result segments waiting on disk.", read=spilled_segments
        )
        registry.gauge("gdts_running_jobs", "Runs going on this worker.", read=running)
        registry.gauge("gdts_jobs", "Jobs this worker schedules.", read=jobs)
        registry.gauge(
            "gdts_lease_alive", "1 while the worker's lease is confirmed.", read=lease_alive
        )
        self.clock_offset = registry.gauge(
            "gdts_clock_offset_seconds", "This worker's clock minus MongoDB's, last measured."
        )
