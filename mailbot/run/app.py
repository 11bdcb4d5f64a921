"""The app context: everything a pass needs (config, rules, store, renderer, source, sink,
clock), passed explicitly so that tests build one and no module keeps state."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailbot.answer.render import Renderer
from mailbot.business_hours import DEFAULT_WEEK, BusinessCalendar
from mailbot.config import Config
from mailbot.decide.unlock import calendar_for
from mailbot.ruleset import Ruleset
from mailbot.run.claims import new_run_id
from mailbot.store import Store
from mailbot.transport.seams import Sink, Source

log = logging.getLogger("mailbot")


MAX_ATTEMPTS = 3  # a mail that fails this many times is quarantined for operators



MAX_RETRY_DELAY = dt.timedelta(hours=1)



def _noop_hook(point: str) -> None:
    pass



def business_calendar(config: Config, rules: Ruleset) -> BusinessCalendar:
    """rules/unlock.toml [business_hours], else (no unlock rules) the default week in
    [mailbot] timezone: due times, windows and every time an operator reads run on it."""
    if rules.unlock is not None:
        return calendar_for(rules)
    return BusinessCalendar(DEFAULT_WEEK, config.bot.timezone)


@dataclass
class App:
    """Everything a run needs, passed explicitly (no module-level state)."""

    config: Config
    rules: Ruleset
    store: Store
    renderer: Renderer
    source: Source
    sink: Sink
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    hook: Callable[[str], None] = _noop_hook  # crash points for the fault tests
    after_send: Callable[[bytes], None] | None = None  # e.g. copy to the IMAP Sent folder
    # The same for many replies at once (one IMAP MULTIAPPEND). When set (and after_send is),
    # copies are made after each batch of sends instead of one by one; by default it is the
    # source's append_sent_many when after_send is the source's append_sent.
    after_send_many: Callable[[Sequence[bytes]], None] | None = None
    # Worker processes that read mails ahead in large batches (mailbot.run.readahead): None picks
    # as many as the machine has cores to spare, 0 reads every mail in this process.
    read_workers: int | None = None
    # This run's name in the claims of the mails it works on (mailbot.run.claims): one per App.
    run_id: str = field(default_factory=new_run_id)
    _calendar: BusinessCalendar | None = field(default=None, repr=False, compare=False)
    # The rules and templates versions in use and the folders' last look (mailbot.run.versions).
    versions: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.after_send_many is None and self.after_send is not None:
            own = getattr(self.source, "append_sent", None)
            if own is not None and self.after_send == own:
                self.after_send_many = getattr(self.source, "append_sent_many", None)

    def calendar(self) -> BusinessCalendar:
        """The business calendar of rules/unlock.toml: every due time and window runs on it."""
        if self._calendar is None:
            self._calendar = business_calendar(self.config, self.rules)
        return self._calendar

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return (self.config.bot.address.lower(),)

    def now(self) -> dt.datetime:
        """Naive UTC, as the store keeps it."""
        return self.clock().astimezone(dt.UTC).replace(tzinfo=None)

    def today(self) -> dt.date:
        return self.clock().astimezone(zoneinfo.ZoneInfo(self.config.bot.timezone)).date()



@dataclass
class RunReport:
    seen: int = 0
    decided: int = 0
    duplicates: int = 0
    sent: int = 0
    filed: int = 0
    failed: int = 0
    read_ahead: int = 0  # mails read by worker processes (mailbot.run.readahead)
    errors: list[str] = field(default_factory=list)


BATCH_SIZE = 100  # mails decided one by one, then answered and filed together
