"""gdts.cron with per-schedule time zones: local fields, DST gaps and overlaps, zone validation.

Real tz database zones, literal instants only. The oracle below never looks at fold or offsets:
it walks real time minute by minute, reads the local clock, and applies the module's documented
DST rules to what the clock shows.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gdts.cron import CronError, CronSchedule, ZoneError, check_zone, parse_cron

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
MINUTE = timedelta(minutes=1)

# (zone, year) -> (spring-forward day, fall-back day), local dates. Both zones skip 02:00-02:59
# in spring; in autumn Berlin repeats 02:00-02:59 (03:00 -> 02:00) and New York 01:00-01:59
# (02:00 -> 01:00), so a 02:30 job only meets the overlap in Berlin.
DST_DAYS = {
    (BERLIN, 2026): (date(2026, 3, 29), date(2026, 10, 25)),
    (BERLIN, 2027): (date(2027, 3, 28), date(2027, 10, 31)),
    (NEW_YORK, 2026): (date(2026, 3, 8), date(2026, 11, 1)),
    (NEW_YORK, 2027): (date(2027, 3, 14), date(2027, 11, 7)),
}
REPEATED_HOUR = {BERLIN: 2, NEW_YORK: 1}


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def firings_between(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Every firing in (start, end], by chaining next_after."""
    out: list[datetime] = []
    current = schedule.next_after(start)
    while current is not None and current <= end:
        assert current.tzinfo is UTC
        out.append(current)
        current = schedule.next_after(current)
    return out


def local_times(schedule: CronSchedule, zone: str, start: datetime, n: int) -> list[datetime]:
    """The next n firings after start, as naive local wall-clock times."""
    out: list[datetime] = []
    current: datetime | None = start
    for _ in range(n):
        assert current is not None
        current = schedule.next_after(current)
        assert current is not None
        out.append(current.astimezone(ZoneInfo(zone)).replace(tzinfo=None))
    return out


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    current = start
    while current <= end:
        yield current
        current += MINUTE


def oracle(
    expr: str, zone: str, every_hour: bool, start: datetime, end: datetime
) -> list[datetime]:
    """Firings in (start, end] for a schedule of whole minutes, by the documented rules, found by
    brute force: every real minute shows a local time; a local time shown for the second time is
    an overlap's second pass (it fires only if the hour field allows every hour); a local time
    never shown is in a gap, and fires at the first real minute whose local time is later."""
    tz = ZoneInfo(zone)
    # The UTC schedule decides only whether a wall-clock reading matches the fields.
    matcher = parse_cron(expr)

    def matches(wall: datetime) -> bool:
        as_utc = wall.replace(tzinfo=UTC)
        return matcher.next_after(as_utc - timedelta(seconds=1)) == as_utc

    shown: list[tuple[datetime, datetime]] = []  # (real minute, local wall) in real-time order
    seen: set[datetime] = set()
    out: set[datetime] = set()
    for instant in minutes(start + MINUTE, end):
        wall = instant.astimezone(tz).replace(tzinfo=None)
        repeat = wall in seen
        seen.add(wall)
        shown.append((instant, wall))
        if matches(wall) and (every_hour or not repeat):
            out.add(instant)
    first_wall, last_wall = min(seen), max(seen)
    for wall in minutes(first_wall, last_wall):
        if wall not in seen and matches(wall):
            out.add(next(instant for instant, shown_wall in shown if shown_wall > wall))
    return sorted(out)


def transitions(zone: str, year: int) -> list[datetime]:
    """The UTC instants (to the hour) at which the zone's offset changes during the year."""
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    previous = utc(year, 1, 1).astimezone(tz).utcoffset()
    for hour in range(1, 366 * 24):
        instant = utc(year, 1, 1) + timedelta(hours=hour)
        offset = instant.astimezone(tz).utcoffset()
        if offset != previous:
            out.append(instant)
        previous = offset
    return out


# --- the transition days themselves ---------------------------------------------------------------


@pytest.mark.parametrize(("zone", "year"), sorted(DST_DAYS))
def test_the_dst_days_used_here_are_the_real_ones(zone: str, year: int) -> None:
    tz = ZoneInfo(zone)
    for day in DST_DAYS[zone, year]:
        before = datetime.combine(day, time(0), tz).utcoffset()
        after = datetime.combine(day, time(12), tz).utcoffset()
        assert before != after


