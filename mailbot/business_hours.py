"""Business hours: the clock that unlock due times and reply windows run on.

Seed 000 promises unlocks "4 a 24 horas hábiles" and "24 a 48 horas hábiles": only hours inside
the vendor's working week count, in Mexico City time, skipping Mexican federal holidays. The
holidays come from the `holidays` library (which knows the movable "first Monday of February"
holidays and the 1 October inauguration day every six years), so nobody maintains dates by hand.

All arithmetic is done on real elapsed time (UTC) against opening hours built in the configured
zone with zoneinfo: Mexico abolished daylight saving in 2022, but a zone that still has it, or a
future change of the rules, stays correct without touching this code.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailbot.errors import RulesError

DayHours = tuple[time, time] | None  # (opening, closing) on one day, or None: closed

DEFAULT_TIMEZONE = "America/Mexico_City"

# Spanish names, for replies to customers.
WEEKDAYS_ES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre")

# How a reply names the zone; customers know "hora del centro", not IANA names.
_ZONE_LABELS = {
    "America/Mexico_City": "hora del centro de México",
    "America/Monterrey": "hora del centro de México",
    "America/Merida": "hora del centro de México",
    "America/Chihuahua": "hora del centro de México",
    "America/Bahia_Banderas": "hora del centro de México",
    "America/Cancun": "hora del sureste de México",
    "America/Mazatlan": "hora del Pacífico de México",
    "America/Hermosillo": "hora del Pacífico de México",
    "America/Tijuana": "hora del noroeste de México",
}

# Far enough that any real working week finds an opening; a guard, not a policy.
_MAX_DAYS_SEARCHED = 3 * 366


@dataclass(frozen=True)
class WorkingWeek:
    """Opening hours for each weekday, Monday (0) to Sunday (6); None is a closed day.

    A day's hours lie within that day: a closing time after midnight is not supported, because
    the vendor's support desk does not work nights.
    """

    days: tuple[DayHours, ...]

    def __post_init__(self) -> None:
        days = tuple(None if hours is None else tuple(hours) for hours in self.days)
        object.__setattr__(self, "days", days)
        if len(days) != 7:
            raise ValueError(f"a working week has 7 days (Monday first), not {len(days)}")
        for index, hours in enumerate(days):
            if hours is None:
                continue
            if len(hours) != 2 or not all(isinstance(t, time) for t in hours):
                raise ValueError(f"{WEEKDAYS_ES[index]}: hours must be (opening, closing) times, "
                                 f"not {hours!r}")
            opening, closing = hours
            if opening.tzinfo is not None or closing.tzinfo is not None:
                raise ValueError(f"{WEEKDAYS_ES[index]}: opening hours are local times, "
                                 "without a time zone (the calendar has the zone)")
            if not opening < closing:
                raise ValueError(f"{WEEKDAYS_ES[index]}: opens at {opening:%H:%M} but closes at "
                                 f"{closing:%H:%M}; closing must be later the same day")
        if all(hours is None for hours in days):
            raise ValueError("a working week needs at least one open day")

    @classmethod
    def weekdays(cls, opening: time = time(9), closing: time = time(18), *,
                 saturday: DayHours = None, sunday: DayHours = None) -> WorkingWeek:
        """Monday to Friday with the same hours, and optionally Saturday and Sunday."""
        return cls(((opening, closing),) * 5 + (saturday, sunday))

    def hours(self, weekday: int) -> DayHours:
        return self.days[weekday]


DEFAULT_WEEK = WorkingWeek.weekdays()  # Monday to Friday, 09:00 to 18:00


class BusinessCalendar:
    """A working week in one time zone, minus Mexican federal holidays and the company's own.

    `years` only pre-computes holidays; any other year is computed when first asked for.
    Datetimes given to it must be time-zone aware (any zone); it answers in its own zone.
    """

    def __init__(self, week: WorkingWeek, tz: str = DEFAULT_TIMEZONE,
                 extra_holidays: Iterable[date] = (), years: Iterable[int] = ()) -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        self.tz_name = tz
        self.week = week
        self.extra_holidays = frozenset(extra_holidays)
        self._years = tuple(years)
        self._federal: Any = None

    @property
    def _holidays(self) -> Any:
        """Mexico's federal holidays, loaded when a date is first asked about: importing
        `holidays` loads every country it knows (about 0.2 s), which `mailbot --help`, `parse`
        and a pass that schedules nothing need not pay (issue 10, §4)."""
        if self._federal is None:
            import holidays

            # expand=True (the default) computes further years on demand.
            self._federal = holidays.country_holidays("MX", years=list(self._years),
                                                      language="es")
        return self._federal

    def __repr__(self) -> str:
        return (f"BusinessCalendar(week={self.week!r}, tz={self.tz_name!r}, "
                f"extra_holidays={sorted(self.extra_holidays)!r})")

    def holiday(self, day: date) -> str | None:
        """The name of the holiday on `day` (in Spanish), or None on an ordinary day."""
        if day in self.extra_holidays:
            return "día inhábil de la empresa"
        return self._holidays.get(day)

    def opening_hours(self, day: date) -> tuple[datetime, datetime] | None:
        """When `day` opens and closes in the calendar's zone; None when closed all day."""
        hours = self.week.hours(day.weekday())
        if hours is None or self.holiday(day) is not None:
            return None
        opening, closing = hours
        return (datetime.combine(day, opening, tzinfo=self.tz),
                datetime.combine(day, closing, tzinfo=self.tz))

    def is_business_time(self, moment: datetime) -> bool:
        local = self._local(moment)
        span = self.opening_hours(local.date())
        return span is not None and _utc(span[0]) <= _utc(local) < _utc(span[1])

    def add_business_hours(self, start: datetime, hours: float) -> datetime:
        """The moment `hours` business hours after `start`, in the calendar's zone.

        Counting starts at the first business moment at or after `start`, so a request made on
        a holiday, a weekend or at night starts at the next opening. A deadline that uses up a
        day's last hour is that day's closing time, not the next opening.
        """
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(f"business hours must be a number >= 0, not {hours!r}")
        remaining = timedelta(hours=hours)
        cursor = _utc(self._local(start))
        day = self._local(start).date()
        for _ in range(_MAX_DAYS_SEARCHED):
            span = self.opening_hours(day)
            if span is not None:
                begin, end = max(_utc(span[0]), cursor), _utc(span[1])
                if begin < end:
                    if remaining <= end - begin:
                        return (begin + remaining).astimezone(self.tz)
                    remaining -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"no business hours found within {_MAX_DAYS_SEARCHED} days of {start}")

    def next_opening(self, moment: datetime) -> datetime:
        """The first business moment at or after `moment` (`moment` itself when open)."""
        return self.add_business_hours(moment, 0)

    def window(self, start: datetime, min_hours: float,
               max_hours: float) -> tuple[datetime, datetime]:
        """The earliest and latest moments of a "between N and M business hours" promise."""
        if min_hours > max_hours:
            raise ValueError(f"a window's minimum ({min_hours} h) exceeds its maximum "
                             f"({max_hours} h)")
        return self.add_business_hours(start, min_hours), self.add_business_hours(start, max_hours)

    def describe(self, moment: datetime) -> str:
        """A moment as a reply tells it, e.g. "lunes 7 de diciembre de 2026 a las 12:30 h
        (hora del centro de México)"; in the calendar's zone, because that is the one promised.
        """
        local = self._local(moment)
        label = _ZONE_LABELS.get(self.tz_name, f"hora de {self.tz_name}")
        return (f"{WEEKDAYS_ES[local.weekday()]} {local.day} de {MONTHS_ES[local.month - 1]} "
                f"de {local.year} a las {local:%H:%M} h ({label})")

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{moment} has no time zone; business hours need an aware datetime")
        return moment.astimezone(self.tz)


