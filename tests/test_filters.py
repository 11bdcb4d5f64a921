"""The Spanish filters write amounts, dates, addresses and sources as the seed does."""

from __future__ import annotations

import datetime as dt

import pytest

from mailbot.answer.filters import FILTERS, date_es, datetime_es, mask_email, money, pad, source_es


def test_money_formats_pesos_like_the_seed():
    assert money(2500) == "$2,500.00"
    assert money(800) == "$800.00"
    assert money(3200.0) == "$3,200.00"
    assert money(-15) == "-$15.00"
    with pytest.raises(TypeError):
        money("2500")


def test_date_es_writes_spanish_dates():
    assert date_es(dt.date(2026, 1, 5)) == "5 de enero de 2026"
    assert date_es(dt.date(2011, 7, 1)) == "1 de julio de 2011"
    assert date_es(dt.date(2026, 1, 5), weekday=True) == "lunes 5 de enero de 2026"
    assert datetime_es(dt.datetime(2026, 1, 5, 13, 5)) == "lunes 5 de enero de 2026 a las 13:05"
    assert datetime_es(dt.datetime(2026, 1, 5, 1, 30)).endswith("a la 1:30")


def test_mask_email_keeps_enough_to_recognise():
    assert mask_email("rgonzalez@empresamuestra.com.mx") == "rg*******@em***.com.mx"
    assert mask_email("ana@gmail.com") == "a**@gm***.com"
    assert mask_email("x@y.org") == "x*@y***.org"
    assert "@" not in mask_email("not-an-address")


def test_source_es_names_the_row_of_a_spreadsheet():
    assert source_es("body") == "cuerpo del correo"
    assert source_es("attachment:claves.xlsx:row 3") == "archivo claves.xlsx, fila 3"
    assert source_es("attachment:claves.xlsx") == "archivo claves.xlsx"
    assert source_es("message") == source_es("read_mail") == "tu correo"



def test_pad_left_justifies_and_caps_the_width():
    assert pad("Anual", 8) == "Anual   "
    assert len(pad("x", 10**9)) == 200


def test_templates_get_every_filter_under_its_documented_name():
    assert set(FILTERS) == {"money", "date_es", "datetime_es", "mask_email", "source_es", "pad"}


def test_money_shows_cents_exactly_and_rounds_half_a_cent_up():
    from decimal import Decimal

    assert money(Decimal("2500.50")) == "$2,500.50"
    assert money(Decimal("2500.5")) == "$2,500.50"
    assert money(Decimal("1234567.895")) == "$1,234,567.90"  # half-even would print .90 too
    assert money(Decimal("2500.505")) == "$2,500.51"  # half-even: $2,500.50
    assert money(2.675) == "$2.68"  # the float 2.675 is 2.67499999...: $2.67 through binary
    assert money(Decimal("-0.004")) == "$0.00"
    assert money(10**20) == "$100,000,000,000,000,000,000.00"  # no float on the way
    with pytest.raises(TypeError):
        money(Decimal("NaN"))
