"""Cron expressions: parsing, validation and next-firing maths.

Pure: no clock reads, no logging, and no I/O except reading the system tz database when a zone is
first used. "Now" is always an argument.

Accepted syntax:

* 5 fields: ``minute hour day-of-month month day-of-week`` (second = 0)
* 6 fields: ``second minute hour day-of-month month day-of-week``
* 7 fields: ``second minute hour day-of-month month day-of-week year``
* macros: ``@yearly @annually @monthly @weekly @daily @midnight @hourly``

Inside a field: ``*``, ``*/n``, ``a``, ``a-b``, ``a/n`` (= ``a-max/n``), ``a-b/n`` and comma lists
of those; month names JAN-DEC and day names SUN-SAT, short or spelled out, any case; ``?`` as ``*``
in the two day fields; 7 as well as 0 for Sunday. Schedules fire only in the years 1970-2099.

Compared with gorhill/cronexpr, which the Go GDTS used: the 5- and 7-field forms, names, ``?``,
steps and day-of-month/day-of-week semantics match. Differences: cronexpr read SIX fields as
``minute hour day-of-month month day-of-week year`` (no seconds), here they are seconds-first; the
L / W / # extensions are refused with a message saying so; reversed ranges and empty list entries,
which cronexpr silently turned into nothing, are refused.

next_after walks the calendar itself: each field is parsed here into an explicit set of values, and
the sets are compiled into "next allowed value" tables that a carry search (year, month, day, hour,
minute, second; a lower field restarts at its minimum whenever a higher one moves) steps through,
in ~1-3 us a call. croniter, which did the walking before and still serves the tests as an
oracle, never saw the user's text either: the croniter 7.0.0 readings that differ from cron and
cronexpr are why:

* an equal range means the *whole* field (``5-5`` in minutes fires every minute, and
  ``0 0 * * FRI-FRI`` fires every day);
* a reversed range silently wraps around (``50-10`` in minutes, ``FRI-MON``);
* ``R`` (random) and ``H`` (hash) tokens, ``L``, ``W`` and ``#`` are accepted;
* a step larger than the field (``*/60``) is accepted;
* with its default ``max_years_between_matches=50`` a firing more than 50 years after the previous
  one is reported as "no next date" (``0 0 0 1 1 * 2030,2095`` loses 2095).

Time zones. A schedule is evaluated in UTC unless it is given an IANA time zone (``parse_cron(expr,
"Europe/Berlin")``); the fields then match the zone's local wall clock, and next_after still takes
any aware datetime and answers in UTC. Zone names are checked against the tz database's list of
zones (zoneinfo.available_timezones(), minus the machine-dependent ``localtime`` and the
placeholder ``Factory``); a name differing only in letter case is accepted and stored in the
database's spelling, and nothing else is rewritten (``US/Eastern`` stays ``US/Eastern``). A bad
name raises :class:`ZoneError`, a CronError whose ``field`` is ``zone`` and whose message starts
with ``zone: ``. The year field and the 1970-2099 limit apply to local years. Daylight saving time:

1. Gap (the clocks spring forward, e.g. Europe/Berlin on 2026-03-29, 02:00 -> 03:00): a firing
   whose local time does not exist runs at the first instant after the gap, the instant the clocks
   jump (03:00 local). All firings inside one gap collapse into that single run, together with a
   firing at the gap's end itself (03:00), which is the same instant. A daily ``30 2 * * *`` job
   runs at 03:00 that day; a ``*/15 * * * *`` job runs once at 03:00 for 02:00, 02:15, 02:30,
   02:45 and 03:00, then at 03:15.
2. Overlap (the clocks go back, e.g. Europe/Berlin on 2026-10-25, 03:00 -> 02:00, so 02:00-02:59
   happens twice): if the hour field allows every hour (``*``, or the same set written otherwise,
   such as ``0-23`` or ``*/1``; @hourly qualifies, @daily does not) the firings follow real time
   and happen in both passes: an every-minute job runs every minute, 120 times in those two real
   hours. Otherwise each local time fires once, at its first occurrence: a daily ``30 2 * * *`` job
   runs once, at the first 02:30 (00:30 UTC).
"""

import functools
import re
import unicodedata
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, available_timezones

__all__ = ["CronError", "CronSchedule", "ZoneError", "check_zone", "parse_cron"]