# --- daily 02:30 across both transitions ----------------------------------------------------------


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
@pytest.mark.parametrize(("zone", "year"), sorted(DST_DAYS))
def test_daily_0230_runs_at_0300_on_the_spring_forward_day(zone: str, year: int, expr: str) -> None:
    spring, _ = DST_DAYS[zone, year]
    start = datetime.combine(spring - timedelta(days=2), time(12), ZoneInfo(zone))
    assert local_times(parse_cron(expr, zone), zone, start, 3) == [
        datetime.combine(spring - timedelta(days=1), time(2, 30)),
        datetime.combine(spring, time(3, 0)),
        datetime.combine(spring + timedelta(days=1), time(2, 30)),
    ]


@pytest.mark.parametrize("template", ["30 {hour} * * *", "0 30 {hour} * * *"])
@pytest.mark.parametrize(("zone", "year"), sorted(DST_DAYS))
def test_daily_job_in_the_repeated_hour_runs_once_at_its_first_occurrence(
    zone: str, year: int, template: str
) -> None:
    # Berlin: a 02:30 job; New York, whose repeated hour is 01:00-01:59: a 01:30 job.
    tz = ZoneInfo(zone)
    _, fall = DST_DAYS[zone, year]
    at = time(REPEATED_HOUR[zone], 30)
    schedule = parse_cron(template.format(hour=at.hour), zone)
    start = datetime.combine(fall - timedelta(days=2), time(12), tz)
    got = [schedule.next_after(start)]
    for _ in range(2):
        previous = got[-1]
        assert previous is not None
        got.append(schedule.next_after(previous))
    # The first occurrence is still on summer time: fold=0.
    first_pass = datetime.combine(fall, at, tz).astimezone(UTC)
    assert got == [
        datetime.combine(fall - timedelta(days=1), at, tz).astimezone(UTC),
        first_pass,
        datetime.combine(fall + timedelta(days=1), at, tz).astimezone(UTC),
    ]
    summer = datetime.combine(fall - timedelta(days=1), time(12), tz).utcoffset()
    assert summer is not None
    assert first_pass == datetime.combine(fall, at).replace(tzinfo=UTC) - summer
    # From anywhere in the second pass, the next run is the next day's.
    second_pass = datetime.combine(fall, at, tz).replace(fold=1).astimezone(UTC)
    assert second_pass - first_pass == timedelta(hours=1)
    for after in (second_pass - timedelta(minutes=31), second_pass, second_pass + MINUTE):
        assert schedule.next_after(after) == got[2]


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
@pytest.mark.parametrize(("zone", "year"), sorted(DST_DAYS))
def test_daily_0230_runs_once_at_0230_on_the_fall_back_day(zone: str, year: int, expr: str) -> None:
    # In Berlin the first of the two 02:30s; in New York 02:30 happens once anyway.
    _, fall = DST_DAYS[zone, year]
    start = datetime.combine(fall - timedelta(days=2), time(12), ZoneInfo(zone))
    assert local_times(parse_cron(expr, zone), zone, start, 3) == [
        datetime.combine(fall + timedelta(days=offset), time(2, 30)) for offset in (-1, 0, 1)
    ]


def test_berlin_literal_instants() -> None:
    schedule = parse_cron("30 2 * * *", BERLIN)
    assert schedule.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert schedule.next_after(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert schedule.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)  # 02:30 CET


def test_new_york_literal_instants() -> None:
    schedule = parse_cron("30 2 * * *", NEW_YORK)
    assert schedule.next_after(utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    assert schedule.next_after(utc(2026, 3, 8, 7, 0)) == utc(2026, 3, 9, 6, 30)  # 02:30 EDT
    assert schedule.next_after(utc(2026, 10, 31, 12)) == utc(2026, 11, 1, 7, 30)  # 02:30 EST
    one_thirty = parse_cron("30 1 * * *", NEW_YORK)
    assert one_thirty.next_after(utc(2026, 10, 31, 12)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert one_thirty.next_after(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 2, 6, 30)  # 01:30 EST


def test_quarter_hourly_runs_once_at_0300_for_the_whole_gap() -> None:
    # Berlin, 2026-03-29: 02:00-02:59 does not exist; 01:45 CET is 00:45 UTC, 03:00 CEST 01:00 UTC.
    assert firings_between(
        parse_cron("*/15 * * * *", BERLIN), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)
    ) == [
        utc(2026, 3, 29, 0, 45),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 30),
    ]


def test_every_minute_does_not_pause_in_the_overlap() -> None:
    # Berlin, 2026-10-25: 02:00-02:59 happens twice, from 00:00 to 02:00 UTC: 120 runs.
    got = firings_between(
        parse_cron("* * * * *", BERLIN), utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 1, 59)
    )
    assert got == list(minutes(utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 1, 59)))
    assert len(got) == 120