def _utc(moment: datetime) -> datetime:
    # Aware datetimes sharing a tzinfo subtract as wall-clock times; UTC gives real elapsed time.
    return moment.astimezone(UTC)


# --- the rules-file table -------------------------------------------------------------------

_DAY_INDEX = {
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6,
}
_DAY_NAMES_HELP = "lunes, martes, miércoles, jueves, viernes, sábado, domingo (or English names)"
_KEYS = ("timezone", "days", "extra_holidays")
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})")
_RANGE_HELP = 'write it like "09:00-18:00", or "" for a closed day'
_Fail = Callable[[str, str], RulesError]  # (key, problem) -> the error to raise


def calendar_from_mapping(data: Mapping[str, Any], where: str) -> BusinessCalendar:
    """Build a calendar from a rules-file table; every mistake names `where`, the key and the fix.

    The table: ``timezone`` (IANA name, default America/Mexico_City), ``days`` (day name ->
    "HH:MM-HH:MM" or "" for closed; a day left out is closed; without ``days``: Monday to
    Friday 09:00-18:00), ``extra_holidays`` (dates the company closes besides federal holidays).
    """

    def fail(key: str, problem: str) -> RulesError:
        return RulesError(f"{where}: {key}: {problem}")

    if not isinstance(data, Mapping):
        raise RulesError(f"{where}: must be a table with {', '.join(_KEYS)}, not {data!r}")
    for key in data:
        if key not in _KEYS:
            raise fail(str(key), f"unknown key; expected one of {', '.join(_KEYS)}")

    tz = data.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(tz, str) or not _zone_exists(tz):
        raise fail("timezone", f"unknown time zone {tz!r}; use an IANA name such as "
                               f'"{DEFAULT_TIMEZONE}"')

    week = DEFAULT_WEEK
    if "days" in data:
        week = _week_from_mapping(data["days"], fail)

    extra = data.get("extra_holidays", [])
    if not isinstance(extra, list):
        raise fail("extra_holidays", f"must be a list of dates like [2026-12-24], not {extra!r}")
    dates = [_date(value, fail, f"extra_holidays[{index}]") for index, value in enumerate(extra)]

    return BusinessCalendar(week, tz, extra_holidays=dates)