MAX_EXPR_LEN = 256
_MIN_YEAR = 1970
_MAX_YEAR = 2099

# The zone of schedules without one, searched directly: UTC has no gaps or overlaps, so the wall
# clock _search walks is the answer. Zoned schedules search local wall-clock time instead and
# resolve what they find with the DST rules (_next_in_zone).
_SCHEDULE_TZ = UTC
_MAX_ZONE_LEN = 64  # the longest tz database name is about half that
# Names that are UTC under another spelling (tz database links to Etc/UTC and Etc/GMT): they keep
# their name but take the UTC search, which gives the same answers faster.
_UTC_ALIASES = frozenset(
    (
        "UTC Etc/UTC UCT Etc/UCT Universal Etc/Universal Zulu Etc/Zulu GMT Etc/GMT GMT0 Etc/GMT0 "
        "GMT+0 Etc/GMT+0 GMT-0 Etc/GMT-0 Greenwich Etc/Greenwich"
    ).split()
)
# 'localtime' is whatever the machine is set to, so two workers could disagree about a job;
# 'Factory' is tzdata's placeholder for "zone not configured yet".
_EXCLUDED_ZONES = frozenset({"localtime", "Factory"})
# Each step of the zoned search crosses a gap or an overlap it cannot use; real tz data needs at
# most two. The bound only turns a would-be endless loop on corrupt data into an error.
_MAX_ZONE_STEPS = 16
_ONE_SECOND = timedelta(seconds=1)

_MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Spelled-out names too: cronexpr took them, so Go-era jobs may use them. Not from the calendar
# module, whose names follow the process locale.
_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_DAY_NAMES: Mapping[str, int] = {
    name: number
    for number, names in enumerate(
        (
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        )
    )
    for name in names
}


class CronError(ValueError):
    """Bad cron expression; the message starts with ``cronExpr: `` and says what is wrong.

    ``field`` names the API field at fault (``cronExpr`` here, ``zone`` for :class:`ZoneError`)
    and ``problem`` is the message without that prefix.
    """

    field = "cronExpr"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{self.field}: {problem}")


class ZoneError(CronError):
    """Bad time zone name; the message starts with ``zone: ``."""

    field = "zone"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    # Highest literal accepted; only day-of-week differs (7 = Sunday, as in cron and cronexpr).
    literal_high: int
    # cronexpr's limit: a step may not exceed the field's largest value.
    max_step: int
    names: Mapping[str, int] = field(default_factory=dict)
    # '?' is Quartz's "no specific value"; it only means something in the two day fields.
    allows_question: bool = False
    full: frozenset[int] = field(init=False, compare=False)  # every value, low to high

    def __post_init__(self) -> None:
        object.__setattr__(self, "full", frozenset(range(self.low, self.high + 1)))


_SECOND = _Field("second", 0, 59, 59, 59)
_MINUTE = _Field("minute", 0, 59, 59, 59)
_HOUR = _Field("hour", 0, 23, 23, 23)
_DOM = _Field("day-of-month", 1, 31, 31, 31, allows_question=True)
_MONTH = _Field("month", 1, 12, 12, 12, names=_MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 6, 7, 6, names=_DAY_NAMES, allows_question=True)
_YEAR = _Field("year", _MIN_YEAR, _MAX_YEAR, _MAX_YEAR, _MAX_YEAR)

_FIELDS: Mapping[str, _Field] = {
    spec.name: spec for spec in (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW, _YEAR)
}

_LAYOUTS: Mapping[int, tuple[_Field, ...]] = {
    5: (_MINUTE, _HOUR, _DOM, _MONTH, _DOW),
    6: (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW),
    7: (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW, _YEAR),
}
_LAYOUT_TEXT = "; ".join(
    f"{n}: {' '.join(spec.name for spec in layout)}" for n, layout in _LAYOUTS.items()
)

_ENTRY_RE = re.compile(
    r"(?:(?P<star>[*?])|(?P<lo>[0-9]+|[a-z]+)(?:-(?P<hi>[0-9]+|[a-z]+))?)(?:/(?P<step>[0-9]+))?",
    re.ASCII | re.IGNORECASE,
)
# Quartz/cronexpr extensions we do not support; recognised only to say so plainly.
_DOM_EXTENSION_RE = re.compile(r"l|lw|l-[0-9]+|[0-9]+w|w[0-9]+", re.ASCII | re.IGNORECASE)
_DOW_EXTENSION_RE = re.compile(
    rf"l|(?:[0-9]+|{'|'.join(_DAY_NAMES)})(?:l|#[0-9]+)", re.ASCII | re.IGNORECASE
)
_ENTRY_HELP = (
    "expected *, a value, a range a-b, a step */n, a/n or a-b/n, or a comma-separated list of those"
)