@pytest.mark.parametrize(("zone", "year"), sorted(DST_DAYS))
def test_every_minute_counts_the_local_day_length(zone: str, year: int) -> None:
    tz = ZoneInfo(zone)
    schedule = parse_cron("* * * * *", zone)
    for day, hours in zip(DST_DAYS[zone, year], (23, 25), strict=True):
        start = datetime.combine(day, time(0), tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
        assert len(firings_between(schedule, start - MINUTE, end - MINUTE)) == hours * 60


def test_seconds_resolution_at_the_edges_of_a_gap_and_an_overlap() -> None:
    every_second = parse_cron("* * * * * *", BERLIN)
    # 01:59:59 CET -> 03:00:00 CEST, the same instant as 02:00:00 would have been.
    assert every_second.next_after(utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 29, 1, 0, 0)
    assert every_second.next_after(utc(2026, 3, 29, 1, 0, 0)) == utc(2026, 3, 29, 1, 0, 1)
    # 02:59:59 CEST (first pass) -> 02:00:00 CET (second pass): real time, one second later.
    assert every_second.next_after(utc(2026, 10, 25, 0, 59, 59)) == utc(2026, 10, 25, 1, 0, 0)
    # Not every hour: after the first pass the next run is 03:00:00 CET, an hour later.
    most_hours = parse_cron("* * 0-22 * * *", BERLIN)
    assert most_hours.next_after(utc(2026, 10, 25, 0, 59, 59)) == utc(2026, 10, 25, 2, 0, 0)
    assert most_hours.next_after(utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 2, 0, 0)


# --- brute-force oracle across every transition ---------------------------------------------------

# (expression, hour field allows every hour)
ORACLE_EXPRS = [
    ("* * * * *", True),
    ("*/15 * * * *", True),
    ("0 */15 * * * *", True),
    ("*/15 0-23 * * *", True),
    ("@hourly", True),
    ("30 2 * * *", False),
    ("0 30 2 * * *", False),
    ("*/15 1-3 * * *", False),
    ("0 */2 * * *", False),
    ("0 2,3 * * *", False),
    ("59 1 * * *", False),
    ("@daily", False),
]


def _transition_cases() -> list[tuple[str, datetime]]:
    cases = [(zone, t) for (zone, year) in sorted(DST_DAYS) for t in transitions(zone, year)]
    # A 30-minute DST shift, a southern-hemisphere zone, DST on a non-hour offset, a 15-minute
    # gap (Kathmandu's move from +05:30 to +05:45) and an overlap that is no DST change at all
    # (Moscow's return from +04:00 to +03:00).
    for zone, year in (
        ("Australia/Lord_Howe", 2026),
        ("Australia/Sydney", 2026),
        ("Pacific/Chatham", 2026),
        ("Asia/Kathmandu", 1985),  # at midnight local on 1986-01-01
        ("Europe/Moscow", 2014),
    ):
        cases += [(zone, t) for t in transitions(zone, year)]
    return cases


TRANSITION_CASES = _transition_cases()


def test_transition_cases_cover_both_directions() -> None:
    assert len(TRANSITION_CASES) == 2 * (len(DST_DAYS) + 3) + 2


@pytest.mark.parametrize(("expr", "every_hour"), ORACLE_EXPRS)
@pytest.mark.parametrize(
    ("zone", "transition"), TRANSITION_CASES, ids=[f"{z}-{t:%Y%m%d}" for z, t in TRANSITION_CASES]
)
def test_matches_the_oracle_across_the_transition(
    zone: str, transition: datetime, expr: str, every_hour: bool
) -> None:
    start, end = transition - timedelta(hours=30), transition + timedelta(hours=30)
    assert firings_between(parse_cron(expr, zone), start, end) == oracle(
        expr, zone, every_hour, start, end
    )


@pytest.mark.parametrize("expr", ["*/15 * * * *", "30 2 * * *", "*/15 1-3 * * *"])
@pytest.mark.parametrize(
    ("zone", "transition"), TRANSITION_CASES, ids=[f"{z}-{t:%Y%m%d}" for z, t in TRANSITION_CASES]
)
def test_next_after_from_any_instant_matches_the_oracle(
    zone: str, transition: datetime, expr: str
) -> None:
    # Not only from firings: from instants inside both passes of an overlap, in gaps' shadows,
    # with seconds and microseconds.
    every_hour = expr.split()[1] == "*"
    start, end = transition - timedelta(hours=4), transition + timedelta(hours=28)
    expected = oracle(expr, zone, every_hour, start, end)
    schedule = parse_cron(expr, zone)
    after = start
    while after < expected[-1]:
        assert schedule.next_after(after) == next(f for f in expected if f > after), after
        after += timedelta(minutes=7, seconds=13, microseconds=1)


# --- offsets east and west, non-hour offsets ----------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (BERLIN, utc(2026, 1, 15, 8)),  # +01:00 in winter
        ("Asia/Tokyo", utc(2026, 1, 15, 0)),  # +09:00
        (NEW_YORK, utc(2026, 1, 14, 14)),  # -05:00, 07:00 there at "after"
        ("America/Los_Angeles", utc(2026, 1, 14, 17)),  # -08:00
        ("Asia/Kathmandu", utc(2026, 1, 15, 3, 15)),  # +05:45
        ("Asia/Kolkata", utc(2026, 1, 15, 3, 30)),  # +05:30
        ("America/St_Johns", utc(2026, 1, 14, 12, 30)),  # -03:30
        ("Pacific/Chatham", utc(2026, 1, 14, 19, 15)),  # +13:45 (summer there)
        ("UTC", utc(2026, 1, 15, 9)),
    ],
)
def test_nine_oclock_local_is_the_right_utc_instant(zone: str, expected: datetime) -> None:
    assert parse_cron("0 9 * * *", zone).next_after(utc(2026, 1, 14, 12)) == expected


