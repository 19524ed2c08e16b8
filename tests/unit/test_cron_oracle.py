"""gdts.cron against croniter as an oracle.

next_after walks the calendar itself; croniter did it before. Random valid expressions (5, 6 and
7 fields; steps, ranges, lists, names, '?', Sunday as 7, both day fields restricted, Feb 29,
years) and random start instants (month and year ends, leap days, the 1970/2099 bounds, exactly on
a firing, other UTC offsets) must give the same chain of firings from both.

The generator computes each field's value set itself, from the same description it renders as
text, and croniter gets those sets exactly as gdts.cron used to give them (comma lists of integers
or '*', seconds and year in croniter's 6th and 7th positions, day_or=True,
max_years_between_matches covering 1970-2099, naive UTC in and out): croniter never parses the
user's syntax, whose readings differ from cron's (see the gdts.cron docstring).

Fixed seeds: a failure names its batch and case and reproduces on every run.
"""

import copy
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from croniter import CroniterError, croniter

from gdts.cron import CronError, parse_cron

SEED = 20240517
BATCHES = 6
EXPRESSIONS_PER_BATCH = 450  # 2,700 expressions in all, ~2.5 s
INSTANTS_PER_EXPRESSION = 2
CHAIN = 5

MIN_YEAR, MAX_YEAR = 1970, 2099
FLOOR = datetime(1969, 12, 31, 23, 59, 59)  # naive UTC, the last second before any firing


@dataclass(frozen=True)
class Spec:
    name: str
    low: int
    high: int
    literal_high: int  # 7 for day-of-week (Sunday)
    max_step: int
    names: tuple[tuple[str, ...], ...] = ()  # names[v - low]: spellings of value v
    day_field: bool = False

    @property
    def full(self) -> frozenset[int]:
        return frozenset(range(self.low, self.high + 1))


_MONTH_NAMES = (
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
)
_DAY_NAMES = (
    ("sun", "sunday"),
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
)

SECOND = Spec("second", 0, 59, 59, 59)
MINUTE = Spec("minute", 0, 59, 59, 59)
HOUR = Spec("hour", 0, 23, 23, 23)
DOM = Spec("dom", 1, 31, 31, 31, day_field=True)
MONTH = Spec("month", 1, 12, 12, 12, names=_MONTH_NAMES)
DOW = Spec("dow", 0, 6, 7, 6, names=_DAY_NAMES, day_field=True)
YEAR = Spec("year", MIN_YEAR, MAX_YEAR, MAX_YEAR, MAX_YEAR)


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    restricted: bool  # False for '*' or '?' on its own or in a list


# --- random expressions -------------------------------------------------------------------------


def _pick(rng: random.Random, spec: Spec) -> int:
    """A literal value, biased towards the years and days that make chains interesting."""
    if spec is YEAR:
        return rng.randint(2015, 2045) if rng.random() < 0.8 else rng.randint(MIN_YEAR, MAX_YEAR)
    if spec is DOM and rng.random() < 0.3:
        return rng.choice((28, 29, 30, 31))
    return rng.randint(spec.low, spec.literal_high)


def _render(rng: random.Random, spec: Spec, value: int) -> str:
    # Names only below 7: 'SUN' is 0, so it cannot end a range that 7 could.
    if spec.names and value <= spec.high and rng.random() < 0.35:
        name = rng.choice(spec.names[value - spec.low])
        return rng.choice((name, name.upper(), name.title()))
    return str(value)


def _step(rng: random.Random, spec: Spec) -> int:
    if rng.random() < 0.8:
        return rng.randint(1, min(spec.max_step, 12))
    return rng.randint(1, spec.max_step)


def _entry(rng: random.Random, spec: Spec) -> tuple[str, frozenset[int], bool]:
    """One list entry: (text, values, is a wildcard)."""
    kind = rng.choices(
        ("star", "question", "star_step", "value", "range", "range_step", "start_step"),
        weights=(3, 1 if spec.day_field else 0, 2, 4, 3, 2, 2),
    )[0]
    if kind in ("star", "question"):
        return ("*" if kind == "star" else "?"), spec.full, True
    if kind == "star_step":
        step = _step(rng, spec)
        values = range(spec.low, spec.high + 1, step)
        text = f"*/{step}"
    elif kind == "value":
        value = _pick(rng, spec)
        values = range(value, value + 1)
        text = _render(rng, spec, value)
    elif kind in ("range", "range_step"):
        lo, hi = sorted((_pick(rng, spec), _pick(rng, spec)))
        values = range(lo, hi + 1)
        text = f"{_render(rng, spec, lo)}-{_render(rng, spec, hi)}"
        if kind == "range_step":
            step = _step(rng, spec)
            values = range(lo, hi + 1, step)
            text += f"/{step}"
    else:  # 'a/n' is 'a-max/n'; '7/n' in day-of-week is refused (it selects nothing)
        lo = rng.randint(spec.low, spec.high)
        step = _step(rng, spec)
        values = range(lo, spec.high + 1, step)
        text = f"{_render(rng, spec, lo)}/{step}"
    if spec is DOW:
        return text, frozenset(v % 7 for v in values), False
    return text, frozenset(values), False