@dataclass(frozen=True, slots=True)
class _ParsedField:
    values: frozenset[int]
    # False when the field is '*' or '?' (or a list holding one). Only the day fields care: it
    # decides between "day-of-month OR day-of-week" and "the other field alone".
    restricted: bool


def _value(spec: _Field, token: str, entry: str) -> int:
    where = "" if token == entry else f" in {entry!r}"
    if token.isdigit():
        value = int(token)
    elif token.lower() in spec.names:
        value = spec.names[token.lower()]
    elif spec.names:
        raise CronError(f"{spec.name} field: unknown name {token!r}{where}")
    else:
        raise CronError(f"{spec.name} field: {token!r}{where} is not a number")
    if not spec.low <= value <= spec.literal_high:
        raise CronError(
            f"{spec.name} field: {value}{where} is out of range ({spec.low}-{spec.literal_high})"
        )
    return value


def _parse_entry(spec: _Field, entry: str) -> tuple[frozenset[int], bool]:
    """One comma-separated entry -> (values, is a wildcard)."""
    if spec is _DOM and _DOM_EXTENSION_RE.fullmatch(entry):
        raise CronError(
            f"{spec.name} field: {entry!r}: 'L' (last day) and 'W' (nearest weekday) "
            "are not supported"
        )
    if spec is _DOW and _DOW_EXTENSION_RE.fullmatch(entry):
        raise CronError(
            f"{spec.name} field: {entry!r}: 'L' (last weekday) and '#' (nth weekday) "
            "are not supported"
        )
    m = _ENTRY_RE.fullmatch(entry)
    if m is None:
        raise CronError(f"{spec.name} field: cannot parse {entry!r}; {_ENTRY_HELP}")

    star, lo_tok, hi_tok, step_tok = m.group("star", "lo", "hi", "step")
    if star == "?" and (not spec.allows_question or step_tok is not None):
        raise CronError(
            f"{spec.name} field: '?' is only allowed on its own, in day-of-month and day-of-week"
        )

    step = 1
    if step_tok is not None:
        step = int(step_tok)
        if not 1 <= step <= spec.max_step:
            raise CronError(
                f"{spec.name} field: step {step} in {entry!r} must be between 1 and {spec.max_step}"
            )

    if star is not None:
        if step_tok is None:
            return spec.full, True
        lo, hi = spec.low, spec.high
    else:
        assert lo_tok is not None  # the regex guarantees it when star is None
        lo = _value(spec, lo_tok, entry)
        if hi_tok is not None:
            hi = _value(spec, hi_tok, entry)
            if lo > hi:
                # Vixie cron rejects these and cronexpr expands them to nothing; croniter wraps
                # around. Refusing is the only reading that surprises nobody.
                raise CronError(
                    f"{spec.name} field: range {entry!r} is reversed ({lo} > {hi}); "
                    "write the smaller value first, or use a list"
                )
        elif step_tok is not None:
            hi = spec.high  # 'a/n' is 'a-max/n', as in cronexpr
            if lo > hi:
                # Only day-of-week gets here: '7/n' runs from Sunday-as-7 up to Saturday (6),
                # which is nothing. An empty field would never match (before, it silently
                # shifted the fields croniter was given).
                raise CronError(
                    f"{spec.name} field: {entry!r} selects no day ('a/n' runs from a to "
                    f"{spec.high}); for Sunday write 0 or 7 without a step, or 0/n"
                )
        else:
            hi = lo

    if spec is _DOW:
        # Folding 7 into 0 only after expanding keeps '5-7' = Fri, Sat, Sun.
        return frozenset(v % 7 for v in range(lo, hi + 1, step)), False
    return frozenset(range(lo, hi + 1, step)), False


