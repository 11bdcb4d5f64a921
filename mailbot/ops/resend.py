"""An operator resends a reply: the same bytes as a new message, queued in the outbox.

The copy keeps every header and the body byte for byte, with a Message-ID of its own (a
message is one Message-ID: the SMTP server, the customer's client and our own threading tell
messages apart by it) and the Date of the resend. It goes to the recipients the reply had,
never to anyone new, and the running service delivers it like any other queued message;
nothing is sent from here. Who asked is recorded in the same transaction (a `reply_resent`
event with the operator's name, the original's Message-ID and the copy's).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re

from mailbot.answer.message import make_message_id
from mailbot.config import Config
from mailbot.store import Store, mail_log

_HEADER_LINE = re.compile(rb"([!-9;-~]+):")


def replace_headers(data: bytes, values: dict[str, str]) -> bytes:
    """`data` with each header named in `values` (any case; folded lines included) replaced by
    one line `Name: value`, in place, or added at the top when absent; the body untouched."""
    newline = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
    end = data.find(newline * 2)
    head, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    wanted = {name.lower(): f"{name}: {value}".encode("ascii") for name, value in values.items()}
    lines, done, skipping = [], set(), False
    for line in head.split(newline):
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the line before
            if not skipping:
                lines.append(line)
            continue
        match = _HEADER_LINE.match(line)
        name = match.group(1).decode("ascii").lower() if match else ""
        skipping = name in wanted
        if skipping:
            if name not in done:
                lines.append(wanted[name])
                done.add(name)
            continue
        lines.append(line)
    missing = [line for name, line in wanted.items() if name not in done]
    return newline.join([*missing, *lines]) + rest


def resend_reply(store: Store, config: Config, *, mail: int, message: int, operator: str,
                 now: dt.datetime) -> str:
    """Queue a copy of outbox message `message` of `mail`; returns the copy's Message-ID.
    Raises mail_log.ResendRefused (nothing changed) when it cannot be resent."""
    message_id = make_message_id(config.bot.address.rpartition("@")[2])
    aware = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    headers = {"Message-ID": message_id, "Date": email.utils.format_datetime(aware)}
    with store.transaction() as conn:
        mail_log.resend(conn, mail=mail, message=message, new_message_id=message_id,
                        copy=lambda data: replace_headers(data, headers), operator=operator)
    return message_id