def _field(rng: random.Random, spec: Spec, p_star: float) -> Field:
    if rng.random() < p_star:
        text = "?" if spec.day_field and rng.random() < 0.2 else "*"
        return Field(text, spec.full, restricted=False)
    entries = [_entry(rng, spec) for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0])]
    return Field(
        ",".join(text for text, _, _ in entries),
        frozenset().union(*(values for _, values, _ in entries)),
        restricted=not any(wildcard for _, _, wildcard in entries),
    )


@dataclass(frozen=True)
class Case:
    expr: str
    # In croniter's order: minute hour dom month dow second year.
    native: str


def _native(field: Field, spec: Spec, keep_restricted: bool = False) -> str:
    # Exactly gdts.cron's old _croniter_list: '*' for a full field, except that a restricted day
    # field stays a list when the other one is restricted too (day_or then ORs them).
    if field.values == spec.full and not (keep_restricted and field.restricted):
        return "*"
    return ",".join(str(v) for v in sorted(field.values))


# Day-of-month and month texts around Feb 29, with their values.
_FEB_DAYS = (("29", {29}), ("28-29", {28, 29}), ("29,30", {29, 30}), ("29/2", {29, 31}))
_FEB_MONTHS = (("2", {2}), ("FEB", {2}), ("feb,MAR", {2, 3}), ("1-2", {1, 2}), ("2/5", {2, 7, 12}))


def _case(rng: random.Random) -> Case:
    n_fields = rng.choice((5, 6, 7))
    shape = rng.random()
    second = _field(rng, SECOND, 0.5) if n_fields > 5 else Field("", frozenset({0}), True)
    minute = _field(rng, MINUTE, 0.4)
    hour = _field(rng, HOUR, 0.45)
    if shape < 0.15:  # Feb 29 (and friends) on its own or OR-ed with a weekday
        dom_text, dom_values = rng.choice(_FEB_DAYS)
        dom = Field(dom_text, frozenset(dom_values), restricted=True)
        month_text, month_values = rng.choice(_FEB_MONTHS)
        month = Field(month_text, frozenset(month_values), restricted=True)
        dow = _field(rng, DOW, 0.6)
    elif shape < 0.45:  # both day fields restricted: either one matching is enough
        dom = _field(rng, DOM, 0.0)
        month = _field(rng, MONTH, 0.5)
        dow = _field(rng, DOW, 0.0)
    else:
        dom = _field(rng, DOM, 0.6)
        month = _field(rng, MONTH, 0.6)
        dow = _field(rng, DOW, 0.6)
    year = _field(rng, YEAR, 0.5) if n_fields == 7 else Field("", YEAR.full, False)

    fields = [second, minute, hour, dom, month, dow, year]
    fields = {5: fields[1:6], 6: fields[:6], 7: fields}[n_fields]
    native = " ".join(
        (
            _native(minute, MINUTE),
            _native(hour, HOUR),
            _native(dom, DOM, keep_restricted=dow.restricted),
            _native(month, MONTH),
            _native(dow, DOW, keep_restricted=dom.restricted),
            _native(second, SECOND),
            _native(year, YEAR),
        )
    )
    return Case(" ".join(f.text for f in fields), native)


# --- random instants ----------------------------------------------------------------------------

_OFFSETS = (timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))


def _month_end(year: int, month: int) -> datetime:
    first_of_next = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return first_of_next - timedelta(days=1)