# A million stored jobs hold hundreds of thousands of distinct expressions made of a few hundred
# distinct fields ('17', '*', '*/5'): each field is parsed once and its tables built once.
@functools.lru_cache(maxsize=4096)
def _parsed_field(spec_name: str, text: str, n_fields: int) -> _ParsedField:
    return _parse_field(_FIELDS[spec_name], text, n_fields)


def _parse_field(spec: _Field, text: str, n_fields: int) -> _ParsedField:
    values: set[int] = set()
    wildcard = False
    for entry in text.split(","):
        if not entry:
            raise CronError(f"{spec.name} field: empty list entry in {text!r}")
        try:
            entry_values, entry_wildcard = _parse_entry(spec, entry)
        except CronError as err:
            if spec is _DOW and n_fields == 6 and entry.isdigit() and len(entry) == 4:
                # For cronexpr six fields meant '... day-of-week year': point at the cause
                # instead of only saying "out of range".
                raise CronError(
                    f"{spec.name} field: {entry} is out of range (0-7); six fields are read as "
                    "'second minute hour day-of-month month day-of-week' - to give a year, "
                    "use seven fields"
                ) from err
            raise
        values |= entry_values
        wildcard = wildcard or entry_wildcard
    return _ParsedField(frozenset(values), restricted=not wildcard)


def _check_text(expr: object) -> str:
    if not isinstance(expr, str):
        raise CronError(f"must be a string, got {type(expr).__name__}")
    # Before anything else, so no work is ever proportional to an oversized input.
    if len(expr) > MAX_EXPR_LEN:
        raise CronError(f"is {len(expr)} characters long; at most {MAX_EXPR_LEN} are allowed")
    printable = expr.isascii() and expr.isprintable()  # " " to "~": the common case, at C speed
    for pos, ch in enumerate("" if printable else expr):
        if not " " <= ch <= "~":
            kind = "control character" if unicodedata.category(ch) == "Cc" else "character"
            raise CronError(
                f"{kind} U+{ord(ch):04X} at position {pos} is not allowed; only printable "
                "ASCII and spaces are"
            )
    text = expr.strip(" ")
    if not text:
        raise CronError("is empty")
    return text


def _tokens(text: str) -> list[str]:
    tokens = text.split()
    if not tokens[0].startswith("@"):
        return tokens
    if len(tokens) != 1:
        raise CronError(f"macro {tokens[0]!r} must be the whole expression")
    expansion = _MACROS.get(tokens[0].lower())
    if expansion is None:
        raise CronError(f"unknown macro {tokens[0]!r}; accepted: {', '.join(_MACROS)}")
    return expansion.split()


@functools.lru_cache(maxsize=4096)
def _never_fires_reason(
    dom: _ParsedField, dow: _ParsedField, months: _ParsedField, years: _ParsedField
) -> str | None:
    # Every weekday occurs in every month, so a restricted day-of-week (alone, or OR-ed with
    # day-of-month) always matches some day; so does '*' in both. Only a day-of-month
    # restriction on its own can be unsatisfiable: Feb 30, Apr 31, Feb 29 in 2097-2099.
    if not dom.restricted or dow.restricted:
        return None
    first_day = min(dom.values)
    for year in sorted(years.values):
        for month in sorted(months.values):
            if first_day <= monthrange(year, month)[1]:
                return None
    days = ",".join(str(d) for d in sorted(dom.values))
    month_list = ",".join(str(m) for m in sorted(months.values))
    where = "" if years.values == _YEAR.full else " of any year allowed by the year field"
    return f"day-of-month {days} never occurs in month {month_list}{where}"


# Cron weekday (Sunday = 0) of the 1st, and the length, of every month the schedules can fire in;
# index (year - 1970) * 12 + month - 1. 1,560 pairs, so the search never asks the calendar module.
_MONTH_SHAPES: tuple[tuple[int, int], ...] = tuple(
    ((first_weekday + 1) % 7, length)
    for year in range(_MIN_YEAR, _MAX_YEAR + 1)
    for month in range(1, 13)
    for first_weekday, length in (monthrange(year, month),)
)

# How the two day fields combine (see _compile_fields): bit flags; with both set, a day matches
# if either field allows it.
_ANY_DAY = 0
_BY_DOM = 1
_BY_DOW = 2
# In _Compiled.days: "no allowed day-of-month from here to the 31st"; longer than any month.
_NO_DAY = 32


