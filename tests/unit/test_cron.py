"""gdts.cron: parsing, validation and next-firing maths. Literal instants only, never the clock."""

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gdts.cron import CronError, CronSchedule, parse_cron


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def firings(expr: str, after: datetime, n: int) -> list[datetime | None]:
    """The next ``n`` firings after ``after``, stopping at (and including) the first None."""
    schedule = parse_cron(expr)
    out: list[datetime | None] = []
    current: datetime | None = after
    while len(out) < n and current is not None:
        current = schedule.next_after(current)
        out.append(current)
    return out


def cron_dow(dt: datetime) -> int:
    """Day of week as cron counts it: Sunday = 0."""
    return dt.isoweekday() % 7


# --- field counts -------------------------------------------------------------------------------


def test_five_fields_fire_on_whole_minutes() -> None:
    assert firings("*/20 * * * *", utc(2024, 5, 17, 13, 37, 12, 345), 3) == [
        utc(2024, 5, 17, 13, 40),
        utc(2024, 5, 17, 14, 0),
        utc(2024, 5, 17, 14, 20),
    ]


def test_six_fields_put_the_second_first() -> None:
    # '5 * * * * *' is second 5 of every minute - not minute 5 of every hour (cron's reading)
    # and not croniter's default 6-field layout, where the seconds come last.
    assert firings("5 * * * * *", utc(2024, 5, 17, 13, 0, 0), 3) == [
        utc(2024, 5, 17, 13, 0, 5),
        utc(2024, 5, 17, 13, 1, 5),
        utc(2024, 5, 17, 13, 2, 5),
    ]


def test_six_fields_each_position_is_the_documented_field() -> None:
    # second 10, minute 20, hour 3, day-of-month 4, month 5 (May), any weekday.
    assert firings("10 20 3 4 5 *", utc(2024, 1, 1), 2) == [
        utc(2024, 5, 4, 3, 20, 10),
        utc(2025, 5, 4, 3, 20, 10),
    ]


def test_seven_fields_every_five_seconds() -> None:
    assert firings("*/5 * * * * * *", utc(2024, 5, 17, 13, 0, 3), 4) == [
        utc(2024, 5, 17, 13, 0, 5),
        utc(2024, 5, 17, 13, 0, 10),
        utc(2024, 5, 17, 13, 0, 15),
        utc(2024, 5, 17, 13, 0, 20),
    ]


def test_seven_fields_single_year_fires_once_then_none() -> None:
    assert firings("0 30 2 1 1 * 2030", utc(2024, 6, 1), 3) == [utc(2030, 1, 1, 2, 30), None]


def test_seven_fields_year_list_with_a_gap_over_fifty_years() -> None:
    # croniter's default max_years_between_matches (50) would lose 2095 and return "no more".
    assert firings("0 0 0 1 1 * 2030,2095", utc(2024, 1, 1), 3) == [
        utc(2030, 1, 1),
        utc(2095, 1, 1),
        None,
    ]


def test_seven_fields_past_years_give_none() -> None:
    schedule = parse_cron("0 0 12 * * * 1999-2001")
    assert schedule.next_after(utc(2024, 1, 1)) is None
    assert schedule.next_after(utc(2001, 12, 31, 12, 0)) is None
    assert schedule.next_after(utc(2001, 12, 31, 11, 59, 59)) == utc(2001, 12, 31, 12, 0)


def test_seven_fields_year_range_and_step() -> None:
    assert firings("0 0 0 1 1 * 2030-2040/5", utc(2024, 1, 1), 4) == [
        utc(2030, 1, 1),
        utc(2035, 1, 1),
        utc(2040, 1, 1),
        None,
    ]


def test_year_bounds_are_accepted() -> None:
    assert parse_cron("0 0 0 1 1 * 1970").next_after(utc(1969, 6, 1)) == utc(1970, 1, 1)
    assert parse_cron("0 0 0 1 1 * 2099").next_after(utc(2098, 6, 1)) == utc(2099, 1, 1)


def test_no_firing_after_2099_even_without_a_year_field() -> None:
    schedule = parse_cron("* * * * *")
    assert schedule.next_after(utc(2099, 12, 31, 23, 58)) == utc(2099, 12, 31, 23, 59)
    assert schedule.next_after(utc(2099, 12, 31, 23, 59)) is None
    assert schedule.next_after(utc(2150, 1, 1)) is None
    assert schedule.next_after(datetime.max.replace(tzinfo=UTC)) is None


