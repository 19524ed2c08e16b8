"""The worker's Prometheus metrics, defined in one place."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from gdts.metrics import new_registry

FIRE_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerStats:
    def __init__(
        self,
        *,
        jobs: Callable[[], float],
        running: Callable[[], float],
        buffered: Callable[[], float],
        buffer_limit: Callable[[], float],
        spilled_segments: Callable[[], float],
        result_write_errors: Callable[[], float],
        results_dropped: Callable[[], float],
        watch_restarts: Callable[[], float],
        lease_alive: Callable[[], float],
        run_slots: Callable[[], float],
        at_capacity: Callable[[], float],
    ) -> None:
        """Each callable is read at every scrape, for a gauge whose value lives elsewhere."""
        self.registry = registry = new_registry()
        self.runs = Counter(
            "gdts_runs_total", "Runs finished, by status.", ["status"], registry=registry
        )
        self.fire_lag = Histogram(
            "gdts_fire_lag_seconds",
            "Start of a run minus its planned tick.",
            buckets=FIRE_LAG_BUCKETS,
            registry=registry,
        )
        self.claims = Counter(
            "gdts_claims_total",
            "Tick claims by outcome: won, taken (another worker won), busy (previous run still "
            "going), deferred (left to the job's owner, which claimed it), fenced (own lease "
            "not confirmed), error (etcd did not answer), capacity (at maxConcurrentRuns), "
            "stale (the job changed since the tick was due; claimed again from the current "
            "version if it still runs the tick).",
            ["outcome"],
            registry=registry,
        )
        self.missed_ticks = Counter(
            "gdts_missed_ticks_total",
            "Jobs that skipped ticks because they could not start within the start window.",
            registry=registry,
        )
        self.lost_runs = Counter(
            "gdts_lost_runs_total",
            "Runs this worker recorded as lost (their worker died).",
            registry=registry,
        )
        self.etcd_errors = Counter(
            "gdts_etcd_errors_total",
            "etcd requests that failed, by operation.",
            ["operation"],
            registry=registry,
        )
        for name, help_text, read in (
            (
                "gdts_etcd_watch_restarts",
                "Times the cluster watch was re-established (reconnects and full re-reads).",
                watch_restarts,
            ),
            ("gdts_mongodb_write_errors", "Failed MongoDB writes of results.", result_write_errors),
            ("gdts_result_buffer_depth", "Results waiting in memory.", buffered),
            (
                "gdts_result_buffer_limit",
                "Results held in memory before the oldest are spilled to disk (jobLogBufferLimit).",
                buffer_limit,
            ),
            ("gdts_result_spill_segments", "Result segments waiting on disk.", spilled_segments),
            (
                "gdts_results_dropped",
                "Results given up to keep the spill directory within spillLimitBytes.",
                results_dropped,
            ),
            ("gdts_running_jobs", "Runs going on this worker.", running),
            ("gdts_jobs", "Jobs this worker schedules.", jobs),
            ("gdts_lease_alive", "1 while the worker's lease is confirmed.", lease_alive),
            ("gdts_max_concurrent_runs", "Runs this worker takes at once at most.", run_slots),
            (
                "gdts_at_capacity",
                "1 while the worker runs its maxConcurrentRuns and claims nothing.",
                at_capacity,
            ),
        ):
            Gauge(name, help_text, registry=registry).set_function(read)
        # The label children counted on every run, made once each: labels() costs several times
        # what the increment does.
        self._claim_counters: dict[str, Counter] = {}
        self._run_counters: dict[str, Counter] = {}
        self.clock_offset = Gauge(
            "gdts_clock_offset_seconds",
            "This worker's clock minus MongoDB's, last measured.",
            registry=registry,
        )

    def claim(self, outcome: str) -> None:
        """Count one claim decision (see gdts_claims_total)."""
        counter = self._claim_counters.get(outcome)
        if counter is None:
            counter = self._claim_counters[outcome] = self.claims.labels(outcome=outcome)
        counter.inc()

    def run(self, status: str) -> None:
        """Count one finished (or missed, or lost) run."""
        counter = self._run_counters.get(status)
        if counter is None:
            counter = self._run_counters[status] = self.runs.labels(status=status)
        counter.inc()