@functools.lru_cache(maxsize=1024)
def _next_table(values: frozenset[int], low: int, high: int) -> tuple[int | None, ...]:
    """Index ``v - low`` for ``v`` in ``low..high + 1`` -> the smallest value >= ``v`` in
    ``values``, or None if there is none. The extra entry past ``high`` is where a carry into
    the field lands (second 60, hour 24, month 13...), so the search never bounds-checks."""
    table: list[int | None] = []
    upcoming: int | None = None
    for v in range(high + 1, low - 1, -1):
        if v in values:
            upcoming = v
        table.append(upcoming)
    table.reverse()
    return tuple(table)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A parsed expression as lookup tables for _search. Immutable, so shared between threads
    and between every schedule with the same text (see _compile_text)."""

    # Indexed by the value itself (from 0, so months[0] and the day-of-month entry 0 are unused):
    # the next allowed value at or after the index, None when the field has none left.
    seconds: tuple[int | None, ...]  # 61 entries
    minutes: tuple[int | None, ...]  # 61
    hours: tuple[int | None, ...]  # 25
    months: tuple[int | None, ...]  # 14
    # Indexed by year - 1970, for 1970-2100; entry 2100 is always None.
    years: tuple[int | None, ...]
    # Day of month 0-32 -> next allowed day-of-month, or _NO_DAY; only read under _BY_DOM.
    days: tuple[int, ...]
    # Cron weekday 0-6 -> days to wait until an allowed weekday (0 if it is one); under _BY_DOW.
    weekday_wait: tuple[int, ...]
    day_rule: int
    # The hour field allows all 24 hours: in a DST overlap such a schedule fires in both passes.
    every_hour: bool


def _compile_fields(
    second: _ParsedField,
    minute: _ParsedField,
    hour: _ParsedField,
    dom: _ParsedField,
    month: _ParsedField,
    dow: _ParsedField,
    year: _ParsedField,
) -> _Compiled:
    # Day-of-month and day-of-week: cron's rule, which is also cronexpr's: when both are
    # restricted a day matches if EITHER matches; when one is '*' or '?' only the other counts.
    # A restricted field counts even when it holds every value: '0 0 1-31 * MON' is every day
    # under OR, not only Mondays.
    day_rule = (_BY_DOM if dom.restricted else 0) | (_BY_DOW if dow.restricted else 0)
    return _Compiled(
        seconds=_next_table(second.values, 0, _SECOND.high),
        minutes=_next_table(minute.values, 0, _MINUTE.high),
        hours=_next_table(hour.values, 0, _HOUR.high),
        months=_next_table(month.values, 0, _MONTH.high),
        years=_next_table(year.values, _MIN_YEAR, _MAX_YEAR),
        days=_day_table(dom.values),
        weekday_wait=_weekday_waits(dow.values),
        day_rule=day_rule,
        # By value, not by spelling: '*', '*/1' and '0-23' are one schedule and behave as one.
        every_hour=hour.values == _HOUR.full,
    )


@functools.lru_cache(maxsize=1024)
def _day_table(days: frozenset[int]) -> tuple[int, ...]:
    return tuple(_NO_DAY if d is None else d for d in _next_table(days, 0, _DOM.high))


@functools.lru_cache(maxsize=256)
def _weekday_waits(weekdays: frozenset[int]) -> tuple[int, ...]:
    return tuple(next(wait for wait in range(7) if (w + wait) % 7 in weekdays) for w in range(7))


def _search(
    c: _Compiled,
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    tz: tzinfo | None = _SCHEDULE_TZ,
) -> datetime | None:
    """The first wall-clock time at or after the given one that the fields match, with ``tz``
    attached (None: naive, for local times still to be resolved), or None if there is none by
    the end of 2099. The time may have one field just past its maximum (second 60, day 32...),
    as a "+1" leaves it: that is only a pending carry."""
    if year > _MAX_YEAR:
        return None
    years, months, days, hours = c.years, c.months, c.days, c.hours
    minutes, seconds, weekday_wait, day_rule = c.minutes, c.seconds, c.weekday_wait, c.day_rule
    # The classic carry search. Each step finds the next allowed value of one field at or after
    # the current one; if that moves the field, everything below restarts at its minimum, and if
    # the field has none left, the field above advances by one and the search starts over from
    # the top (re-checking, cheaply, the fields that did not move). Every pass moves the time
    # forward, and the year table ends in None, so it terminates: in one pass for most calls, in
    # a few for carries, in ~3 per year skipped for the rarest (Feb 29, a year list).
    while True:
        upcoming = years[year - _MIN_YEAR]
        if upcoming is None:
            return None
        if upcoming != year:
            year, month, day, hour, minute, second = upcoming, 1, 1, 0, 0, 0

        upcoming = months[month]
        if upcoming is None:
            year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
            continue
        if upcoming != month:
            month, day, hour, minute, second = upcoming, 1, 0, 0, 0

        first_weekday, length = _MONTH_SHAPES[(year - _MIN_YEAR) * 12 + month - 1]
        if day_rule == _ANY_DAY:
            upcoming_day = day
        else:
            upcoming_day = days[day] if day_rule & _BY_DOM else _NO_DAY
            if day_rule & _BY_DOW:
                by_weekday = day + weekday_wait[(first_weekday + day - 1) % 7]
                if by_weekday < upcoming_day:
                    upcoming_day = by_weekday
        if upcoming_day > length:
            month, day, hour, minute, second = month + 1, 1, 0, 0, 0
            continue
        if upcoming_day != day:
            day, hour, minute, second = upcoming_day, 0, 0, 0

        upcoming = hours[hour]
        if upcoming is None:
            day, hour, minute, second = day + 1, 0, 0, 0
            continue
        if upcoming != hour:
            hour, minute, second = upcoming, 0, 0

        upcoming = minutes[minute]
        if upcoming is None:
            hour, minute, second = hour + 1, 0, 0
            continue
        if upcoming != minute:
            minute, second = upcoming, 0

        upcoming = seconds[second]
        if upcoming is None:
            minute, second = minute + 1, 0
            continue
        return datetime(year, month, day, hour, minute, upcoming, tzinfo=tz)


def _compile(expr: object) -> tuple[str, _Compiled]:
    text = _check_text(expr)
    return text, _compile_text(text)


# Compiling costs ~40-50 us against ~1.5-3 us for a next_after, and real job sets repeat a few
# expressions many times; the result is immutable, so it can be shared. Failures are not cached.
@functools.lru_cache(maxsize=16384)
def _compile_text(text: str) -> _Compiled:
    tokens = _tokens(text)
    layout = _LAYOUTS.get(len(tokens))
    if layout is None:
        raise CronError(
            f"got {len(tokens)} field{'' if len(tokens) == 1 else 's'} in {text!r}; "
            f"expected 5, 6 or 7 fields ({_LAYOUT_TEXT}) or a macro such as @daily"
        )

    parsed = {
        spec.name: _parsed_field(spec.name, token, len(tokens))
        for spec, token in zip(layout, tokens, strict=True)
    }
    second = parsed.get(_SECOND.name, _ParsedField(frozenset({0}), restricted=True))
    year = parsed.get(_YEAR.name, _ParsedField(_YEAR.full, restricted=False))
    dom, dow = parsed[_DOM.name], parsed[_DOW.name]

    reason = _never_fires_reason(dom, dow, parsed[_MONTH.name], year)
    if reason is not None:
        raise CronError(f"schedule never fires: {reason}")

    compiled = _compile_fields(
        second, parsed[_MINUTE.name], parsed[_HOUR.name], dom, parsed[_MONTH.name], dow, year
    )
    # Backstop for the analysis above, run on the very search next_after uses: if it finds no
    # firing at all in 1970-2099, refuse now rather than store a job that silently never runs.
    if _search(compiled, _MIN_YEAR, 1, 1, 0, 0, 0) is None:
        raise CronError(f"schedule never fires between {_MIN_YEAR} and {_MAX_YEAR}")
    return compiled


@functools.cache
def _known_zones() -> Mapping[str, str]:
    """Lower-cased name -> the tz database's spelling. Read once (~40 ms, a directory walk): a
    zone the database gains later is only seen after a restart."""
    return {name.lower(): name for name in available_timezones() - _EXCLUDED_ZONES}


def _zone_name(name: object) -> str:
    if not isinstance(name, str):
        raise ZoneError(f"must be a string, got {type(name).__name__}")
    if not name:
        raise ZoneError("is empty; give an IANA time zone name such as 'Europe/Berlin', or 'UTC'")
    # Before the lookup, so no work is ever proportional to an oversized input.
    if len(name) > _MAX_ZONE_LEN:
        raise ZoneError(f"is {len(name)} characters long; at most {_MAX_ZONE_LEN} are allowed")
    if name == "UTC":
        return name  # the default: no need to read the database list for it
    # Only names on the database's own list reach ZoneInfo, so paths ('../x', 'posix/...',
    # 'right/...'), non-zone files ('zone.tab') and NULs never get near the file system.
    canonical = _known_zones().get(name.lower())
    if canonical is None:
        raise ZoneError(
            f"unknown time zone {name!r}; expected an IANA name such as 'Europe/Berlin'"
        )
    return canonical


@functools.lru_cache(maxsize=1024)
def _load_zone(name: str) -> ZoneInfo | None:
    """The zone to search in; None for the UTC search. ``name`` is already canonical."""
    if name in _UTC_ALIASES:
        return None
    try:
        return ZoneInfo(name)
    except (OSError, ValueError, LookupError) as exc:
        # Listed but unreadable: the database changed under us, or a file is damaged.
        raise ZoneError(f"cannot load time zone {name!r}: {exc}") from None


def check_zone(name: str) -> str:
    """Validate an IANA time zone name and return it in the tz database's spelling; raise
    :class:`ZoneError` (message ``zone: ...``) if it is not a zone this module can use."""
    canonical = _zone_name(name)
    _load_zone(canonical)
    return canonical


def _search_local(c: _Compiled, wall: datetime, plus: int) -> datetime | None:
    """The first matching naive local time at or after the wall-clock fields of ``wall`` plus
    ``plus`` seconds (0 or 1); ``wall``'s microseconds, fold and tzinfo play no part."""
    if wall.year < _MIN_YEAR:
        return _search(c, _MIN_YEAR, 1, 1, 0, 0, 0, None)
    return _search(
        c, wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second + plus, None
    )


