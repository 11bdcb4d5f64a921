"""The processing log operators read: each mail, what was read, the rules that fired, replies."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.business_hours import DEFAULT_TIMEZONE
from mailbot.errors import MailbotError
from mailbot.ops.choices import MAIL_OUTCOMES, OUTCOMES, REQUEST_OUTCOMES  # noqa: F401
from mailbot.ops.timefmt import operator_time
from mailbot.store import Store, processing_log, reviews, versions


def check_outcome(outcome: str) -> str:
    """`outcome` as stored (lower case), or a MailbotError that lists the valid ones."""
    value = outcome.strip().lower()
    if value not in OUTCOMES:
        raise MailbotError(f"--outcome {outcome!r} is not an outcome; use one of "
                           f"{', '.join(OUTCOMES)}")
    return value


def query(store: Store, *, sender: str | None = None, serial: str | None = None,
          outcome: str | None = None, reference: str | None = None,
          limit: int = 50) -> list[dict[str, Any]]:
    """Recent mails, newest first, each with its requests and messages."""
    if outcome:
        outcome = check_outcome(outcome)
    out = []
    with store.transaction() as conn:
        known = versions.hashes(conn)
        found = processing_log.recent_mails(
            conn, sender=sender.strip().lower() if sender else None,
            serial=serial.strip().upper() if serial else None, outcome=outcome,
            reference=reference.strip().upper() if reference else None, limit=limit)
        for m in found:
            reqs = processing_log.requests_of(conn, m.id)
            msgs = processing_log.messages_of(conn, m.id)
            tasks = [{
                "id": t.id, "kind": t.kind, "reason": t.reason, "status": t.status,
                "due_at": t.due_at.isoformat(timespec="minutes"),
                "history": [dict(h, at=h["at"].isoformat(timespec="seconds"))
                            for h in reviews.history(conn, t.id)],
            } for t in reviews.tasks(conn, include_closed=True, mail_ids=[m.id])]
            extraction = json.loads(m.extraction or "{}")
            out.append({
                "reference": m.reference,
                "received_at": m.received_at.isoformat(timespec="seconds"),
                "source": m.source, "mail_id": m.mail_id,
                "sender": m.sender, "subject": m.subject, "kind": m.kind,
                "ignored": m.ignored, "status": m.status, "outcome": m.outcome,
                "folder": m.folder, "filed": bool(m.filed), "attempts": m.attempts,
                "error": m.error,
                **used_versions(m, known),
                "notes": json.loads(m.notes or "[]"),
                "problems": extraction.get("problems", []),
                "requests": [{
                    "serial": r.serial, "system": r.system, "source": r.source,
                    "outcome": r.outcome, "recipient": r.recipient,
                    "hits": [{"rule": h["rule"], "reason": h["reason"]}  # English, as printed
                             for h in json.loads(r.hits)],
                } for r in reqs],
                "messages": [{
                    "template": x.template, "to": json.loads(x.recipients), "status": x.status,
                    "message_id": x.message_id, "error": x.last_error,
                    **used_versions(x, known),
                } for x in msgs],
                "reviews": tasks,
            })
    return out


def used_versions(row: Any, known: dict[tuple[str, int], str]) -> dict[str, Any]:
    """`rules_version` and `templates_version` of a mail or message row, each {number, hash}
    (None: decided before versions were recorded, or not decided yet)."""
    out: dict[str, Any] = {}
    for kind in versions.KINDS:
        number = getattr(row, f"{kind}_version", None)
        out[f"{kind}_version"] = (None if number is None else
                                  {"number": number, "hash": known.get((kind, number))})
    return out


def versions_text(entry: dict[str, Any]) -> str | None:
    """`rules v3 (a1b2c3d4), templates v2 (0f0e0d0c)`, or None when none was recorded."""
    used = [(kind, entry.get(f"{kind}_version")) for kind in versions.KINDS]
    if all(v is None for _, v in used):
        return None
    return ", ".join(versions.label(kind, v["number"] if v else None, v["hash"] if v else None)
                     for kind, v in used)


def format_text(entries: Iterable[dict[str, Any]], zone: dt.tzinfo | None = None) -> str:
    """The log as text, every time in `zone` (the business zone, `timefmt.business_zone`;
    default: the shipped rules' America/Mexico_City), marked with it."""
    zone = zone or ZoneInfo(DEFAULT_TIMEZONE)
    lines: list[str] = []
    for e in entries:
        head = (f"{e['reference']}  {operator_time(e['received_at'], zone)}  {e['sender'] or '?'}  "
                f"[{e['kind'] or 'no request'}]  -> {e['outcome'] or e['status']}")
        if e["folder"]:
            head += f"  (folder: {e['folder']}{'' if e['filed'] else ', not filed yet'})"
        lines.append(head)
        if e["subject"]:
            lines.append(f"    subject: {e['subject']}")
        if e["error"]:
            lines.append(f"    error (attempt {e['attempts']}): {e['error']}")
        used = versions_text(e)
        if used:
            lines.append(f"    decided with: {used}")
        for note in e["notes"]:
            lines.append(f"    note: {note}")
        for p in e["problems"]:
            where = ", ".join(x for x in (p.get("field"), p.get("source")) if x)
            lines.append(f"    problem {p['code']}{f' ({where})' if where else ''}: {p['detail']}")
        for r in e["requests"]:
            lines.append(f"    {r['serial']}  {r['system']}  -> {r['outcome']}  ({r['source']})")
            for h in r["hits"]:
                lines.append(f"        {h['rule']}: {h['reason']}")
        for m in e["messages"]:
            err = f" ({m['error']})" if m["error"] else ""
            made = versions_text(m)
            made = f" [{made}]" if made and made != used else ""
            lines.append(f"    reply {m['template']} to {', '.join(m['to'])}: {m['status']}{err}"
                         f"{made}")
        for t in e.get("reviews", []):
            lines.append(f"    review #{t['id']} [{t['status']}] {t['kind']}: {t['reason']}, "
                         f"due {operator_time(t['due_at'], zone)}")
            for h in t["history"]:
                note = f": {h['note']}" if h["note"] else ""
                lines.append(f"        {operator_time(h['at'], zone)}  {h['action']} by "
                             f"{h['operator']}{note}")
        lines.append("")
    return "\n".join(lines) if lines else "(no mail processed yet)\n"