def test_instants_before_1970_lead_to_the_first_firing_of_1970() -> None:
    assert parse_cron("@hourly").next_after(utc(1900, 1, 1)) == utc(1970, 1, 1, 0, 0)
    plus_two = timezone(timedelta(hours=2))
    assert parse_cron("@hourly").next_after(datetime.min.replace(tzinfo=plus_two)) == utc(
        1970, 1, 1, 0, 0
    )
    # 1970-01-01T01:59:59+02:00 is the last second of 1969 in UTC.
    just_before = datetime(1970, 1, 1, 1, 59, 59, 999999, tzinfo=plus_two)
    assert parse_cron("@hourly").next_after(just_before) == utc(1970, 1, 1, 0, 0)


# --- macros -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@yearly", utc(2024, 5, 17, 13, 37), utc(2025, 1, 1)),
        ("@annually", utc(2024, 5, 17, 13, 37), utc(2025, 1, 1)),
        ("@monthly", utc(2024, 5, 17, 13, 37), utc(2024, 6, 1)),
        ("@weekly", utc(2024, 5, 17, 13, 37), utc(2024, 5, 19)),  # the next Sunday
        ("@daily", utc(2024, 5, 17, 13, 37), utc(2024, 5, 18)),
        ("@midnight", utc(2024, 5, 17, 13, 37), utc(2024, 5, 18)),
        ("@hourly", utc(2024, 5, 17, 13, 37), utc(2024, 5, 17, 14, 0)),
        ("@DAILY", utc(2024, 5, 17, 13, 37), utc(2024, 5, 18)),
    ],
)
def test_macros(macro: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(macro).next_after(after) == expected


def test_macro_second_firing() -> None:
    assert firings("@weekly", utc(2024, 5, 17), 2) == [utc(2024, 5, 19), utc(2024, 5, 26)]


# --- "strictly after" and the returned value ------------------------------------------------------


def test_an_instant_that_is_a_firing_returns_the_next_one() -> None:
    schedule = parse_cron("0 * * * *")
    assert schedule.next_after(utc(2024, 5, 17, 13, 0)) == utc(2024, 5, 17, 14, 0)
    # ...but a microsecond earlier, that instant itself is next.
    assert schedule.next_after(utc(2024, 5, 17, 12, 59, 59, 999999)) == utc(2024, 5, 17, 13, 0)


def test_strictly_after_at_second_resolution() -> None:
    schedule = parse_cron("*/5 * * * * * *")
    assert schedule.next_after(utc(2024, 5, 17, 13, 0, 5)) == utc(2024, 5, 17, 13, 0, 10)
    assert schedule.next_after(utc(2024, 5, 17, 13, 0, 4, 500000)) == utc(2024, 5, 17, 13, 0, 5)
    assert schedule.next_after(utc(2024, 5, 17, 13, 0, 5, 1)) == utc(2024, 5, 17, 13, 0, 10)


def test_five_field_schedules_ignore_the_seconds_of_after() -> None:
    schedule = parse_cron("* * * * *")
    assert schedule.next_after(utc(2024, 5, 17, 13, 0, 59, 999999)) == utc(2024, 5, 17, 13, 1)
    assert schedule.next_after(utc(2024, 5, 17, 13, 0, 0, 1)) == utc(2024, 5, 17, 13, 1)


def test_result_is_aware_utc_for_any_input_offset() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 2024-05-17 23:30 at +02:00 is 21:30 UTC; the next UTC midnight is the 18th.
    result = parse_cron("0 0 * * *").next_after(datetime(2024, 5, 17, 23, 30, tzinfo=plus_two))
    assert result == utc(2024, 5, 18)
    assert result is not None and result.tzinfo == UTC and result.utcoffset() == timedelta(0)
    # Evaluated in UTC, not in the caller's zone: 01:00 at +02:00 is still the 17th's 23:00 UTC.
    assert parse_cron("0 0 * * *").next_after(datetime(2024, 5, 18, 1, 0, tzinfo=plus_two)) == utc(
        2024, 5, 18
    )


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *").next_after(datetime(2024, 1, 1))


# --- calendar edges -----------------------------------------------------------------------------


def test_feb_29_skips_to_the_next_leap_year() -> None:
    assert firings("0 0 29 2 *", utc(2024, 3, 1), 3) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
        utc(2036, 2, 29),
    ]


def test_feb_29_with_no_leap_year_left_before_2100_gives_none() -> None:
    # 2100 is not a leap year; the next Feb 29 (2104) is outside the year domain.
    assert parse_cron("0 0 29 2 *").next_after(utc(2096, 3, 1)) is None