def _transition(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant (naive UTC) at which ``tz`` switches offset, given UTC instants on either side,
    ``before`` < transition <= ``after``, hours apart at most. zoneinfo does not publish its
    transitions, so bisect on whole seconds: ~13 offset look-ups, and only next to a DST change."""
    target = tz.fromutc(after.replace(tzinfo=tz)).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        mid = (low + high) // 2
        if tz.fromutc((before + timedelta(seconds=mid)).replace(tzinfo=tz)).utcoffset() == target:
            high = mid
        else:
            low = mid
    return before + timedelta(seconds=high)


def _next_in_zone(c: _Compiled, tz: ZoneInfo, after: datetime) -> datetime | None:
    """next_after for a zoned schedule; ``after`` is aware with a year in 1969-2100.

    Local wall-clock times only go backwards in an overlap, so searching local time forwards from
    ``after``'s and resolving each candidate to an instant finds the next firing, except when
    ``after`` is in an overlap's first pass: then real time still runs through the overlap's wall
    times again, which the every-hour schedules must not miss (handled first)."""
    if after.year < _MIN_YEAR:
        # Offsets are under a day, so every local time from 1970 on is later than this.
        after = datetime(_MIN_YEAR - 1, 1, 1, tzinfo=UTC)
    local = after.astimezone(tz)
    # Naive UTC, to compare with the instants computed below; they are whole seconds, so the
    # microseconds of after need no special care.
    floor = after.astimezone(UTC).replace(tzinfo=None)
    candidate = _search_local(c, local, 1)  # reads only the wall-clock fields

    if c.every_hour and local.fold == 0:
        early = local.utcoffset()
        late = tz.utcoffset(local.replace(fold=1))
        if early is not None and late is not None and late < early:
            # First pass of an overlap: the rest of it, then the second pass from its start.
            floor = floor.replace(microsecond=0)  # _transition bisects on whole seconds
            switch = _transition(tz, floor, floor + (early - late))
            overlap_end = switch + early  # wall clock; overlap_start is switch + late
            if candidate is not None and candidate < overlap_end:
                return (candidate - early).replace(tzinfo=UTC)
            again = _search_local(c, switch + late, 0)
            if again is not None and again < overlap_end:
                return (again - late).replace(tzinfo=UTC)
            # Nothing in the overlap at all: candidate is the first match after it.

    for _ in range(_MAX_ZONE_STEPS):
        if candidate is None:
            return None
        # For a local time in a gap, fold=0 gives the offset before the change and fold=1 the
        # one after (PEP 495), so early < late; in an overlap, fold=0 is the first pass.
        early = tz.utcoffset(candidate)
        late = tz.utcoffset(candidate.replace(fold=1))
        assert early is not None and late is not None  # a ZoneInfo always has an offset
        if early == late:
            instant = candidate - early
            if instant > floor:
                return instant.replace(tzinfo=UTC)
            resume, plus = candidate, 1  # unreachable with real tz data; just move on
        elif early > late:  # overlap
            first = candidate - early
            if first > floor:
                return first.replace(tzinfo=UTC)
            second = candidate - late
            if c.every_hour and second > floor:
                return second.replace(tzinfo=UTC)
            # after is in (or past) the second pass, whose times this schedule already ran in
            # the first: carry on from the end of the overlap.
            resume, plus = _transition(tz, first, second) + early, 0
        else:  # gap
            switch = _transition(tz, candidate - late, candidate - early)
            if switch > floor:
                return switch.replace(tzinfo=UTC)
            resume, plus = switch + late, 0  # unreachable with real tz data: after the gap
        candidate = _search_local(c, resume, plus)
    raise RuntimeError(f"no firing found within {_MAX_ZONE_STEPS} DST transitions in {tz.key}")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated cron expression, evaluated in the IANA time zone ``zone`` (default UTC).

    Build it with :func:`parse_cron`; constructing it directly (``CronSchedule(expr)``,
    ``CronSchedule(expr, "Europe/Berlin")``) runs the same validation, so an invalid CronSchedule
    cannot exist. ``zone`` is kept in the tz database's spelling (see :func:`check_zone`).
    Equality and hashing use ``expr`` and ``zone``.
    """

    expr: str
    zone: str = "UTC"
    # The lookup tables next_after searches; shared by every schedule with the same text.
    _compiled: _Compiled = field(init=False, repr=False, compare=False)
    # None: search UTC directly (UTC itself, or one of its aliases).
    _tz: ZoneInfo | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text, compiled = _compile(self.expr)
        zone = _zone_name(self.zone)
        object.__setattr__(self, "expr", text)
        object.__setattr__(self, "zone", zone)
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_tz", _load_zone(zone))

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after ``after``, as an aware UTC datetime.

        None when no firing is left: the year field's last year has passed, or 2099 has (the
        year domain cronexpr had, which applies to every expression here; local years in a
        zone). The fields match the schedule zone's wall clock, with the module's DST rules.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError(f"after must be a timezone-aware datetime, got {after!r}")
        if after.year > _MAX_YEAR + 1:
            return None  # and converting datetime.max-like values could overflow
        if self._tz is not None:
            return _next_in_zone(self._compiled, self._tz, after)
        if after.year < _MIN_YEAR - 1:
            # Likewise datetime.min-like values; any UTC offset is less than a day.
            return _search(self._compiled, _MIN_YEAR, 1, 1, 0, 0, 0)
        # A no-op (the same object back) when after is already in UTC.
        after = after.astimezone(_SCHEDULE_TZ)
        if after.year < _MIN_YEAR:
            return _search(self._compiled, _MIN_YEAR, 1, 1, 0, 0, 0)
        # Seconds resolution: drop the microseconds, then "strictly after" is "from the next
        # whole second" (second 60 is a pending carry, see _search).
        return _search(
            self._compiled,
            after.year,
            after.month,
            after.day,
            after.hour,
            after.minute,
            after.second + 1,
        )


def parse_cron(expr: str, zone: str | None = None) -> CronSchedule:
    """Validate ``expr`` fully and return its schedule in ``zone`` (an IANA name; None means
    UTC); raise :class:`CronError` if the expression is bad, :class:`ZoneError` (a CronError)
    if the zone is."""
    zone = "UTC" if zone is None else zone
    if isinstance(expr, str) and isinstance(zone, str):
        return _shared_schedule(expr, zone)
    return CronSchedule(expr, zone)  # raises the CronError that names what is wrong


# A schedule is immutable and compared by (expr, zone): jobs with the same expression share one
# (a million stored jobs repeat a few thousand expressions), which saves a worker the check and
# the object per job. Failures are not cached.
@functools.lru_cache(maxsize=65536)
def _shared_schedule(expr: str, zone: str) -> CronSchedule:
    return CronSchedule(expr, zone)
