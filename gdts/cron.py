"""Cron expressions: parsing, validation and next-firing maths.

Pure: no I/O, no clock reads, no logging. "Now" is always an argument.

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

croniter does the calendar walking but never sees the user's text: each field is parsed here into
an explicit set of values and croniter only gets comma lists of integers or ``*``. That sidesteps
the croniter 7.0.0 readings that differ from cron and cronexpr:

* an equal range means the *whole* field (``5-5`` in minutes fires every minute, and
  ``0 0 * * FRI-FRI`` fires every day);
* a reversed range silently wraps around (``50-10`` in minutes, ``FRI-MON``);
* ``R`` (random) and ``H`` (hash) tokens, ``L``, ``W`` and ``#`` are accepted;
* a step larger than the field (``*/60``) is accepted;
* with its default ``max_years_between_matches=50`` a firing more than 50 years after the previous
  one is reported as "no next date" (``0 0 0 1 1 * 2030,2095`` loses 2095), hence the explicit
  130 below.
"""

import copy
import functools
import re
import unicodedata
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import CroniterError, croniter

__all__ = ["CronError", "CronSchedule", "parse_cron"]

_MAX_EXPR_LEN = 256
_MIN_YEAR = 1970
_MAX_YEAR = 2099
# The whole 1970-2099 span, so croniter never gives up between two real firings (see above).
_MAX_YEARS_BETWEEN_MATCHES = _MAX_YEAR - _MIN_YEAR + 1