def test_day_31_skips_short_months() -> None:
    assert firings("0 0 31 * *", utc(2024, 1, 31, 12), 4) == [
        utc(2024, 3, 31),
        utc(2024, 5, 31),
        utc(2024, 7, 31),
        utc(2024, 8, 31),
    ]


def test_month_end_rollover() -> None:
    assert firings("30 23 * * *", utc(2024, 2, 28, 23, 45), 2) == [
        utc(2024, 2, 29, 23, 30),
        utc(2024, 3, 1, 23, 30),
    ]
    assert parse_cron("0 0 * * *").next_after(utc(2023, 2, 28, 1)) == utc(2023, 3, 1)


def test_year_rollover() -> None:
    assert parse_cron("*/5 * * * * * *").next_after(utc(2024, 12, 31, 23, 59, 58)) == utc(
        2025, 1, 1
    )
    assert parse_cron("0 0 1 * *").next_after(utc(2024, 12, 1)) == utc(2025, 1, 1)
    assert parse_cron("59 23 31 12 *").next_after(utc(2024, 12, 31, 23, 59)) == utc(
        2025, 12, 31, 23, 59
    )


# --- names, '?', Sunday as 7 --------------------------------------------------------------------


def test_month_names_any_case_and_spelled_out() -> None:
    expected = [utc(2024, 7, 1), utc(2025, 1, 1), utc(2025, 7, 1)]
    assert firings("0 0 1 JAN,jul *", utc(2024, 3, 1), 3) == expected
    assert firings("0 0 1 January,JULY *", utc(2024, 3, 1), 3) == expected
    assert firings("0 0 1 1,7 *", utc(2024, 3, 1), 3) == expected


def test_month_name_range() -> None:
    assert firings("0 0 1 Nov-Dec *", utc(2024, 3, 1), 3) == [
        utc(2024, 11, 1),
        utc(2024, 12, 1),
        utc(2025, 11, 1),
    ]


def test_day_names_any_case() -> None:
    # 2024-10-04 is a Friday.
    expected = [utc(2024, 10, 7), utc(2024, 10, 9), utc(2024, 10, 11), utc(2024, 10, 14)]
    assert firings("0 0 * * MON,wed,Fri", utc(2024, 10, 4), 4) == expected
    assert firings("0 0 * * monday,WEDNESDAY,friday", utc(2024, 10, 4), 4) == expected


def test_day_name_range() -> None:
    # Mon-Fri from Friday 2024-10-04 noon: Mon 7th ... Fri 11th, then Mon 14th.
    got = firings("0 0 * * mon-FRI", utc(2024, 10, 4, 12), 6)
    assert got == [utc(2024, 10, d) for d in (7, 8, 9, 10, 11, 14)]


@pytest.mark.parametrize("sunday", ["0", "7", "SUN", "sun", "Sunday"])
def test_sunday_spellings(sunday: str) -> None:
    # 2024-10-06 and 2024-10-13 are Sundays.
    expected = [utc(2024, 10, 6), utc(2024, 10, 13)]
    assert firings(f"0 0 * * {sunday}", utc(2024, 10, 1), 2) == expected


def test_range_ending_at_7_includes_sunday() -> None:
    # Fri-Sun, from Thursday 2024-10-03.
    assert firings("0 0 * * 5-7", utc(2024, 10, 3), 4) == [
        utc(2024, 10, 4),
        utc(2024, 10, 5),
        utc(2024, 10, 6),
        utc(2024, 10, 11),
    ]


@pytest.mark.parametrize("expr", ["0 0 ? * MON", "0 0 * * MON"])
def test_question_mark_in_day_of_month_is_a_wildcard(expr: str) -> None:
    # Not OR-ed with an "every day" day-of-month: Mondays only.
    assert firings(expr, utc(2024, 10, 1), 2) == [utc(2024, 10, 7), utc(2024, 10, 14)]


def test_question_mark_in_day_of_week_is_a_wildcard() -> None:
    assert firings("0 0 15 * ?", utc(2024, 10, 1), 2) == [utc(2024, 10, 15), utc(2024, 11, 15)]


# --- day-of-month / day-of-week semantics --------------------------------------------------------


def test_both_day_fields_restricted_fire_when_either_matches() -> None:
    # October 2024: Fridays 4, 11, 18, 25; the 13th is a Sunday.
    assert firings("0 0 13 * FRI", utc(2024, 10, 1), 5) == [
        utc(2024, 10, 4),
        utc(2024, 10, 11),
        utc(2024, 10, 13),
        utc(2024, 10, 18),
        utc(2024, 10, 25),
    ]


