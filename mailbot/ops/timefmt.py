"""Times as operators read them: all in the business time zone, each marked with the zone.

`mailbot log`, `mailbot review list` and `mailbot review show` print every moment through
`operator_time`, e.g. "2026-12-03 16:00 CST", so no view mixes UTC with local time and none
leaves a reader guessing. The zone is the business calendar's (rules/unlock.toml
[business_hours] timezone), the one every due time and promised window is counted in.
"""

from __future__ import annotations

import datetime as dt

from mailbot.config import Config
from mailbot.ruleset import Ruleset
from mailbot.run.app import business_calendar

FORMAT = "%Y-%m-%d %H:%M %Z"


def operator_time(moment: dt.datetime | str | None, zone: dt.tzinfo) -> str:
    """`moment` in `zone`, marked with the zone's abbreviation: "2026-12-03 16:00 CST".

    A naive moment (or ISO text without an offset) is UTC, as the store keeps it; None is "-".
    """
    if moment is None or moment == "":
        return "-"
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).strftime(FORMAT)


def business_zone(config: Config, rules: Ruleset) -> dt.tzinfo:
    """The zone of the business calendar (`mailbot.run.app.business_calendar`)."""
    return business_calendar(config, rules).tz