def _instant(rng: random.Random, oracle: croniter) -> datetime:
    kind = rng.choices(
        ("any", "month_end", "year_end", "leap", "bound", "on_firing", "near_firing"),
        weights=(4, 2, 2, 2, 1, 3, 1),
    )[0]
    year = rng.randint(2015, 2045) if rng.random() < 0.85 else rng.randint(1965, 2100)
    if kind == "any":
        t = datetime(year, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(366 * 86400), microseconds=rng.randrange(1_000_000)
        )
    elif kind == "month_end":
        day = _month_end(year, rng.randint(1, 12))
        t = day + timedelta(hours=23, minutes=59, seconds=rng.choice((0, 58, 59)))
        t += rng.choice((timedelta(0), timedelta(microseconds=999_999), timedelta(seconds=1)))
    elif kind == "year_end":
        t = datetime(year, 12, 31, 23, 59, rng.choice((0, 59)), tzinfo=UTC)
        t += rng.choice((timedelta(0), timedelta(microseconds=999_999), timedelta(seconds=1)))
    elif kind == "leap":
        leap = rng.choice([y for y in range(1972, 2100, 4)])
        t = datetime(leap, 2, rng.choice((28, 29)), tzinfo=UTC) + timedelta(
            seconds=rng.choice((0, 86399, rng.randrange(86400)))
        )
    elif kind == "bound":
        t = rng.choice(
            (
                datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
                datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                datetime(1970, 1, 1, tzinfo=UTC),
                datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
                datetime(2099, 12, 31, 23, 58, tzinfo=UTC),
                datetime(2099, 11, 30, 12, tzinfo=UTC),
                datetime(1900, 6, 1, tzinfo=UTC),
            )
        )
    else:  # exactly on a firing, or a microsecond either side of it
        start = datetime(year, rng.randint(1, 12), rng.randint(1, 28), tzinfo=UTC)
        firing = oracle_next(oracle, start)
        t = start if firing is None else firing
        if kind == "near_firing":
            t += rng.choice((timedelta(microseconds=-1), timedelta(microseconds=1)))
    if rng.random() < 0.1:
        t = t.astimezone(rng.choice(_OFFSETS))  # the same instant, another UTC offset
    return t


# --- the oracle ---------------------------------------------------------------------------------


def build_oracle(native: str) -> croniter:
    return croniter(native, FLOOR, day_or=True, max_years_between_matches=MAX_YEAR - MIN_YEAR + 1)


def oracle_next(proto: croniter, after: datetime) -> datetime | None:
    """gdts.cron's old next_after, on croniter."""
    if after.year > MAX_YEAR + 1:
        return None
    start = max(after.astimezone(UTC).replace(tzinfo=None), FLOOR)
    try:
        nxt: datetime = copy.copy(proto).get_next(datetime, start_time=start)
    except CroniterError:
        return None
    return None if nxt.year > MAX_YEAR else nxt.replace(tzinfo=UTC)


def _run_batch(batch: int) -> tuple[list[str], int, int]:
    """-> (disagreements, chains compared, never-fires expressions)."""
    rng = random.Random(f"{SEED}-{batch}")
    problems: list[str] = []
    chains = never = 0
    for index in range(EXPRESSIONS_PER_BATCH):
        case = _case(rng)
        where = f"batch {batch} case {index}: {case.expr!r} (croniter {case.native!r})"
        oracle = build_oracle(case.native)
        try:
            schedule = parse_cron(case.expr)
        except CronError as exc:
            if "never fires" not in str(exc):
                problems.append(f"{where}: refused: {exc}")
            elif oracle_next(oracle, datetime(1969, 1, 1, tzinfo=UTC)) is not None:
                problems.append(f"{where}: refused as never firing, but croniter finds a firing")
            never += 1
            continue
        for _ in range(INSTANTS_PER_EXPRESSION):
            start = _instant(rng, oracle)
            current: datetime | None = start
            for step in range(CHAIN):
                assert current is not None
                got = schedule.next_after(current)
                expected = oracle_next(oracle, current)
                if got != expected:
                    problems.append(
                        f"{where}: from {start.isoformat()}, firing {step + 1} after "
                        f"{current.isoformat()}: got {got}, croniter says {expected}"
                    )
                    break
                if got is None:
                    break
                assert got > current and got.tzinfo is UTC and got.microsecond == 0
                current = got
            chains += 1
    return problems, chains, never


@pytest.mark.parametrize("batch", range(BATCHES))
def test_next_after_agrees_with_croniter(batch: int) -> None:
    problems, chains, never = _run_batch(batch)
    assert not problems, f"{len(problems)} disagreement(s):\n" + "\n".join(problems[:20])
    # The generator must actually exercise the search, not mostly hit dead ends.
    assert chains >= EXPRESSIONS_PER_BATCH * INSTANTS_PER_EXPRESSION * 0.9
    assert never < EXPRESSIONS_PER_BATCH * 0.05