def test_only_day_of_month_restricted() -> None:
    assert firings("0 0 13 * *", utc(2024, 10, 1), 2) == [utc(2024, 10, 13), utc(2024, 11, 13)]


def test_a_full_day_of_month_range_still_counts_as_restricted() -> None:
    # '1-31' is not '*': OR-ed with Monday it is every day (cron and cronexpr agree).
    assert firings("0 0 1-31 * MON", utc(2024, 10, 1), 3) == [
        utc(2024, 10, 2),
        utc(2024, 10, 3),
        utc(2024, 10, 4),
    ]


def test_impossible_day_of_month_is_fine_when_or_ed_with_a_weekday() -> None:
    # Feb 30 never happens, but "Feb 30 or a Monday in February" does: Mondays of Feb 2026.
    assert firings("0 0 30 2 MON", utc(2026, 1, 1), 5) == [
        utc(2026, 2, 2),
        utc(2026, 2, 9),
        utc(2026, 2, 16),
        utc(2026, 2, 23),
        utc(2027, 2, 1),
    ]


# --- croniter readings that must NOT leak through ------------------------------------------------


def test_equal_range_is_a_single_value() -> None:
    # croniter alone reads 'FRI-FRI' and '5-5' as the whole field.
    fridays = [utc(2024, 10, 4), utc(2024, 10, 11)]
    assert firings("0 0 * * FRI-FRI", utc(2024, 10, 1), 2) == fridays
    minute_5 = [utc(2024, 10, 1, 0, 5), utc(2024, 10, 1, 1, 5)]
    assert firings("5-5 * * * *", utc(2024, 10, 1), 2) == minute_5


def test_start_slash_step_goes_to_the_field_maximum() -> None:
    assert firings("50/4 * * * *", utc(2024, 10, 1), 4) == [
        utc(2024, 10, 1, 0, 50),
        utc(2024, 10, 1, 0, 54),
        utc(2024, 10, 1, 0, 58),
        utc(2024, 10, 1, 1, 50),
    ]
    # croniter special-cases a start at the maximum; it must still be that one value.
    assert firings("59/15 * * * *", utc(2024, 10, 1), 2) == [
        utc(2024, 10, 1, 0, 59),
        utc(2024, 10, 1, 1, 59),
    ]


# --- agreement with a brute-force scan ------------------------------------------------------------

Predicate = Callable[[datetime], bool]

_BRUTE_FORCE_MINUTES: list[tuple[str, Predicate]] = [
    (
        "*/15 9-17 * * MON-FRI",
        lambda t: t.minute % 15 == 0 and 9 <= t.hour <= 17 and 1 <= cron_dow(t) <= 5,
    ),
    ("0 0 13 * FRI", lambda t: (t.hour, t.minute) == (0, 0) and (t.day == 13 or cron_dow(t) == 5)),
    (
        "30 4 1,15 * 5",
        lambda t: (t.hour, t.minute) == (4, 30) and (t.day in (1, 15) or cron_dow(t) == 5),
    ),
    ("0 12 * * 6,7", lambda t: (t.hour, t.minute) == (12, 0) and cron_dow(t) in (0, 6)),
    ("0 22 * * 1-5/2", lambda t: (t.hour, t.minute) == (22, 0) and cron_dow(t) in (1, 3, 5)),
    (
        "5 0 * feb,MAR sun",
        lambda t: (t.hour, t.minute) == (0, 5) and t.month in (2, 3) and cron_dow(t) == 0,
    ),
    ("0 0 28-31/3 * *", lambda t: (t.hour, t.minute) == (0, 0) and t.day in (28, 31)),
    ("10,20-22 */7 * * *", lambda t: t.minute in (10, 20, 21, 22) and t.hour % 7 == 0),
]


@pytest.mark.parametrize(
    ("expr", "matches"), _BRUTE_FORCE_MINUTES, ids=[e for e, _ in _BRUTE_FORCE_MINUTES]
)
def test_agrees_with_minute_by_minute_scan(expr: str, matches: Predicate) -> None:
    # Across the leap-day month end and into March 2024.
    start, end = utc(2024, 2, 20), utc(2024, 3, 20)
    expected = []
    t = start + timedelta(minutes=1)
    while t <= end:
        if matches(t):
            expected.append(t)
        t += timedelta(minutes=1)
    assert expected, "the window must contain firings for the comparison to mean anything"

    schedule = parse_cron(expr)
    got = []
    current = schedule.next_after(start)
    while current is not None and current <= end:
        got.append(current)
        current = schedule.next_after(current)
    assert got == expected