# Schedules are evaluated on the UTC wall clock. This is the seam for per-job time zones: a zone
# would replace this constant per schedule, and next_after would then have to give croniter an
# aware local datetime so that it applies its DST gap/overlap rules (today it gets naive UTC).
_SCHEDULE_TZ = UTC
# The last instant before the first possible firing, 1970-01-01T00:00:00Z.
_FLOOR = datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)

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
    """Bad cron expression; the message starts with ``cronExpr: `` and says what is wrong."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"cronExpr: {problem}")


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

    @property
    def full(self) -> frozenset[int]:
        return frozenset(range(self.low, self.high + 1))


_SECOND = _Field("second", 0, 59, 59, 59)
_MINUTE = _Field("minute", 0, 59, 59, 59)
_HOUR = _Field("hour", 0, 23, 23, 23)
_DOM = _Field("day-of-month", 1, 31, 31, 31, allows_question=True)
_MONTH = _Field("month", 1, 12, 12, 12, names=_MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 6, 7, 6, names=_DAY_NAMES, allows_question=True)
_YEAR = _Field("year", _MIN_YEAR, _MAX_YEAR, _MAX_YEAR, _MAX_YEAR)

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
        else:
            hi = lo

    if spec is _DOW:
        # Folding 7 into 0 only after expanding keeps '5-7' = Fri, Sat, Sun.
        return frozenset(v % 7 for v in range(lo, hi + 1, step)), False
    return frozenset(range(lo, hi + 1, step)), False


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
    if len(expr) > _MAX_EXPR_LEN:
        raise CronError(f"is {len(expr)} characters long; at most {_MAX_EXPR_LEN} are allowed")
    for pos, ch in enumerate(expr):
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


def _croniter_list(parsed: _ParsedField, spec: _Field, *, keep_restricted: bool = False) -> str:
    if parsed.values == spec.full and not (keep_restricted and parsed.restricted):
        return "*"
    return ",".join(str(v) for v in sorted(parsed.values))


def _next(proto: croniter, after: datetime) -> datetime | None:
    """The shared core of next_after; ``after`` is aware UTC."""
    after = max(after, _FLOOR)
    # croniter keeps the start time on the instance, so one shared instance would race between
    # threads; a shallow copy costs ~2 us and shares the read-only expanded fields.
    it = copy.copy(proto)
    try:
        # Naive UTC in, naive UTC out: croniter then skips its DST machinery, which has nothing
        # to do on UTC and costs about a third of the call.
        nxt: datetime = it.get_next(datetime, start_time=after.replace(tzinfo=None))
    except CroniterError:
        # With the year restricted, croniter's only way of saying "no more firings".
        return None
    if nxt.year > _MAX_YEAR:
        return None
    return nxt.replace(tzinfo=_SCHEDULE_TZ)


def _compile(expr: object) -> tuple[str, croniter]:
    text = _check_text(expr)
    return text, _compile_text(text)


# Compiling costs ~110-180 us (half of it croniter re-parsing the lists) against ~25-80 us for a
# next_after, and real job sets repeat a few expressions many times; the result is immutable in
# use (next_after works on a copy), so it can be shared. Failures are not cached.
@functools.lru_cache(maxsize=4096)
def _compile_text(text: str) -> croniter:
    tokens = _tokens(text)
    layout = _LAYOUTS.get(len(tokens))
    if layout is None:
        raise CronError(
            f"got {len(tokens)} field{'' if len(tokens) == 1 else 's'} in {text!r}; "
            f"expected 5, 6 or 7 fields ({_LAYOUT_TEXT}) or a macro such as @daily"
        )

    parsed = {
        spec.name: _parse_field(spec, token, len(tokens))
        for spec, token in zip(layout, tokens, strict=True)
    }
    second = parsed.get(_SECOND.name, _ParsedField(frozenset({0}), restricted=True))
    year = parsed.get(_YEAR.name, _ParsedField(_YEAR.full, restricted=False))
    dom, dow = parsed[_DOM.name], parsed[_DOW.name]

    reason = _never_fires_reason(dom, dow, parsed[_MONTH.name], year)
    if reason is not None:
        raise CronError(f"schedule never fires: {reason}")

    # Day-of-month and day-of-week: cron's rule, which is also cronexpr's: when both are
    # restricted a day matches if EITHER matches; when one is '*' or '?' only the other counts.
    # croniter does exactly this with day_or=True (it takes the earlier of a day-of-month-only
    # and a day-of-week-only search) as long as it sees '*' for an unrestricted field and a list
    # for a restricted one. So a restricted field stays a list even when it holds every value:
    # '0 0 1-31 * MON' is every day under OR, not only Mondays.
    # The string is in croniter's own 7-field order: minute hour dom month dow second year.
    native = " ".join(
        (
            _croniter_list(parsed[_MINUTE.name], _MINUTE),
            _croniter_list(parsed[_HOUR.name], _HOUR),
            _croniter_list(dom, _DOM, keep_restricted=dow.restricted),
            _croniter_list(parsed[_MONTH.name], _MONTH),
            _croniter_list(dow, _DOW, keep_restricted=dom.restricted),
            _croniter_list(second, _SECOND),
            _croniter_list(year, _YEAR),
        )
    )
    try:
        # A fixed start time: without one croniter reads the clock.
        proto = croniter(
            native,
            _FLOOR.replace(tzinfo=None),
            day_or=True,
            max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES,
        )
    except CroniterError as err:  # a gap between our validation and croniter's
        raise CronError(f"{text!r} was refused by croniter: {err}") from err

    # Cross-check croniter against the analysis above: if it finds no firing at all in
    # 1970-2099, refuse now rather than store a job that silently never runs.
    if _next(proto, _FLOOR) is None:
        raise CronError(f"schedule never fires between {_MIN_YEAR} and {_MAX_YEAR}")
    return proto


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression, evaluated in UTC.

    Build it with :func:`parse_cron`; constructing it directly runs the same validation, so an
    invalid CronSchedule cannot exist. Equality and hashing use ``expr`` only.
    """

    expr: str
    # The prepared croniter; never used directly, see _next.
    _proto: croniter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text, proto = _compile(self.expr)
        object.__setattr__(self, "expr", text)
        object.__setattr__(self, "_proto", proto)

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after ``after``, as an aware UTC datetime.

        None when no firing is left: the year field's last year has passed, or 2099 has (the
        year domain cronexpr had, which applies to every expression here).
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError(f"after must be a timezone-aware datetime, got {after!r}")
        if after.year > _MAX_YEAR + 1:
            return None  # and converting datetime.max-like values could overflow
        return _next(self._proto, after.astimezone(_SCHEDULE_TZ))


def parse_cron(expr: str) -> CronSchedule:
    """Validate ``expr`` fully and return its schedule; raise :class:`CronError` if it is bad."""
    return CronSchedule(expr)
