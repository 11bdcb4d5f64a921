"""Reading one rules file's tables so that every mistake in a rules folder is found in one run.

An admin who fixes one error, runs `mailbot rules check`, and then meets the next one fixes a
folder in as many rounds as it has errors. So a `Table` that is part of a check (`Problems`)
records a problem and hands back a usable stand-in (the default, or an empty value of the
wanted kind), and the loader goes on to the next key. Each problem names the file, the key, the
line of the file when it can be found, and the fix in words ("remove the quotes around the
date: write 2011-07-01").

A table outside a check (no `Problems`) raises at the first problem, as before; `fail()` still
returns the error to raise, so a loader written as `raise t.fail(key, why)` works in both: in a
check the error is recorded, and `Problems.attempt` stops only the part that raised.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from mailbot.errors import RulesError
from mailbot.toml_lines import line_of

T = TypeVar("T")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_DMY_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\Z")
_AMOUNT = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(?:MXN|pesos)?\Z", re.IGNORECASE)
_KINDS = {str: "text", int: "a whole number", list: "a list", dict: "a table",
          dt.date: "a date (YYYY-MM-DD)"}


@dataclass(frozen=True)
class RulesProblem:
    """One mistake in a rules file, as one line: file, key, what is wrong and the fix."""

    file: str
    key: str  # "installation.policies[1].price"; "" for the file as a whole
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.file}: {self.key}: {self.problem}" if self.key else \
            f"{self.file}: {self.problem}" if self.file else self.problem
        return f"{text} (line {self.line})" if self.line else text


class Problems:
    """The problems of one check of a rules folder, in the order they were found."""

    def __init__(self) -> None:
        self.items: list[RulesProblem] = []
        self.lines: dict[str, dict[str, int]] = {}  # file -> key path -> line (toml_lines)
        self._recorded: set[int] = set()  # the errors fail() returned: already in `items`

    def add(self, problem: RulesProblem) -> None:
        if problem not in self.items:  # a cascade must not say the same thing twice
            self.items.append(problem)

    def error(self, problem: RulesProblem) -> RulesError:
        """The error to raise for a problem already recorded."""
        exc = RulesError(str(problem), problems=[problem])
        self._recorded.add(id(exc))
        return exc

    def add_error(self, exc: RulesError) -> None:
        """A RulesError raised outside a Table (a missing file, the business-hours parser)."""
        if id(exc) not in self._recorded:
            for problem in getattr(exc, "problems", ()) or (str(exc),):
                self.add(problem if isinstance(problem, RulesProblem)
                         else RulesProblem("", "", str(problem)))

    def attempt(self, action: Callable[[], T]) -> T | None:
        """Run one part of the check; a RulesError it raises is recorded and the check goes on
        with the next part (the result is None). Any other error after a problem was recorded
        in this part is a consequence of that problem's stand-in value, not a bug to show."""
        before = len(self.items)
        try:
            return action()
        except RulesError as exc:
            self.add_error(exc)
        except Exception:
            if len(self.items) == before:
                raise
        return None


def _fallback(kind: type | tuple[type, ...]) -> Any:
    first = kind[0] if isinstance(kind, tuple) else kind
    return {str: "", int: 0, float: 0, list: [], dict: {}, dt.date: dt.date(1970, 1, 1)}.get(first)


def _wanted(kind: type | tuple[type, ...]) -> str:
    first = kind[0] if isinstance(kind, tuple) else kind
    return _KINDS.get(first, getattr(first, "__name__", str(first)))


def wrong_kind(kind: type | tuple[type, ...], value: Any) -> str:
    """What is wrong with `value` where `kind` was wanted, and how to write it instead."""
    wanted = _wanted(kind)
    if kind is dt.date and isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.match(text):
            return f"must be a date, not text {value!r}; remove the quotes around the date: " \
                   f"write {text}"
        dmy = _DMY_DATE.match(text)
        if dmy:
            day, month, year = (int(g) for g in dmy.groups())
            return f"must be a date (YYYY-MM-DD), not {value!r}; write it year-month-day " \
                   f"without quotes: {year:04d}-{month:02d}-{day:02d}"
        return f"must be a date (YYYY-MM-DD), not {value!r}; write it year-month-day without " \
               "quotes, e.g. 2011-07-01"
    if kind is int:
        if isinstance(value, bool):
            return f"must be a whole number, not {str(value).lower()}; write e.g. 1"
        if isinstance(value, str) and value.strip().isdigit():
            return f"must be a whole number, not text {value!r}; remove the quotes: " \
                   f"write {value.strip()}"
        if isinstance(value, float):
            return f"must be a whole number, not {value!r}; write it without decimals, " \
                   f"e.g. {math.floor(value) if math.isfinite(value) else 0}"
        return f"must be a whole number, not {value!r}"
    if kind is str and not isinstance(value, (list, dict)):
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        return f'must be text, not {value!r}; put it in quotes: "{shown}"'
    if kind is list and isinstance(value, str):
        return f'must be a list, not text {value!r}; write it in brackets: ["{value}"]'
    if kind is dict:
        return f"must be a table, not {value!r}; write the keys under a [header] line, or " \
               "inline as { key = value, ... }"
    return f"must be {wanted}, not {value!r}"


