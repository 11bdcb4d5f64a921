"""`mailbot review list | show | approve | reject | edit`: the operators' side of the queue."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence

from mailbot.ops.review_actions import (
    EDITABLE,
    ActionResult,
    ReviewError,
    approve,
    close_without_answer,
    default_operator,
    edit,
    reject,
)
from mailbot.ops.timefmt import operator_time
from mailbot.run.app import App
from mailbot.store import Connection, ledger, reviews

# --- the commands --------------------------------------------------------------------------------

def _open(args: argparse.Namespace) -> App:
    from mailbot import config as config_module
    from mailbot.run.wiring import open_app

    return open_app(config_module.load(args.config))


def _close(app: App) -> None:
    app.source.close()
    app.sink.close()
    app.store.close()


def cmd_review_list(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        with app.store.transaction() as conn:
            found = reviews.tasks(conn, include_closed=args.all,
                                 overdue_at=app.now() if args.overdue else None)
        print(format_list(found, now=app.now(), zone=app.calendar().tz), end="")
    finally:
        _close(app)
    return 0


def cmd_review_show(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        with app.store.transaction() as conn:
            task = reviews.get(conn, args.id)
            if task is None:
                raise ReviewError(f"no review task #{args.id}; see `mailbot review list --all`")
            print(format_task(conn, task, now=app.now(), zone=app.calendar().tz), end="")
    finally:
        _close(app)
    return 0


def _report(result: ActionResult) -> int:
    print(f"task #{result.task}: {result.status}: {result.summary}")
    return 0


def cmd_review_approve(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        return _report(approve(app, args.id, operator=args.operator or default_operator(),
                               note=args.note))
    finally:
        _close(app)


def cmd_review_close(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        return _report(close_without_answer(app, args.id, note=args.note,
                                            operator=args.operator or default_operator()))
    finally:
        _close(app)


def cmd_review_reject(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        return _report(reject(app, args.id, template=args.template, note=args.note,
                              operator=args.operator or default_operator()))
    finally:
        _close(app)


def cmd_review_edit(args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for item in args.changes:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ReviewError(f"{item!r} is not FIELD=VALUE (FIELD one of {', '.join(EDITABLE)})")
        changes[name.strip()] = value
    app = _open(args)
    try:
        return _report(edit(app, args.id, changes, operator=args.operator or default_operator(),
                            note=args.note))
    finally:
        _close(app)


# --- showing the queue: every time in the business zone, marked (mailbot.ops.timefmt) ----------

def format_list(task_list: Sequence[reviews.Task], *, now: dt.datetime, zone: dt.tzinfo) -> str:
    if not task_list:
        return "(no review task)\n"
    lines = []
    for t in task_list:
        late = "  OVERDUE" if t.overdue(now) else ""
        what = f"{t.kind}/{t.reason}"
        serial = t.snapshot.get("request", {}).get("serial", "")
        lines.append(f"#{t.id:<4} {t.status:<8} due {operator_time(t.due_at, zone)}{late}  "
                     f"{t.reference}  {what}  {serial + '  ' if serial else ''}"
                     f"{t.sender or '?'}  {t.subject[:60]!r}")
    return "\n".join(lines) + "\n"


def format_task(conn: Connection, task: reviews.Task, *, now: dt.datetime,
                zone: dt.tzinfo) -> str:
    snapshot = task.snapshot
    reading = snapshot.get("reading", {})
    extraction = reading.get("extraction", {})
    lines = [f"Review task #{task.id} [{task.status}]  {task.kind}: {task.reason}"]
    read_at = reading.get("received_at")
    lines.append(f"  mail:      {task.reference} from {task.sender or '?'}, read "
                 f"{operator_time(read_at, zone) if read_at else '?'}")
    lines.append(f"  subject:   {task.subject}")
    lines.append(f"  due:       {operator_time(task.due_at, zone)}"
                 f"{'  OVERDUE' if task.overdue(now) else ''}")
    if task.closed_at:
        lines.append(f"  closed:    {operator_time(task.closed_at, zone)} by {task.closed_by}")
    lines.append(f"  reason:    {task.reason_text}")
    request = snapshot.get("request")
    shown = [request] if request else extraction.get("requests", [])
    if task.request is not None:
        row = reviews.request_of(conn, task)
        if row is not None:
            shown = [{"company": row.company, "contact_name": row.contact_name,
                      "contact_email": row.contact_email, "system": row.system,
                      "serial": row.serial, "source": row.source}]
            lines.append(f"  outcome:   {row.outcome}")
    lines.append("  read:")
    for r in shown:
        for key in ("serial", "system", "company", "contact_name", "contact_email", "source"):
            lines.append(f"      {key + ':':<15}{r.get(key, '')}")
    if not shown:
        lines.append("      (no request)")
    for p in extraction.get("problems", []):
        lines.append(f"      problem {p.get('code')}: {p.get('detail')}")
    if reading.get("documents"):
        lines.append(f"  attached:  {', '.join(reading['documents'])}")
    hits = snapshot.get("hits") or snapshot.get("sender_checks") or []
    if hits:
        lines.append("  rules:")
        for h in hits:
            lines.append(f"      {h['rule']}: {h['reason']}")
    if task.unlock is not None:
        entry = ledger.entry(conn, task.unlock)
        if entry is not None:
            docs = ", ".join(ledger.stored_documents(entry)) or "none"
            number = f"unlock {entry.number}, " if entry.number else ""
            lines.append(f"  unlock:    ledger #{entry.id} {entry.status}, {number}"
                         f"{entry.modality or 'modality unknown'}, documents: {docs}")
    lines.append("  history:")
    for h in reviews.history(conn, task.id):
        changes = f"  {json.dumps(h['changes'], ensure_ascii=False)}" if h["changes"] else ""
        note = f": {h['note']}" if h["note"] else ""
        lines.append(f"      {operator_time(h['at'], zone)}  {h['action']} by {h['operator']}"
                     f"{note}{changes}")
    return "\n".join(lines) + "\n"