def test_seconds_agree_with_second_by_second_scan() -> None:
    start, end = utc(2024, 12, 31, 23, 50), utc(2025, 1, 1, 0, 10)
    expected = []
    t = start + timedelta(seconds=1)
    while t <= end:
        if t.second in (10, 15, 20) and t.minute % 2 == 0:
            expected.append(t)
        t += timedelta(seconds=1)
    schedule = parse_cron("10-20/5 */2 * * * *")
    got = []
    current = schedule.next_after(start)
    while current is not None and current <= end:
        got.append(current)
        current = schedule.next_after(current)
    assert got == expected
    assert len(got) == 30


# --- the object ---------------------------------------------------------------------------------


def test_expr_is_kept_stripped_and_drives_equality() -> None:
    schedule = parse_cron("  0 0 * * *  ")
    assert schedule.expr == "0 0 * * *"
    assert schedule == parse_cron("0 0 * * *")
    assert hash(schedule) == hash(parse_cron("0 0 * * *"))
    assert schedule != parse_cron("0 0 * * 1")
    assert isinstance(schedule, CronSchedule)


def test_schedule_is_frozen() -> None:
    schedule = parse_cron("0 0 * * *")
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.expr = "* * * * *"  # type: ignore[misc]


def test_direct_construction_validates_too() -> None:
    with pytest.raises(CronError, match="minute"):
        CronSchedule("60 * * * *")
    assert CronSchedule("0 0 * * *").next_after(utc(2024, 1, 1)) == utc(2024, 1, 2)


def test_next_after_does_not_depend_on_earlier_calls() -> None:
    schedule = parse_cron("0 0 * * *")
    assert schedule.next_after(utc(2030, 1, 1, 12)) == utc(2030, 1, 2)
    assert schedule.next_after(utc(2024, 1, 1, 12)) == utc(2024, 1, 2)
    assert schedule.next_after(utc(2030, 1, 1, 12)) == utc(2030, 1, 2)