def test_day_and_month_fields_are_local_too() -> None:
    # Monday 2026-06-01 00:00 in Tokyo is still Sunday in UTC.
    assert parse_cron("0 0 1 6 MON", "Asia/Tokyo").next_after(utc(2026, 5, 1)) == utc(
        2026, 5, 31, 15
    )
    assert parse_cron("0 0 0 1 1 * 2030", "Asia/Tokyo").next_after(utc(2026, 1, 1)) == utc(
        2029, 12, 31, 15
    )


def test_after_may_be_in_any_zone_and_the_answer_is_utc() -> None:
    schedule = parse_cron("0 9 * * *", "Asia/Kathmandu")
    after = datetime(2026, 1, 14, 20, 0, tzinfo=timezone(timedelta(hours=-5)))  # 01:00 UTC
    got = schedule.next_after(after)
    assert got == utc(2026, 1, 15, 3, 15)
    assert got is not None and got.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))


def test_strictly_after_with_seconds_resolution() -> None:
    schedule = parse_cron("0 9 * * *", BERLIN)
    firing = utc(2026, 7, 1, 7)
    assert schedule.next_after(firing - timedelta(microseconds=1)) == firing
    assert schedule.next_after(firing) == firing + timedelta(days=1)
    assert schedule.next_after(firing + timedelta(microseconds=999_999)) == firing + timedelta(
        days=1
    )


def test_year_limits_apply_to_local_years() -> None:
    # Kiritimati is +14:00: its last firing in 2099 is still in 2099 UTC, and nothing follows.
    kiritimati = parse_cron("0 0 1 1 *", "Pacific/Kiritimati")
    assert kiritimati.next_after(utc(2098, 6, 1)) == utc(2098, 12, 31, 10)
    assert kiritimati.next_after(utc(2098, 12, 31, 10)) is None
    # Pago Pago is -11:00: the first firing, 1970-01-01 00:00 local, is 11:00 UTC.
    pago = parse_cron("0 0 * * *", "Pacific/Pago_Pago")
    assert pago.next_after(utc(1960, 1, 1)) == utc(1970, 1, 1, 11)
    assert pago.next_after(datetime.min.replace(tzinfo=UTC)) == utc(1970, 1, 1, 11)
    assert pago.next_after(datetime.max.replace(tzinfo=UTC)) is None
    assert pago.next_after(utc(2100, 1, 1)) is None