def _week_from_mapping(days: Any, fail: _Fail) -> WorkingWeek:
    if not isinstance(days, Mapping):
        raise fail("days", f'must be a table like {{lunes = "09:00-18:00", sabado = ""}}, '
                           f"not {days!r}")
    hours: list[DayHours] = [None] * 7
    seen: dict[int, str] = {}
    for name, value in days.items():
        key = f"days.{name}"
        index = _DAY_INDEX.get(_fold(str(name)))
        if index is None:
            raise fail(key, f"not a day of the week; use {_DAY_NAMES_HELP}")
        if index in seen:
            raise fail(key, f"{WEEKDAYS_ES[index]} is already given as days.{seen[index]}")
        seen[index] = str(name)
        if not isinstance(value, str):
            raise fail(key, f"must be text; {_RANGE_HELP}")
        hours[index] = _day_hours(value, partial(fail, key))
    if all(h is None for h in hours):
        raise fail("days", 'every day is closed; give at least one day hours like "09:00-18:00"')
    return WorkingWeek(tuple(hours))


def _day_hours(text: str, fail: Callable[[str], RulesError]) -> DayHours:
    if not text.strip():
        return None
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        raise fail(f"{text!r} is not a time range; {_RANGE_HELP}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise fail(f"{text!r} is not a valid time range (hours 00-23, minutes 00-59); "
                   f"{_RANGE_HELP}")
    opening, closing = time(h1, m1), time(h2, m2)
    if not opening < closing:
        raise fail(f"{text!r} opens at {opening:%H:%M} but closes at {closing:%H:%M}; "
                   "the closing time must be later the same day")
    return opening, closing


def _date(value: Any, fail: _Fail, key: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise fail(key, f"{value!r} is not a date; write dates like 2026-12-24")


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _fold(text: str) -> str:
    """Lower case without accents, so "Miércoles", "miercoles" and "MIÉRCOLES" are one day."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
