"""The dashboard's figures from per-minute rollups (gdts.runstats): lag buckets and quantiles,
the failure rate, windows and their buckets, merging minutes. Pure: literal times."""

from __future__ import annotations

from collections import Counter

import pytest

from gdts.runstats import (
    LAG_BUCKETS,
    WINDOWS,
    MinuteRollup,
    assemble_minutes,
    bucket_upper_ms,
    closed_before,
    failure_rate,
    lag_bucket,
    lag_quantile,
    late_minutes,
    merge_spans,
    running_per_worker,
    split_by_team,
    summarize,
    window_start,
)

# 2026-12-06T15:42:30.500Z
NOW = 1796571750500
MINUTE = 1796571720000  # 15:42:00, the minute holding NOW


def test_lag_buckets_are_four_to_a_doubling_and_their_bound_is_above_every_lag_in_them() -> None:
    assert [lag_bucket(ms) for ms in (-5, 0, 0.9, 1, 1.18, 1.19, 2, 1000)] == [
        0, 0, 0, 1, 1, 2, 5, 40,
    ]  # fmt: skip
    for lag in (1, 3, 17, 999, 12_345, 86_400_000):
        bound = bucket_upper_ms(lag_bucket(lag))
        assert lag < bound <= lag * 2**0.25 * 1.000001
    assert lag_bucket(10**12) == LAG_BUCKETS - 1


def test_a_quantile_is_its_buckets_upper_bound() -> None:
    lags = Counter({lag_bucket(10): 50, lag_bucket(100): 49, lag_bucket(5000): 1})
    assert lag_quantile(lags, 0.5) == round(bucket_upper_ms(lag_bucket(10)), 3)
    assert lag_quantile(lags, 0.99) == round(bucket_upper_ms(lag_bucket(100)), 3)
    assert lag_quantile(lags, 1.0) == round(bucket_upper_ms(lag_bucket(5000)), 3)
    assert lag_quantile(Counter(), 0.5) is None


def test_the_failure_rate_counts_failing_runs_among_those_that_started() -> None:
    counts = {"succeeded": 6, "failed": 1, "timeout": 1, "killed": 1, "lost": 1, "missed": 5,
              "skipped": 3}  # fmt: skip
    assert failure_rate(counts) == 3 / 10
    assert failure_rate({"missed": 2}) is None


def test_late_results_are_those_written_more_than_ten_seconds_after_their_end() -> None:
    runs = [{"endTime": NOW - 10_000}, {"endTime": NOW - 10_001}, {"endTime": NOW - 300_000}]
    assert late_minutes(runs, NOW) == {MINUTE, MINUTE - 300_000}
    # A minute is rolled up 30 s after it closed: 15:41 at 15:42:30, not yet at 15:42:29.999.
    assert closed_before(NOW) == MINUTE
    assert closed_before(MINUTE + 29_999) == MINUTE - 60_000


def test_windows_end_with_the_bucket_holding_now() -> None:
    assert window_start(WINDOWS["hour"], NOW) == MINUTE - 59 * 60_000
    # 15:30 is the day's last 15-minute bucket; the first began 95 buckets before.
    assert window_start(WINDOWS["day"], NOW) == 1796571000000 - 95 * 900_000


def test_minutes_assemble_from_mongodbs_groups_and_keep_a_hundred_failing_jobs() -> None:
    counts = [{"minute": MINUTE, "key": "failed", "n": 150}, {"minute": MINUTE, "key": "x", "n": 1}]
    failing = [{"minute": MINUTE, "key": f"job{i:03}", "n": 1 + (i == 7)} for i in range(150)]
    lags = [{"minute": MINUTE - 60_000, "key": 3, "n": 2}, {"minute": 0, "key": 3, "n": 9}]
    minutes = assemble_minutes(counts, lags, failing, MINUTE - 60_000, MINUTE + 60_000)
    assert list(minutes) == [MINUTE - 60_000, MINUTE]
    assert minutes[MINUTE - 60_000].lag == {3: 2}
    assert minutes[MINUTE].counts == {"failed": 150, "x": 1}
    assert len(minutes[MINUTE].failing) == 100
    assert minutes[MINUTE].failing.most_common(1) == [("job007", 2)]
    again = MinuteRollup.from_document(minutes[MINUTE].to_document())
    assert again == minutes[MINUTE]