# --- zone names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "pattern"),
    [
        ("Mars/Olympus", r"^zone: unknown time zone 'Mars/Olympus'"),
        ("", r"^zone: is empty"),
        ("../x", r"^zone: unknown time zone '\.\./x'"),
        ("../etc/passwd", r"^zone: unknown time zone"),
        ("/etc/localtime", r"^zone: unknown time zone"),
        ("Europe/Berlin\x00", r"^zone: unknown time zone 'Europe/Berlin\\x00'"),
        ("\x00", r"^zone: unknown time zone"),
        ("Local", r"^zone: unknown time zone 'Local'"),
        ("localtime", r"^zone: unknown time zone 'localtime'"),
        ("posixrules", r"^zone: unknown time zone"),
        ("Factory", r"^zone: unknown time zone"),
        ("posix/Europe/Berlin", r"^zone: unknown time zone"),
        ("right/UTC", r"^zone: unknown time zone"),
        ("zone.tab", r"^zone: unknown time zone"),
        ("Europe", r"^zone: unknown time zone 'Europe'"),
        ("Europe/Berlin/", r"^zone: unknown time zone"),
        (" Europe/Berlin", r"^zone: unknown time zone"),
        ("+01:00", r"^zone: unknown time zone"),
        ("E" * 65, r"^zone: is 65 characters long; at most 64"),
        (5, r"^zone: must be a string, got int"),
        (b"Europe/Berlin", r"^zone: must be a string, got bytes"),
    ],
)
def test_bad_zones_are_refused_naming_the_zone_field(zone: object, pattern: str) -> None:
    for attempt in (
        lambda: check_zone(zone),  # type: ignore[arg-type]
        lambda: parse_cron("0 9 * * *", zone),  # type: ignore[arg-type]
        lambda: CronSchedule("0 9 * * *", zone),  # type: ignore[arg-type]
    ):
        with pytest.raises(ZoneError, match=pattern) as exc:
            attempt()
        assert isinstance(exc.value, CronError)
        assert exc.value.field == "zone"
        assert not exc.value.problem.startswith("zone")


def test_expression_errors_still_name_cron_expr() -> None:
    with pytest.raises(CronError, match=r"^cronExpr: minute field") as exc:
        parse_cron("60 * * * *", BERLIN)
    assert not isinstance(exc.value, ZoneError)
    assert exc.value.field == "cronExpr"
    assert exc.value.problem.startswith("minute field")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        (BERLIN, BERLIN),
        ("europe/berlin", BERLIN),
        ("AMERICA/NEW_YORK", NEW_YORK),
        ("UTC", "UTC"),
        ("utc", "UTC"),
        ("Etc/UTC", "Etc/UTC"),
        ("US/Eastern", "US/Eastern"),  # links are valid names and stay as given
        ("Asia/Kathmandu", "Asia/Kathmandu"),
    ],
)
def test_check_zone_returns_the_databases_spelling(name: str, canonical: str) -> None:
    assert check_zone(name) == canonical
    assert parse_cron("0 9 * * *", name).zone == canonical


# --- defaults, equality, the UTC path -------------------------------------------------------------


def test_no_zone_means_utc() -> None:
    plain = parse_cron("0 9 * * *")
    assert plain.zone == "UTC"
    assert plain == parse_cron("0 9 * * *", None) == parse_cron("0 9 * * *", "UTC")
    assert plain == CronSchedule("0 9 * * *") == CronSchedule("0 9 * * *", "UTC")
    assert plain.next_after(utc(2026, 3, 29)) == utc(2026, 3, 29, 9)


def test_equality_and_hash_use_expr_and_zone() -> None:
    berlin = parse_cron("0 9 * * *", BERLIN)
    assert berlin == parse_cron(" 0 9 * * * ", "europe/berlin")
    assert hash(berlin) == hash(parse_cron("0 9 * * *", BERLIN))
    assert berlin != parse_cron("0 9 * * *", NEW_YORK)
    assert berlin != parse_cron("0 9 * * *")
    assert berlin != parse_cron("0 10 * * *", BERLIN)
    assert len({berlin, parse_cron("0 9 * * *"), parse_cron("0 9 * * *", BERLIN)}) == 2
    assert "Europe/Berlin" in repr(berlin)


@pytest.mark.parametrize("alias", ["Etc/UTC", "Zulu", "GMT", "Etc/GMT"])
def test_utc_aliases_keep_their_name_and_fire_as_utc(alias: str) -> None:
    schedule = parse_cron("*/7 3 * * *", alias)
    assert schedule.zone == alias
    assert schedule != parse_cron("*/7 3 * * *")
    start = utc(2026, 3, 28)
    end = utc(2026, 3, 30)
    assert firings_between(schedule, start, end) == firings_between(
        parse_cron("*/7 3 * * *"), start, end
    )


def test_zones_without_dst_need_no_rules() -> None:
    # Asia/Kolkata has had +05:30 since 1945: the local schedule is the UTC one shifted.
    shifted = [
        f - timedelta(hours=5, minutes=30)
        for f in firings_between(parse_cron("*/10 2 * * *"), utc(2026, 1, 1), utc(2026, 1, 5))
    ]
    kolkata = parse_cron("*/10 2 * * *", "Asia/Kolkata")
    assert firings_between(kolkata, shifted[0] - MINUTE, shifted[-1]) == shifted