def price_problem(value: Any) -> str | None:
    """None when `value` is a price TOML can hold exactly enough (a number, at most 2 decimals,
    0 or more); else what is wrong and how to write it."""
    example = "write the price as a number: 2500 or 2500.50"
    if isinstance(value, bool):
        return f"must be a number, not {str(value).lower()}; {example}"
    if isinstance(value, str):
        match = _AMOUNT.match(value.strip())
        if match:
            digits = match.group(1).replace(",", "") + (match.group(2) or "")
            return f"must be a number, not text {value!r}; remove the quotes" + \
                   (", the $ and the commas" if digits != value.strip() else "") + \
                   f": write {digits}"
        return f"must be a number, not {value!r}; {example}"
    if not isinstance(value, (int, float)):
        return f"must be a number, not {value!r}; {example}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a number, not {value!r}; {example}"
    if value < 0:
        return f"must be at least 0, not {value}; {example}"
    exponent = Decimal(repr(value)).as_tuple().exponent
    if isinstance(value, float) and isinstance(exponent, int) and exponent < -2:
        return f"has more than two decimals ({value!r}); write pesos and cents, e.g. 2500.50"
    return None


def as_price(value: int | float) -> int | Decimal:
    """The exact amount the admin wrote: whole pesos stay an int, cents become a Decimal
    (the float TOML parsed goes through its shortest text form, so 2500.50 is 2500.50)."""
    if isinstance(value, int):
        return value
    amount = Decimal(repr(value))
    return int(amount) if amount == amount.to_integral_value() else amount


class Table:
    """A TOML table that knows where it came from, so every problem names file and key.

    With `problems`, a problem is recorded and a stand-in returned (see the module's docstring);
    a `quiet` table is the stand-in for a table that was itself wrong, and records nothing more
    (one problem for a broken [installation], not one per key it lacks).
    """

    def __init__(self, data: Mapping[str, Any], file: str, prefix: str = "",
                 problems: Problems | None = None, quiet: bool = False) -> None:
        self.data = data
        self.file = file
        self.prefix = prefix
        self.problems = problems
        self.quiet = quiet

    def where(self, key: str) -> str:
        return f"{self.file}: {self.prefix}{key}"

    def _problem(self, key: str, problem: str) -> RulesProblem:
        lines = self.problems.lines.get(self.file, {}) if self.problems is not None else {}
        return RulesProblem(self.file, f"{self.prefix}{key}", problem,
                            line_of(lines, f"{self.prefix}{key}"))

    def fail(self, key: str, problem: str) -> RulesError:
        """The error to raise for a problem that stops this part of the loader; in a check it
        is recorded first (raising it then ends only the part `Problems.attempt` runs)."""
        found = self._problem(key, problem)
        if self.problems is None:
            return RulesError(str(found), problems=[found])
        if not self.quiet:
            self.problems.add(found)
        return self.problems.error(found)

    def report(self, key: str, problem: str) -> None:
        """A problem the loader can go on after: recorded in a check, raised outside one."""
        if self.problems is None:
            raise self.fail(key, problem)
        if not self.quiet:
            self.problems.add(self._problem(key, problem))

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any) -> tuple[Any, bool]:
        """The value and whether it is the admin's, of the right kind (False: a stand-in)."""
        if key not in self.data:
            if default is ...:
                self.report(key, f"missing; add a line `{key} = ...` ({_wanted(kind)})")
                return _fallback(kind), False
            return default, False
        value = self.data[key]
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            self.report(key, wrong_kind(kind, value))
            return (_fallback(kind) if default is ... else default), False
        return value, True

    def get(self, key: str, kind: type | tuple[type, ...], *, default: Any = ...) -> Any:
        return self._get(key, kind, default)[0]

    def text(self, key: str, default: Any = ...) -> str:
        value, given = self._get(key, str, default)
        if given and not value.strip():
            self.report(key, "must not be empty")
        return value

    def number(self, key: str, default: Any = ..., minimum: int = 0) -> int:
        value, given = self._get(key, int, default)
        if given and value < minimum:
            self.report(key, f"must be at least {minimum}, not {value}")
        return value

    def price(self, key: str) -> int | Decimal:
        """An amount of money: whole pesos (2500) or pesos and cents (2500.50), kept exact."""
        if key not in self.data:
            self.report(key, f"missing; add a line `{key} = 2500` (or 2500.50)")
            return 0
        problem = price_problem(self.data[key])
        if problem:
            self.report(key, problem)
            return 0
        return as_price(self.data[key])

    def texts(self, key: str, default: Any = ...) -> tuple[str, ...]:
        values, given = self._get(key, list, default)
        if not given:
            return tuple(values or ())
        out = []
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                self.report(f"{key}[{i}]", f"must be non-empty text, not {v!r}")
            else:
                out.append(v)
        return tuple(out)

    def table(self, key: str) -> Table:
        if key not in self.data:
            self.report(key, f"missing; add the table [{self.prefix}{key}] with its keys")
        value, given = self._get(key, dict, {})
        return Table(value if given else {}, self.file, f"{self.prefix}{key}.", self.problems,
                     self.quiet or not given)

    def tables(self, key: str) -> list[Table]:
        if key not in self.data:
            self.report(key, f"missing; add at least one [[{self.prefix}{key}]] table")
        elif isinstance(self.data[key], dict):
            self.report(key, f"must be a list of tables; write each entry under "
                             f"[[{self.prefix}{key}]] (double brackets), not [{self.prefix}{key}]")
            return []
        items, given = self._get(key, list, [])
        if not given:
            return []
        if not items:
            self.report(key, "needs at least one entry")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.report(f"{key}[{i}]", "must be a table ([[...]])")
                continue
            out.append(Table(item, self.file, f"{self.prefix}{key}[{i}].", self.problems,
                             self.quiet))
        return out

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.report(key, f"unknown key; expected one of: {', '.join(sorted(allowed))}"
                                 f"{hint}")

    def attempt(self, action: Callable[[], T]) -> T | None:
        """One part of this table (a policy, a modality): in a check, a problem that stops it
        lets the next part be checked (None); outside a check it raises."""
        return self.problems.attempt(action) if self.problems is not None else action()