def test_a_summary_merges_its_minutes_into_buckets_and_figures() -> None:
    def rollup(counts: dict[str, int], lag: dict[int, int], fails: dict[str, int]) -> MinuteRollup:
        return MinuteRollup(Counter(counts), Counter(lag), Counter(fails))

    minutes = {
        MINUTE: rollup({"succeeded": 3, "failed": 1}, {5: 4}, {"a": 1}),
        MINUTE - 60_000: rollup({"failed": 2, "missed": 1}, {20: 2}, {"b": 2}),
        MINUTE - 3_600_000: rollup({"failed": 9}, {}, {"c": 9}),  # before the hour
    }
    online = {MINUTE: 2, MINUTE - 120_000: 3}
    hour = summarize(WINDOWS["hour"], NOW, minutes, online)
    assert hour["buckets"][-1] == MINUTE and len(hour["buckets"]) == 60
    assert hour["perMinute"]["succeeded"][-2:] == [0, 3]
    assert hour["perMinute"]["failed"][-2:] == [2, 1]
    assert hour["runs"]["failed"] == 3 and hour["runs"]["missed"] == 1
    assert hour["failureRate"] == 3 / 6
    assert hour["lagP50Ms"] == round(bucket_upper_ms(5), 3)
    assert hour["lagP99Ms"] == round(bucket_upper_ms(20), 3)
    assert (hour["missed"], hour["lost"]) == (1, 0)
    assert hour["topFailing"] == [{"jobName": "b", "failures": 2}, {"jobName": "a", "failures": 1}]
    assert hour["workersOnline"][-3:] == [3, None, 2]

    day = summarize(WINDOWS["day"], NOW, minutes, online)
    # 15:30-15:45 has begun 13 minutes ago: its 9 runs are 9/13 a minute.
    assert day["perMinute"]["failed"][-1] == round(3 / 13, 3)
    assert day["perMinute"]["failed"][-5] == round(9 / 15, 3)  # 14:30-14:45
    assert day["workersOnline"][-1] == 3
    assert day["topFailing"][0] == {"jobName": "c", "failures": 9}


def test_minutes_merge_into_quarters_keeping_each_quarters_hundred_failing_jobs() -> None:
    quarter = 1796571000000  # 15:30
    minutes = {
        quarter + i * 60_000: MinuteRollup(Counter({"failed": 2}), Counter({1: 2}),
                                           Counter({f"j{i}": 1, "all": 1}))
        for i in range(15)
    }  # fmt: skip
    minutes[quarter - 60_000] = MinuteRollup(Counter({"succeeded": 1}))
    merged = merge_spans(minutes, 900_000)
    assert sorted(merged) == [quarter - 900_000, quarter]
    assert merged[quarter].counts == {"failed": 30} and merged[quarter].lag == {1: 30}
    assert merged[quarter].failing["all"] == 15 and len(merged[quarter].failing) == 16
    many = {quarter: MinuteRollup(failing=Counter({f"j{i}": 1 for i in range(150)}))}
    assert len(merge_spans(many, 900_000)[quarter].failing) == 100


@pytest.mark.parametrize("running", [None, [], ["a", "b"]])
def test_running_per_worker_counts_each_workers_jobs(running: list[str] | None) -> None:
    assert running_per_worker([{"id": "w2", "running": running}, {"id": "w1"}]) == [
        {"worker": "w1", "running": 0}, {"worker": "w2", "running": len(running or ())},
    ]  # fmt: skip


def test_minutes_split_by_their_jobs_teams_and_a_team_reads_its_own_part() -> None:
    rows = {
        "counts": [
            {"minute": MINUTE, "key": ["etl", "succeeded"], "n": 5},
            {"minute": MINUTE, "key": ["etl", "failed"], "n": 2},
            {"minute": MINUTE, "key": ["web", "succeeded"], "n": 7},
            {"minute": MINUTE, "key": ["gone", "failed"], "n": 9},  # a deleted job: no team
        ],
        "lags": [
            {"minute": MINUTE, "key": ["etl", 3], "n": 7},
            {"minute": MINUTE, "key": ["web", 1], "n": 7},
        ],  # fmt: skip
        "failing": [
            {"minute": MINUTE, "key": "etl", "n": 2},
            {"minute": MINUTE, "key": "gone", "n": 9},
        ],  # fmt: skip
    }
    teams = {"etl": "data", "web": "front"}
    split = split_by_team(rows["counts"], rows["lags"], rows["failing"], teams.get, MINUTE,
                          MINUTE + 60_000)  # fmt: skip
    assert set(split) == {"data", "front"}
    data = split["data"][MINUTE]
    assert (data.counts, data.lag, data.failing) == (
        Counter(succeeded=5, failed=2),
        Counter({3: 7}),
        Counter(etl=2),
    )
    whole = MinuteRollup(Counter(succeeded=12, failed=11), Counter({3: 7, 1: 7}),
                         Counter(etl=2, gone=9),
                         {team: minutes[MINUTE] for team, minutes in split.items()})  # fmt: skip
    # Stored and read back with its parts; merged into a quarter with them; summed per caller.
    again = MinuteRollup.from_document(whole.to_document())
    assert again == whole
    quarter = merge_spans({MINUTE: again, MINUTE + 60_000: again}, 15 * 60_000)
    (merged,) = quarter.values()
    assert merged.teams["front"].counts == Counter(succeeded=14)
    assert merged.of_teams({"data", "front"}).counts == Counter(succeeded=24, failed=4)
    assert merged.of_teams({"ops"}) == MinuteRollup()
