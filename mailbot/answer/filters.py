"""The Spanish filters templates format values with (plain functions, usable outside templates).

Customers read these replies in Spanish, so dates, amounts and the places a request was read
are written the Spanish way here, once, instead of in every template. The money and date
filters refuse a value of the wrong type rather than print something plausible but wrong.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

_MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre")
_CENT = Decimal("0.01")
_MONEY_CONTEXT = Context(prec=50)  # 40 digits of pesos and the cents, whatever the thread's
_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


def money(value: Any) -> str:
    """2500 -> "$2,500.00", 2500.50 -> "$2,500.50": the seed's notation for pesos.

    Prices with cents arrive as Decimal (`mailbot.ruleset` keeps them exact); the amount is
    rounded to the cent once, half a cent up, as a cashier would, never through binary floats
    (a float is read by its shortest text form: 2.675 is 2.675, not 2.67499...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"money: expected a number, got {value!r}")
    if isinstance(value, int):
        return f"{'-' if value < 0 else ''}${abs(value):,}.00"
    amount = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not amount.is_finite() or amount.adjusted() > 40:
        raise TypeError(f"money: expected an amount of pesos, got {value!r}")
    cents = amount.quantize(_CENT, rounding=ROUND_HALF_UP, context=_MONEY_CONTEXT)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


def date_es(value: Any, weekday: bool = False) -> str:
    """2026-01-05 -> "5 de enero de 2026" (with weekday: "lunes 5 de enero de 2026")."""
    if not isinstance(value, dt.date):
        raise TypeError(f"date_es: expected a date, got {value!r}")
    text = f"{value.day} de {_MONTHS[value.month - 1]} de {value.year}"
    return f"{_WEEKDAYS[value.weekday()]} {text}" if weekday else text


def datetime_es(value: Any, weekday: bool = True) -> str:
    """2026-01-05 10:30 -> "lunes 5 de enero de 2026 a las 10:30" (for due times, windows)."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"datetime_es: expected a date and time, got {value!r}")
    article = "a la" if value.hour == 1 else "a las"
    return f"{date_es(value, weekday)} {article} {value.hour}:{value.minute:02d}"


_SECOND_LEVEL = {"com", "org", "net", "gob", "gov", "edu", "ac", "co", "mil", "nom", "int"}


def mask_email(value: Any) -> str:
    """rgonzalez@empresamuestra.com.mx -> rg*******@em***.com.mx: recognisable, not harvestable."""
    if value is None:
        return ""
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, ""
    keep = 1 if len(local) <= 3 else 2
    masked = local[:keep] + "*" * max(len(local) - keep, 1)
    if not domain:
        return masked
    labels = domain.split(".")
    suffix_len = 2 if len(labels) >= 3 and labels[-2].lower() in _SECOND_LEVEL else 1
    if len(labels) <= suffix_len:
        return f"{masked}@{labels[0][:2]}***"
    suffix = ".".join(labels[-suffix_len:])
    return f"{masked}@{labels[0][:2]}***.{suffix}"


_ATTACHMENT_SOURCE = re.compile(r"attachment:(?P<file>.*?)(?::row (?P<row>\d+))?\Z")


def source_es(value: Any) -> str:
    """Where a request was read, for the customer: "cuerpo del correo", "archivo x.xlsx, fila 3"."""
    if value is None or value == "":
        return ""
    text = str(value)
    if text == "body":
        return "cuerpo del correo"
    if text == "message":
        return "tu correo"
    match = _ATTACHMENT_SOURCE.match(text)
    if match:
        where = f"archivo {match['file']}" if match["file"] else "archivo adjunto"
        return f"{where}, fila {match['row']}" if match["row"] else where
    return "tu correo"  # "message", internal step names: nothing a customer should read


def pad(value: Any, width: int = 0) -> str:
    """Left-justify for plain-text tables (width capped: a template cannot blow up memory)."""
    return str(value).ljust(min(int(width), 200))


# The names templates use; `mailbot.answer.render` hands them to the sandbox.
FILTERS: Mapping[str, Callable[..., str]] = {
    "money": money, "date_es": date_es, "datetime_es": datetime_es, "mask_email": mask_email,
    "source_es": source_es, "pad": pad,
}
