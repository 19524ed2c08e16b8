"""gdts.worker.ticktable: the timer heap over every job's next tick. Literal instants only."""

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gdts.cron import CronSchedule
from gdts.job import Job
from gdts.worker.ticktable import DueTick, TickTable, from_ms, to_ms


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock instant, computed without gdts."""
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000


def job(name: str, expr: str, command: str = "true") -> Job:
    return Job.create(name, command, expr)


def plans(due: list[DueTick]) -> list[tuple[str, int]]:
    return [(tick.job.name, tick.plan_ms) for tick in due]


# --- to_ms / from_ms ----------------------------------------------------------------------------


def test_ms_helper_matches_known_epoch_values() -> None:
    assert ms(1970, 1, 1) == 0
    assert ms(2024, 1, 1) == 1704067200000
    assert ms(2024, 5, 17, 13, 40) == 1715953200000


def test_to_ms_of_known_instants() -> None:
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_ms(datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200000
    assert to_ms(datetime(2024, 5, 17, 13, 40, tzinfo=UTC)) == 1715953200000
    assert to_ms(datetime(2024, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)) == 1704067200250


def test_to_ms_respects_the_offset_of_an_aware_datetime() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert to_ms(datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)) == 1704067200000


def test_from_ms_gives_aware_utc() -> None:
    assert from_ms(1704067200000) == datetime(2024, 1, 1, tzinfo=UTC)
    assert from_ms(1704067200000).utcoffset() == timedelta(0)
    assert from_ms(1715953200123) == datetime(2024, 5, 17, 13, 40, 0, 123_000, tzinfo=UTC)
    assert from_ms(0) == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [0, 1, 999, 1704067200000, 1715953200123, 4102444799999],
)
def test_from_ms_then_to_ms_round_trips(value: int) -> None:
    assert to_ms(from_ms(value)) == value


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2039, 3, 8, 19, 46, 13, 411_000, tzinfo=UTC), ms(2039, 3, 8, 19, 46, 13) + 411),
        (datetime(2004, 3, 15, 7, 55, 47, 472_000, tzinfo=UTC), ms(2004, 3, 15, 7, 55, 47) + 472),
        (datetime(1987, 2, 24, 12, 51, 47, 341_000, tzinfo=UTC), ms(1987, 2, 24, 12, 51, 47) + 341),
    ],
    ids=["2039", "2004", "1987"],
)
def test_to_ms_is_exact_for_whole_milliseconds(moment: datetime, expected: int) -> None:
    # moment.timestamp() is a float; 2183226373.411 * 1000 is 2183226373410.9998 and int()
    # truncates it to ...410. A datetime on an exact millisecond must map to that millisecond.
    assert to_ms(moment) == expected
    assert to_ms(from_ms(expected)) == expected


# --- an empty table -----------------------------------------------------------------------------


def test_empty_table_has_no_next_tick_and_nothing_due() -> None:
    table = TickTable()
    assert len(table) == 0
    assert table.next_ms() is None
    assert table.pop_due(ms(2024, 1, 1), ms(2023, 1, 1)) == ([], 0)


# --- put, next_ms, pop_due ----------------------------------------------------------------------


def test_put_schedules_the_next_tick_strictly_after_now() -> None:
    table = TickTable()
    assert table.put(job("a", "*/20 * * * *"), ms(2024, 5, 17, 13, 37, 12)) is True
    assert "a" in table
    assert len(table) == 1
    assert table.get("a") == job("a", "*/20 * * * *")
    assert table.get("b") is None
    assert table.next_ms() == ms(2024, 5, 17, 13, 40)


def test_put_on_a_tick_schedules_the_following_one() -> None:
    table = TickTable()
    table.put(job("a", "*/20 * * * *"), ms(2024, 5, 17, 13, 40))
    assert table.next_ms() == ms(2024, 5, 17, 14, 0)


def test_next_ms_is_the_earliest_over_all_jobs() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37, 12)
    table.put(job("daily", "0 0 * * *"), now)
    table.put(job("hourly", "0 * * * *"), now)
    table.put(job("yearly", "@yearly"), now)
    assert table.next_ms() == ms(2024, 5, 17, 14, 0)


def test_nothing_is_due_before_the_tick() -> None:
    table = TickTable()
    table.put(job("a", "*/20 * * * *"), ms(2024, 5, 17, 13, 37, 12))
    assert table.pop_due(ms(2024, 5, 17, 13, 40) - 1, ms(2024, 5, 17, 13, 39)) == ([], 0)
    assert table.next_ms() == ms(2024, 5, 17, 13, 40)


def test_pop_due_returns_the_tick_and_reschedules_the_next() -> None:
    table = TickTable()
    a = job("a", "*/20 * * * *")
    table.put(a, ms(2024, 5, 17, 13, 37, 12))
    now = ms(2024, 5, 17, 13, 40) + 500
    due, missed = table.pop_due(now, now - 10_000)
    assert missed == 0
    assert due == [DueTick(a, ms(2024, 5, 17, 13, 40))]
    assert due[0].job is a
    assert table.next_ms() == ms(2024, 5, 17, 14, 0)
    # popping again at the same instant gives nothing: the tick is not handed out twice
    assert table.pop_due(now, now - 10_000) == ([], 0)


def test_tick_planned_exactly_at_now_is_due() -> None:
    table = TickTable()
    table.put(job("a", "0 * * * *"), ms(2024, 5, 17, 13, 37))
    now = ms(2024, 5, 17, 14, 0)
    due, _ = table.pop_due(now, now - 10_000)
    assert plans(due) == [("a", ms(2024, 5, 17, 14, 0))]


def test_pop_due_returns_several_jobs_in_time_order() -> None:
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    # Put in an order that is not the firing order.
    table.put(job("every15s", "*/15 * * * * *"), start)
    table.put(job("every10s", "*/10 * * * * *"), start)
    table.put(job("at7s", "7 * * * * *"), start)
    now = start + 31_000
    due, missed = table.pop_due(now, start)
    assert missed == 0
    times = [tick.plan_ms for tick in due]
    assert times == sorted(times)
    assert sorted(plans(due)) == sorted(
        [
            ("at7s", start + 7_000),
            ("every10s", start + 10_000),
            ("every15s", start + 15_000),
            ("every10s", start + 20_000),
            ("every10s", start + 30_000),
            ("every15s", start + 30_000),
        ]
    )
    assert table.next_ms() == start + 40_000


def test_a_job_due_several_times_within_the_window_gets_each_tick() -> None:
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    table.put(job("a", "* * * * * *"), start)
    due, missed = table.pop_due(start + 3_000, start)
    assert missed == 0
    assert plans(due) == [("a", start + 1_000), ("a", start + 2_000), ("a", start + 3_000)]
    assert table.next_ms() == start + 4_000


# --- put of an unchanged / changed job ----------------------------------------------------------


def test_put_of_an_identical_job_keeps_the_pending_tick() -> None:
    table = TickTable()
    table.put(job("a", "0 * * * *"), ms(2024, 5, 17, 13, 37))
    # Re-read after a reconnect, later than the pending 14:00 tick which has not been popped yet.
    later = ms(2024, 5, 17, 14, 0, 5)
    assert table.put(job("a", "0 * * * *"), later) is False
    assert table.next_ms() == ms(2024, 5, 17, 14, 0)
    due, missed = table.pop_due(later, later - 10_000)
    assert (plans(due), missed) == ([("a", ms(2024, 5, 17, 14, 0))], 0)


def test_put_of_a_changed_cron_reschedules() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    table.put(job("a", "0 * * * *"), now)
    assert table.put(job("a", "30 * * * *"), now) is True
    assert table.get("a") == job("a", "30 * * * *")
    assert len(table) == 1
    assert table.next_ms() == ms(2024, 5, 17, 14, 30)
    # The old 14:00 tick is stale: it never fires.
    end = ms(2024, 5, 17, 15, 0)
    due, missed = table.pop_due(end, now)
    assert (plans(due), missed) == ([("a", ms(2024, 5, 17, 14, 30))], 0)


def test_put_of_a_changed_command_returns_true_and_fires_the_new_job_once() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    table.put(job("a", "0 * * * *", "echo old"), now)
    assert table.put(job("a", "0 * * * *", "echo new"), now) is True
    due, _ = table.pop_due(ms(2024, 5, 17, 14, 0), now)
    assert [(t.job.command, t.plan_ms) for t in due] == [("echo new", ms(2024, 5, 17, 14, 0))]


# --- remove -------------------------------------------------------------------------------------


def test_remove_drops_the_job_and_its_stale_entry_never_fires() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    table.put(job("a", "0 * * * *"), now)
    table.put(job("b", "0 0 * * *"), now)
    assert table.remove("a") is True
    assert "a" not in table
    assert table.get("a") is None
    assert len(table) == 1
    assert table.next_ms() == ms(2024, 5, 18, 0, 0)
    due, missed = table.pop_due(ms(2024, 5, 17, 23, 59, 59), now)
    assert (due, missed) == ([], 0)


def test_remove_of_an_unknown_job_returns_false() -> None:
    table = TickTable()
    assert table.remove("ghost") is False
    table.put(job("a", "0 * * * *"), ms(2024, 5, 17, 13, 37))
    assert table.remove("a") is True
    assert table.remove("a") is False
    assert table.next_ms() is None


def test_remove_then_put_again_fires_once_per_tick() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    table.put(job("a", "0 * * * *"), now)
    table.remove("a")
    assert table.put(job("a", "0 * * * *"), now) is True
    due, missed = table.pop_due(ms(2024, 5, 17, 14, 0), now)
    assert (plans(due), missed) == ([("a", ms(2024, 5, 17, 14, 0))], 0)


# --- replace_all --------------------------------------------------------------------------------


def test_replace_all_adds_removes_and_keeps() -> None:
    table = TickTable()
    t0 = ms(2024, 5, 17, 13, 37)
    table.put(job("gone", "*/5 * * * *"), t0)
    table.put(job("kept", "0 * * * *"), t0)
    table.put(job("changed", "0 * * * *"), t0)
    # Re-read after the pending 14:00 ticks but before they were popped.
    t1 = ms(2024, 5, 17, 14, 0, 3)
    table.replace_all(
        [job("kept", "0 * * * *"), job("changed", "15 * * * *"), job("new", "*/10 * * * *")], t1
    )
    assert len(table) == 3
    assert "gone" not in table
    assert {n for n in ("kept", "changed", "new") if n in table} == {"kept", "changed", "new"}
    assert table.get("changed") == job("changed", "15 * * * *")
    due, missed = table.pop_due(ms(2024, 5, 17, 14, 15), t0)
    assert missed == 0
    assert plans(due) == [
        ("kept", ms(2024, 5, 17, 14, 0)),  # unchanged: its pending tick survived the re-read
        ("new", ms(2024, 5, 17, 14, 10)),
        ("changed", ms(2024, 5, 17, 14, 15)),
    ]


def test_replace_all_with_nothing_empties_the_table() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    for i in range(5):
        table.put(job(f"j{i}", "* * * * *"), now)
    table.replace_all([], now)
    assert len(table) == 0
    assert table.next_ms() is None
    assert table.pop_due(ms(2024, 5, 18), now) == ([], 0)


def test_replace_all_after_many_removals_still_fires_only_live_jobs() -> None:
    # Enough dropped jobs to make replace_all compact its heap.
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    for i in range(200):
        table.put(job(f"j{i}", "0 * * * *"), now)
    table.replace_all([job("j7", "0 * * * *"), job("k", "30 13 * * *")], now)
    assert len(table) == 2
    due, missed = table.pop_due(ms(2024, 5, 17, 14, 0), now)
    # k's next 13:30 is tomorrow; none of the 198 dropped jobs fires.
    assert (plans(due), missed) == ([("j7", ms(2024, 5, 17, 14, 0))], 0)
    assert table.next_ms() == ms(2024, 5, 17, 15, 0)


# --- the start window: stalls and clock jumps ---------------------------------------------------


def test_ticks_older_than_the_window_are_missed_and_not_returned() -> None:
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    table.put(job("hourly", "0 * * * *"), start)  # next 14:00
    now = ms(2024, 5, 17, 14, 0, 30)  # 30 s late, window 10 s
    due, missed = table.pop_due(now, now - 10_000)
    assert (due, missed) == ([], 1)
    # Rescheduled from the window, not replayed: next is 15:00.
    assert table.next_ms() == ms(2024, 5, 17, 15, 0)


def test_tick_exactly_at_the_window_edge_is_due() -> None:
    table = TickTable()
    table.put(job("hourly", "0 * * * *"), ms(2024, 5, 17, 13, 0, 0))
    now = ms(2024, 5, 17, 14, 0, 10)
    due, missed = table.pop_due(now, ms(2024, 5, 17, 14, 0, 0))
    assert (plans(due), missed) == ([("hourly", ms(2024, 5, 17, 14, 0))], 0)


def test_one_second_job_after_a_one_hour_gap_is_not_a_burst() -> None:
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    table.put(job("fast", "* * * * * *"), start)
    now = start + 3_600_000
    oldest = now - 10_000
    due, missed = table.pop_due(now, oldest)
    # Only the ticks inside the 10 s window, 13:59:50 .. 14:00:00 inclusive.
    assert plans(due) == [("fast", oldest + i * 1000) for i in range(11)]
    assert all(tick.plan_ms >= oldest for tick in due)
    assert missed >= 1
    assert table.next_ms() == now + 1000


def test_a_job_that_skipped_ticks_older_than_the_window_is_counted_once() -> None:
    # Documented: ``missed`` counts jobs that skipped ticks, not the ticks (bounded work).
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    table.put(job("fast", "* * * * * *"), start)
    now = start + 10_000
    oldest = now - 2_000
    due, missed = table.pop_due(now, oldest)
    # Ticks 13:00:01 .. 13:00:07 are older than 13:00:08: skipped, and none of them returned.
    assert plans(due) == [
        ("fast", start + 8_000),
        ("fast", start + 9_000),
        ("fast", start + 10_000),
    ]
    assert missed == 1


def test_window_applies_per_job() -> None:
    table = TickTable()
    start = ms(2024, 5, 17, 13, 0, 0)
    table.put(job("minutely", "* * * * *"), start)  # 13:01, 13:02, ... 13:05
    table.put(job("at5", "5 13 * * *"), start)  # 13:05 only
    now = ms(2024, 5, 17, 13, 5, 0)
    due, missed = table.pop_due(now, now - 10_000)
    assert sorted(plans(due)) == [("at5", now), ("minutely", now)]
    assert missed >= 1  # minutely's 13:01 .. 13:04 were skipped
    assert table.next_ms() == ms(2024, 5, 17, 13, 6)


# --- schedules that end -------------------------------------------------------------------------


def test_seven_field_job_whose_year_is_past_never_appears_in_next_ms() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37)
    assert table.put(job("old", "0 0 0 1 1 * 2020"), now) is True
    assert "old" in table
    assert table.next_ms() is None
    assert table.pop_due(ms(2099, 12, 31, 23, 59, 59), now) == ([], 0)
    table.put(job("hourly", "0 * * * *"), now)
    assert table.next_ms() == ms(2024, 5, 17, 14, 0)


def test_seven_field_job_fires_its_last_year_then_stops() -> None:
    table = TickTable()
    table.put(job("once", "0 30 2 1 1 * 2030"), ms(2029, 12, 31))
    assert table.next_ms() == ms(2030, 1, 1, 2, 30)
    now = ms(2030, 1, 1, 2, 30, 1)
    due, missed = table.pop_due(now, now - 10_000)
    assert (plans(due), missed) == ([("once", ms(2030, 1, 1, 2, 30))], 0)
    assert table.next_ms() is None


# --- many jobs ----------------------------------------------------------------------------------


def test_ten_thousand_jobs_only_the_due_one_is_popped_and_nothing_else_is_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 10, 0, 0)
    for i in range(9_999):
        table.put(job(f"yearly-{i:05d}", "0 0 1 1 *"), now)
    table.put(job("noon", "0 12 * * *"), now)
    assert len(table) == 10_000
    assert table.next_ms() == ms(2024, 5, 17, 12, 0)

    calls: list[str] = []
    real_next_after = CronSchedule.next_after

    def counting_next_after(self: CronSchedule, after: datetime) -> datetime | None:
        calls.append(self.expr)
        return real_next_after(self, after)

    monkeypatch.setattr(CronSchedule, "next_after", counting_next_after)
    instant = ms(2024, 5, 17, 12, 0, 0)
    due, missed = table.pop_due(instant, instant - 10_000)
    assert (plans(due), missed) == ([("noon", instant)], 0)
    # Only the fired job was rescheduled; the 9,999 others were neither evaluated nor popped.
    assert calls == ["0 12 * * *"]
    assert table.next_ms() == ms(2024, 5, 18, 12, 0)
    assert table.pop_due(instant, instant - 10_000) == ([], 0)
    assert calls == ["0 12 * * *"]
    assert len(table) == 10_000


# --- paused, one-shot and zoned jobs ----------------------------------------------------------


def test_a_paused_job_has_no_tick_and_resumes_from_now() -> None:
    table = TickTable()
    start = ms(2026, 5, 1, 12, 0, 0)
    table.put(job("p", "* * * * *").with_changes(enabled=False), start)
    assert "p" in table and table.next_ms() is None
    table.put(job("p", "* * * * *"), start + 90_000)  # resumed 1.5 minutes later
    assert table.next_ms() == ms(2026, 5, 1, 12, 2, 0)  # no catching up on the paused ticks


def test_a_one_shot_job_fires_once_at_its_instant() -> None:
    at = ms(2026, 5, 1, 12, 0, 30)
    once = Job.from_api({"name": "once", "command": "true", "runAt": at / 1000})
    table = TickTable()
    table.put(once, at - 5000)
    assert table.next_ms() == at
    due, missed = table.pop_due(at, at - 10_000)
    assert plans(due) == [("once", at)] and missed == 0
    assert table.next_ms() is None  # never again


def test_a_one_shot_job_whose_instant_passed_is_not_scheduled() -> None:
    at = ms(2026, 5, 1, 12, 0, 30)
    once = Job.from_api({"name": "once", "command": "true", "runAt": at / 1000})
    table = TickTable()
    table.put(once, at + 1)
    assert table.next_ms() is None


def test_a_zoned_job_fires_at_its_local_time() -> None:
    berlin = Job.from_api(
        {"name": "b", "command": "true", "cronExpr": "30 2 * * *", "timezone": "Europe/Berlin"}
    )
    table = TickTable()
    table.put(berlin, ms(2026, 7, 1))
    assert table.next_ms() == ms(2026, 7, 1, 0, 30)  # 02:30 CEST is 00:30 UTC
    spring_day = berlin.with_changes(cronExpr="30 2 29 3 *")
    table.put(spring_day, ms(2026, 3, 28))
    assert table.next_ms() == ms(2026, 3, 29, 1, 0)  # 02:30 does not exist: 03:00 CEST


def test_a_jobs_own_window_decides_what_it_missed_and_the_first_miss_is_reported() -> None:
    table = TickTable()
    start = ms(2026, 5, 1, 12, 0, 0)
    strict = job("strict", "* * * * * *")  # every second, a 2 s window of its own
    lenient = job("lenient", "* * * * * *")  # the default window
    table.put(strict, start - 1)
    table.put(lenient, start - 1)
    reported: list[tuple[str, int]] = []
    windows = {"strict": 2000, "lenient": None}
    now = start + 5000  # the worker stalled for 5 s
    due, missed = table.pop_due(
        now,
        now - 10_000,
        window_of=lambda j: windows[j.name],
        on_missed=lambda tick: reported.append((tick.job.name, tick.plan_ms)),
    )
    assert missed == 1 and reported == [("strict", start)]  # once, not once per tick
    strict_runs = [plan for name, plan in plans(due) if name == "strict"]
    lenient_runs = [plan for name, plan in plans(due) if name == "lenient"]
    assert strict_runs == [start + 3000, start + 4000, start + 5000]  # within 2 s of now
    assert lenient_runs == [start + i * 1000 for i in range(6)]


def test_jobs_sharing_a_schedule_each_get_their_own_next_tick() -> None:
    table = TickTable()
    now = ms(2024, 5, 17, 13, 37, 12)
    paused = Job.from_api(
        {"name": "c", "command": "true", "cronExpr": "*/20 * * * *", "enabled": False}
    )
    table.put(job("a", "*/20 * * * *"), now)
    table.put(job("b", "*/20 * * * *"), ms(2024, 5, 17, 13, 40))  # after a tick: the next one
    table.put(paused, now)
    table.put(job("d", "*/20 * * * *"), now)
    due, missed = table.pop_due(ms(2024, 5, 17, 14, 0), ms(2024, 5, 17, 13, 0))
    assert missed == 0
    assert plans(due) == [
        ("a", ms(2024, 5, 17, 13, 40)),
        ("d", ms(2024, 5, 17, 13, 40)),
        ("a", ms(2024, 5, 17, 14, 0)),
        ("b", ms(2024, 5, 17, 14, 0)),
        ("d", ms(2024, 5, 17, 14, 0)),
    ]
    assert table.next_ms() == ms(2024, 5, 17, 14, 20)


def test_schedule_from_an_earlier_instant_brings_back_a_tick_still_within_reach() -> None:
    table = TickTable()
    put_at = ms(2024, 5, 17, 13, 0)
    table.put(job("a", "*/20 * * * *"), put_at)
    assert table.next_ms() == ms(2024, 5, 17, 13, 20)
    table.pop_due(ms(2024, 5, 17, 13, 20), put_at)  # 13:20 went to another worker, say
    table.schedule_from("a", ms(2024, 5, 17, 13, 10))  # this worker now answers for 13:20
    assert table.next_ms() == ms(2024, 5, 17, 13, 20)
    # Nothing before the version was put here, and nothing to change when no earlier tick
    # falls after the instant: the pending tick stays as it is.
    table.schedule_from("a", ms(2024, 5, 17, 12, 0))
    due, _ = table.pop_due(ms(2024, 5, 17, 13, 40), put_at)
    assert plans(due) == [("a", ms(2024, 5, 17, 13, 20)), ("a", ms(2024, 5, 17, 13, 40))]
