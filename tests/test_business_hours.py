"""Business hours for unlock windows: seed 000's "4 a 24" and "24 a 48 horas hábiles"."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailbot.business_hours import (
    DEFAULT_WEEK,
    BusinessCalendar,
    WorkingWeek,
    calendar_from_mapping,
)
from mailbot.errors import RulesError

MX = ZoneInfo("America/Mexico_City")


def mx(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MX)


@pytest.fixture
def calendar() -> BusinessCalendar:
    """Monday to Friday, 09:00-18:00, Mexico City."""
    return BusinessCalendar(DEFAULT_WEEK)


@pytest.fixture
def with_saturday() -> BusinessCalendar:
    return BusinessCalendar(WorkingWeek.weekdays(saturday=(time(9), time(14))))


# --- the working week and holidays ----------------------------------------------------------

def test_is_business_time_inside_hours_only(calendar: BusinessCalendar) -> None:
    assert calendar.is_business_time(mx(2026, 12, 7, 9, 0))  # Monday opening
    assert calendar.is_business_time(mx(2026, 12, 7, 17, 59))
    assert not calendar.is_business_time(mx(2026, 12, 7, 18, 0))  # closing is not open
    assert not calendar.is_business_time(mx(2026, 12, 7, 8, 59))
    assert not calendar.is_business_time(mx(2026, 12, 5, 10, 0))  # Saturday


@pytest.mark.parametrize("day", [
    date(2026, 1, 1),    # Año Nuevo
    date(2026, 2, 2),    # Constitution Day: first Monday of February
    date(2026, 3, 16),   # Benito Juárez: third Monday of March
    date(2026, 5, 1),
    date(2026, 9, 16),   # Independence Day, a Wednesday
    date(2026, 11, 16),  # Revolution Day: third Monday of November
    date(2026, 12, 25),
    date(2030, 10, 1),   # inauguration of the federal executive, every six years
])
def test_mexican_federal_holidays_are_closed(calendar: BusinessCalendar, day: date) -> None:
    assert calendar.holiday(day) is not None
    assert calendar.opening_hours(day) is None
    assert not calendar.is_business_time(datetime.combine(day, time(11), tzinfo=MX))


def test_ordinary_days_are_not_holidays(calendar: BusinessCalendar) -> None:
    assert calendar.holiday(date(2026, 10, 1)) is None  # no inauguration in 2026
    assert calendar.holiday(date(2026, 11, 20)) is None  # the holiday moved to the Monday
    assert calendar.is_business_time(mx(2026, 11, 20, 10))


def test_holiday_names_are_spanish(calendar: BusinessCalendar) -> None:
    assert calendar.holiday(date(2026, 9, 16)) == "Día de la Independencia"


def test_extra_holidays_close_the_company(calendar: BusinessCalendar) -> None:
    closed = BusinessCalendar(DEFAULT_WEEK, extra_holidays=[date(2026, 12, 24)])
    assert calendar.is_business_time(mx(2026, 12, 24, 10))
    assert not closed.is_business_time(mx(2026, 12, 24, 10))


# --- counting business hours ----------------------------------------------------------------

def test_friday_evening_request_lands_on_monday(calendar: BusinessCalendar) -> None:
    # 30 minutes on Friday, then 3.5 hours from Monday's opening.
    assert calendar.add_business_hours(mx(2026, 12, 4, 17, 30), 4) == mx(2026, 12, 7, 12, 30)


def test_request_after_closing_starts_at_the_next_opening(calendar: BusinessCalendar) -> None:
    assert calendar.add_business_hours(mx(2026, 12, 4, 20, 15), 4) == mx(2026, 12, 7, 13, 0)


def test_request_on_saturday_starts_on_monday(calendar: BusinessCalendar) -> None:
    assert calendar.add_business_hours(mx(2026, 12, 5, 11, 0), 4) == mx(2026, 12, 7, 13, 0)


def test_request_on_independence_day_starts_next_morning(calendar: BusinessCalendar) -> None:
    assert calendar.add_business_hours(mx(2026, 9, 16, 10, 0), 4) == mx(2026, 9, 17, 13, 0)


def test_request_on_revolution_day_monday(calendar: BusinessCalendar) -> None:
    # Mon 16 Nov is a holiday: Tue 9 h + Wed 9 h + Thu 6 h = 24 h.
    assert calendar.add_business_hours(mx(2026, 11, 16, 8, 0), 24) == mx(2026, 11, 19, 15, 0)


def test_christmas_and_the_weekend_are_skipped(calendar: BusinessCalendar) -> None:
    # Thu 24 Dec: 2 h; Fri 25 Dec holiday; weekend; Mon 28 Dec: 2 h.
    assert calendar.add_business_hours(mx(2026, 12, 24, 16, 0), 4) == mx(2026, 12, 28, 11, 0)


def test_company_holiday_before_christmas(calendar: BusinessCalendar) -> None:
    closed = BusinessCalendar(DEFAULT_WEEK, extra_holidays=[date(2026, 12, 24)])
    assert closed.add_business_hours(mx(2026, 12, 24, 16, 0), 4) == mx(2026, 12, 28, 13, 0)


def test_deadline_that_fills_a_day_ends_at_closing(calendar: BusinessCalendar) -> None:
    assert calendar.add_business_hours(mx(2026, 12, 4, 17, 30), 0.5) == mx(2026, 12, 4, 18, 0)


def test_fractional_hours(calendar: BusinessCalendar) -> None:
    assert calendar.add_business_hours(mx(2026, 12, 7, 9, 0), 0.25) == mx(2026, 12, 7, 9, 15)


def test_start_in_another_zone_answers_in_mexico_city(calendar: BusinessCalendar) -> None:
    friday_evening_utc = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 17:30 in CDMX
    due = calendar.add_business_hours(friday_evening_utc, 4)
    assert due == mx(2026, 12, 7, 12, 30)
    assert due.tzinfo == MX
    madrid = datetime(2026, 12, 5, 0, 30, tzinfo=ZoneInfo("Europe/Madrid"))  # same moment
    assert calendar.add_business_hours(madrid, 4) == mx(2026, 12, 7, 12, 30)


def test_naive_datetimes_are_refused(calendar: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="time zone"):
        calendar.add_business_hours(datetime(2026, 12, 4, 17, 30), 4)


def test_negative_hours_are_refused(calendar: BusinessCalendar) -> None:
    with pytest.raises(ValueError):
        calendar.add_business_hours(mx(2026, 12, 4, 17, 30), -1)


def test_next_opening(calendar: BusinessCalendar) -> None:
    assert calendar.next_opening(mx(2026, 12, 5, 11, 0)) == mx(2026, 12, 7, 9, 0)
    assert calendar.next_opening(mx(2026, 12, 4, 18, 0)) == mx(2026, 12, 7, 9, 0)
    assert calendar.next_opening(mx(2026, 12, 24, 16, 0)) == mx(2026, 12, 24, 16, 0)  # open
    assert calendar.next_opening(mx(2026, 9, 15, 19, 0)) == mx(2026, 9, 17, 9, 0)


# --- the unlock windows ---------------------------------------------------------------------

def test_subscription_window_4_to_24_hours_from_friday_evening(
        calendar: BusinessCalendar) -> None:
    # 24 h: Fri 0.5 + Mon 9 + Tue 9 + Wed 5.5.
    assert calendar.window(mx(2026, 12, 4, 17, 30), 4, 24) == (
        mx(2026, 12, 7, 12, 30), mx(2026, 12, 9, 14, 30))


def test_documentation_window_24_to_48_hours_across_independence_day(
        calendar: BusinessCalendar) -> None:
    # Tue 15 Sep 8 h; Wed 16 holiday; Thu 9 h (17); Fri 7 h -> 24 h at 16:00.
    # Fri 2 more (26); weekend; Mon 9 (35); Tue 9 (44); Wed 4 h -> 48 h at 13:00.
    assert calendar.window(mx(2026, 9, 15, 10, 0), 24, 48) == (
        mx(2026, 9, 18, 16, 0), mx(2026, 9, 23, 13, 0))


def test_window_minimum_above_maximum_is_refused(calendar: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        calendar.window(mx(2026, 12, 4, 17, 30), 24, 4)


def test_saturday_half_day_counts_when_configured(with_saturday: BusinessCalendar) -> None:
    friday = mx(2026, 12, 4, 17, 30)
    assert with_saturday.is_business_time(mx(2026, 12, 5, 13, 59))
    assert not with_saturday.is_business_time(mx(2026, 12, 5, 14, 0))
    assert with_saturday.add_business_hours(friday, 4) == mx(2026, 12, 5, 12, 30)
    # 24 h: Fri 0.5 + Sat 5 + Mon 9 + Tue 9 + Wed 0.5.
    assert with_saturday.window(friday, 4, 24) == (mx(2026, 12, 5, 12, 30),
                                                   mx(2026, 12, 9, 9, 30))


def test_hours_are_real_elapsed_time_across_a_dst_change() -> None:
    # Mexico City has no DST since 2022; a zone that has it still counts right.
    new_york = ZoneInfo("America/New_York")
    cal = BusinessCalendar(DEFAULT_WEEK, tz="America/New_York")
    friday = datetime(2026, 3, 6, 17, 0, tzinfo=new_york)  # DST starts Sun 8 Mar 2026
    due = cal.add_business_hours(friday, 2)
    assert due == datetime(2026, 3, 9, 10, 0, tzinfo=new_york)
    assert due.utcoffset() == timedelta(hours=-4)


def test_mexico_city_stays_on_utc_minus_6_all_year(calendar: BusinessCalendar) -> None:
    summer = calendar.add_business_hours(datetime(2026, 7, 6, 15, 0, tzinfo=UTC), 0)
    assert summer == mx(2026, 7, 6, 9, 0)
    assert summer.utcoffset() == timedelta(hours=-6)


def test_describe_in_spanish(calendar: BusinessCalendar) -> None:
    assert calendar.describe(mx(2026, 12, 7, 12, 30)) == (
        "lunes 7 de diciembre de 2026 a las 12:30 h (hora del centro de México)")
    assert calendar.describe(datetime(2026, 9, 17, 15, 5, tzinfo=UTC)) == (
        "jueves 17 de septiembre de 2026 a las 09:05 h (hora del centro de México)")
    assert calendar.describe(mx(2026, 12, 9, 14, 30)).startswith("miércoles 9 de diciembre")


# --- the working week value -----------------------------------------------------------------

def test_working_week_needs_seven_days_and_sane_hours() -> None:
    with pytest.raises(ValueError, match="7 days"):
        WorkingWeek(((time(9), time(18)),) * 5)
    with pytest.raises(ValueError, match="closing must be later"):
        WorkingWeek(((time(18), time(9)),) + (None,) * 6)
    with pytest.raises(ValueError, match="at least one open day"):
        WorkingWeek((None,) * 7)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar(DEFAULT_WEEK, tz="America/Ciudad_de_Mexico")


# --- the rules-file table -------------------------------------------------------------------

WHERE = "rules/unlock.toml: business_hours"

RULES = """
[business_hours]
timezone = "America/Mexico_City"
extra_holidays = [2026-12-24, 2026-12-31]

