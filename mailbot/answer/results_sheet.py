"""The results spreadsheet attached to an answer with more than one request (issue 11 §5).

The customer gets back their rows as we read them (company, contact, address, system, serial,
where in their mail or file the row was) and, per row, the outcome in Spanish words, the new
key where this message may show it, or the reason; rows we could not read follow, with what to
fix. The words are the admin's (rules/free_update.toml [answers]).

Everything in it is customer text or ours, and a spreadsheet program runs formulas: a cell
whose text starts with "=", "+", "-" or "@", also after spaces, tabs or line breaks, is
written as a text cell with Excel's quote prefix, never as a formula (CSV/formula injection).
Written with XlsxWriter (mailbot.answer.xlsx_writer), the same
cells openpyxl's write-only mode wrote: openpyxl took 4 ms for a 4-row answer, a fifth of
the main process's time for a spreadsheet mail; tests read the file back with openpyxl.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mailbot.answer.cells import Cell, text_cell
from mailbot.answer.filters import date_es, source_es
from mailbot.answer.xlsx_writer import xlsx
from mailbot.model import ISSUED, NOT_ELIGIBLE
from mailbot.ruleset import Answers

MIME_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
COLUMNS = ("company", "contact_name", "contact_email", "system", "serial", "source", "outcome",
           "key", "reason")
WIDTHS = (36, 26, 32, 30, 22, 24, 20, 26, 60)
_SHEET_TITLE = "Resultados"


def sheet_filename(answers: Answers, reference: str) -> str:
    """The attachment's name: `sheet_name` with the request's reference."""
    return answers.sheet_name.format(reference=reference or "solicitud")


def results_sheet(rows: Sequence[Mapping[str, Any]], problems: Sequence[Mapping[str, Any]], *,
                  answers: Answers, target_version: str, eligible_from: Any,
                  requester_columns: bool = True) -> bytes:
    """The .xlsx bytes: a heading row, one row per request (`rows`, as `mailbot.answer.plan`
    plans them), then one per problem that kept a row out. Without `requester_columns` (the
    keys sent to a registered contact) what someone else wrote (company, contact, address,
    their file's name) is left blank, as the keys_issued text never shows it either."""
    table: list[list[Cell]] = [[_cell(answers.columns[c]) for c in COLUMNS]]
    fields = {"target_version": target_version, "eligible_from": _date(eligible_from),
              "purchase_date": "", "recipient": "", "field": ""}
    for values in _request_rows(rows, answers, fields):
        if not requester_columns:  # system, serial and what we decided: nothing they wrote
            values = ("", "", "", values[3], values[4], "", *values[6:])
        table.append([_cell(v) for v in values])
    for values in _problem_rows(problems, answers, fields):
        table.append([_cell(v) for v in values])
    return xlsx(_SHEET_TITLE, table, widths=WIDTHS, freeze_first_row=True)


def _request_rows(rows: Sequence[Mapping[str, Any]], answers: Answers,
                  fields: dict[str, str]) -> Iterator[tuple[str, ...]]:
    reasons, words = answers.reasons, answers.outcomes
    fixed = {name: text.format(**fields) for name, text in reasons.items()
             if name in ("issued", "not_eligible", "review", "pending")}
    for r in rows:
        outcome = r.get("outcome") or ""
        key = r.get("key") or ""
        if outcome == ISSUED and not key:
            reason = reasons["redirected"].format(
                **{**fields, "recipient": r.get("recipient_masked") or ""})
        elif outcome == NOT_ELIGIBLE and r.get("purchase_date"):
            reason = reasons["not_eligible_dated"].format(
                **{**fields, "purchase_date": _date(r["purchase_date"])})
        else:
            reason = fixed.get(outcome, "")
        yield (r.get("company") or "", r.get("contact_name") or "",
               r.get("contact_email") or "", r.get("system") or "", r.get("serial") or "",
               source_es(r.get("source")), words.get(outcome, outcome), key, reason)


def _problem_rows(problems: Sequence[Mapping[str, Any]], answers: Answers,
                  fields: dict[str, str]) -> Iterator[tuple[str, ...]]:
    for p in problems:
        where = p.get("field_label") or source_es(p.get("source")) or ""
        yield ("", "", "", "", "", source_es(p.get("source")), answers.outcomes["unreadable"], "",
               answers.reasons["unreadable"].format(**{**fields, "field": where}))


def _date(value: Any) -> str:
    try:
        return date_es(value)
    except TypeError:
        return str(value or "")


def _cell(value: Any) -> Cell:
    """A value as a text cell that is never a formula (mailbot.answer.cells)."""
    return text_cell(value)