# --- rejected input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "pattern"),
    [
        # empty / field count
        ("", r"empty"),
        ("   ", r"empty"),
        ("* * * *", r"got 4 fields.*expected 5, 6 or 7"),
        ("* * * * * * * *", r"got 8 fields.*expected 5, 6 or 7"),
        ("*", r"got 1 field\b.*expected 5, 6 or 7"),
        # out of range, one per field
        ("60 * * * *", r"minute field: 60 is out of range \(0-59\)"),
        ("61 * * * * *", r"second field: 61 is out of range \(0-59\)"),
        ("60 * * * * *", r"second field: 60 is out of range"),
        ("* 24 * * *", r"hour field: 24 is out of range \(0-23\)"),
        ("* * 0 * *", r"day-of-month field: 0 is out of range \(1-31\)"),
        ("* * 32 * *", r"day-of-month field: 32 is out of range"),
        ("* * * 13 *", r"month field: 13 is out of range \(1-12\)"),
        ("* * * 0 *", r"month field: 0 is out of range"),
        ("* * * * 8", r"day-of-week field: 8 is out of range \(0-7\)"),
        ("0 0 0 1 1 * 1969", r"year field: 1969 is out of range \(1970-2099\)"),
        ("0 0 0 1 1 * 2100", r"year field: 2100 is out of range"),
        ("50-60 * * * *", r"minute field: 60 in '50-60' is out of range"),
        # six fields are seconds-first: a trailing year lands in day-of-week
        ("0 0 * * * 2030", r"day-of-week field: 2030 is out of range.*seven fields"),
        # garbage
        ("abc * * * *", r"minute field: 'abc' is not a number"),
        ("* * * foo *", r"month field: unknown name 'foo'"),
        ("* * * * funday", r"day-of-week field: unknown name 'funday'"),
        ("* * * * JAN", r"day-of-week field: unknown name 'JAN'"),
        ("* MON * * *", r"hour field: 'MON' is not a number"),
        ("1- * * * *", r"minute field: cannot parse '1-'"),
        ("-1 * * * *", r"minute field: cannot parse '-1'"),
        ("*/ * * * *", r"minute field: cannot parse '\*/'"),
        ("1-2-3 * * * *", r"minute field: cannot parse '1-2-3'"),
        ("1,,2 * * * *", r"minute field: empty list entry"),
        ("1, * * * *", r"minute field: empty list entry"),
        ("R * * * *", r"minute field: 'R' is not a number"),  # croniter: random
        ("H * * * *", r"minute field: 'H' is not a number"),  # croniter: hash
        ("? * * * *", r"minute field: '\?' is only allowed"),
        ("* * ?/2 * *", r"day-of-month field: '\?' is only allowed"),
        # steps
        ("*/0 * * * *", r"minute field: step 0 in '\*/0' must be between 1 and 59"),
        ("*/0 0 0 1 1 * 2030", r"second field: step 0"),
        ("0 0 0 1 1 * */0", r"year field: step 0"),
        ("* * * * * 0-6/0", r"day-of-week field: step 0"),
        ("*/60 * * * *", r"minute field: step 60"),
        ("* */24 * * *", r"hour field: step 24 .*between 1 and 23"),
        # reversed ranges (croniter would silently wrap around)
        ("50-10 * * * *", r"minute field: range '50-10' is reversed"),
        ("* 20-5 * * *", r"hour field: range '20-5' is reversed"),
        ("* * * NOV-FEB *", r"month field: range 'NOV-FEB' is reversed"),
        ("* * * * FRI-MON", r"day-of-week field: range 'FRI-MON' is reversed"),
        ("0 0 0 1 1 * 2050-2040", r"year field: range '2050-2040' is reversed"),
        # 'a/n' is 'a-max/n': from Sunday-as-7 that is nothing
        ("0 0 * * 7/2", r"day-of-week field: '7/2' selects no day"),
        ("0 0 1 * MON,7/1", r"day-of-week field: '7/1' selects no day"),
        # never fires
        ("0 0 30 2 *", r"never fires: day-of-month 30 never occurs in month 2"),
        ("0 0 31 4,6,9,11 *", r"never fires: day-of-month 31 never occurs in month 4,6,9,11"),
        ("0 0 30,31 FEB ?", r"never fires: day-of-month 30,31"),
        ("0 0 0 29 2 * 2097-2099", r"never fires: day-of-month 29 .*year field"),
        # unsupported extensions
        ("0 0 L * *", r"day-of-month field: 'L'.*not supported"),
        ("0 0 15W * *", r"day-of-month field: '15W'.*not supported"),
        ("0 0 LW * *", r"day-of-month field: 'LW'.*not supported"),
        ("0 0 * * 5#3", r"day-of-week field: '5#3'.*not supported"),
        ("0 0 * * 5L", r"day-of-week field: '5L'.*not supported"),
        # macros
        ("@reboot", r"unknown macro '@reboot'"),
        ("@minutely", r"unknown macro"),
        ("@daily 0", r"macro '@daily' must be the whole expression"),
        # length and characters
        ("*" + " " * 249 + "* * * *", r"257 characters long; at most 256"),
        ("* * * * *\t", r"control character U\+0009 at position 9"),
        ("*\t* * * *", r"control character U\+0009"),
        ("* * * * *\n", r"control character U\+000A"),
        ("* * * * *\x00", r"control character U\+0000"),
        ("* * * * *\x7f", r"control character U\+007F"),
        ("\uff15 * * * *", r"character U\+FF15 at position 0"),  # fullwidth digit 5
        ("* * * * *\u00a0", r"character U\+00A0"),  # no-break space
    ],
)
def test_bad_expressions_are_rejected(expr: str, pattern: str) -> None:
    with pytest.raises(CronError, match=pattern) as excinfo:
        parse_cron(expr)
    assert str(excinfo.value).startswith("cronExpr: ")


def test_exactly_256_characters_is_accepted() -> None:
    expr = "*" + " " * 248 + "* * * *"
    assert len(expr) == 256
    assert parse_cron(expr).next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 1)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CronError, match="cronExpr: must be a string, got int"):
        parse_cron(5)  # type: ignore[arg-type]


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


def test_jobs_with_the_same_expression_and_zone_share_one_schedule() -> None:
    assert parse_cron("0 * * * *") is parse_cron("0 * * * *")
    assert parse_cron("0 * * * *", "Europe/Berlin") is not parse_cron("0 * * * *")
    assert parse_cron("0 * * * *", "europe/berlin").zone == "Europe/Berlin"


def test_a_bad_expression_is_refused_every_time_not_remembered() -> None:
    for _ in range(2):
        with pytest.raises(CronError):
            parse_cron("61 * * * *")
    with pytest.raises(CronError):
        parse_cron(["0", "*"])  # type: ignore[arg-type]