[business_hours.days]
lunes = "09:00-18:00"
martes = "09:00-18:00"
"miércoles" = "09:00-18:00"
jueves = "09:00-18:00"
viernes = "9:00 - 18:00"
sabado = "09:00-14:00"
domingo = ""
"""


def test_calendar_from_toml_table() -> None:
    table = tomllib.loads(RULES)["business_hours"]
    cal = calendar_from_mapping(table, WHERE)
    assert cal.tz_name == "America/Mexico_City"
    assert cal.week == WorkingWeek.weekdays(saturday=(time(9), time(14)))
    assert cal.extra_holidays == {date(2026, 12, 24), date(2026, 12, 31)}
    assert cal.add_business_hours(mx(2026, 12, 4, 17, 30), 4) == mx(2026, 12, 5, 12, 30)


def test_day_names_in_english_and_without_accents() -> None:
    cal = calendar_from_mapping(
        {"days": {"Monday": "08:00-17:00", "MIERCOLES": "08:00-17:00", "Sábado": "10:00-13:00"}},
        WHERE)
    assert cal.week.days == ((time(8), time(17)), None, (time(8), time(17)), None, None,
                             (time(10), time(13)), None)


def test_defaults_without_days_or_zone() -> None:
    cal = calendar_from_mapping({}, WHERE)
    assert cal.week == DEFAULT_WEEK
    assert cal.tz_name == "America/Mexico_City"


@pytest.mark.parametrize(("table", "key", "fix"), [
    ({"days": {"lunes": "9-18"}}, "days.lunes", '"09:00-18:00"'),
    ({"days": {"lunes": "18:00-09:00"}}, "days.lunes", "closing time must be later"),
    ({"days": {"martes": "09:00-25:00"}}, "days.martes", "hours 00-23"),
    ({"days": {"lunes": 9}}, "days.lunes", "must be text"),
    ({"days": {"lunez": "09:00-18:00"}}, "days.lunez", "miércoles"),
    ({"days": {"lunes": "09:00-18:00", "monday": "09:00-18:00"}}, "days.monday",
     "already given as days.lunes"),
    ({"days": {"lunes": "", "sabado": ""}}, "days", "at least one day"),
    ({"days": "lunes a viernes"}, "days", "must be a table"),
    ({"timezone": "Mexico City"}, "timezone", '"America/Mexico_City"'),
    ({"timezone": 6}, "timezone", "IANA name"),
    ({"extra_holidays": ["24/12/2026"]}, "extra_holidays[0]", "2026-12-24"),
    ({"extra_holidays": [datetime(2026, 12, 24, 9)]}, "extra_holidays[0]", "not a date"),
    ({"extra_holidays": "2026-12-24"}, "extra_holidays", "list of dates"),
    ({"time_zone": "America/Mexico_City"}, "time_zone", "expected one of timezone"),
])
def test_parse_errors_name_where_the_key_and_the_fix(table: dict[str, object], key: str,
                                                      fix: str) -> None:
    with pytest.raises(RulesError) as error:
        calendar_from_mapping(table, WHERE)
    message = str(error.value)
    assert message.startswith(f"{WHERE}: {key}: ")
    assert fix in message


def test_extra_holidays_as_text_dates() -> None:
    cal = calendar_from_mapping({"extra_holidays": ["2026-12-24"]}, WHERE)
    assert cal.holiday(date(2026, 12, 24)) is not None
