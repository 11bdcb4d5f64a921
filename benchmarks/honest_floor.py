"""The honest floor of benchmarks/imap_throughput.py (issue 10, §2): the work no implementation
can avoid, measured with the plainest clients on the same servers in the same run.

- read: raw imapclient fetch (BODY.PEEK[] in batches of FLOOR_BATCH) + mail-parser
  `parse_from_bytes` + openpyxl (read-only) of every .xlsx attachment;
- send: one reply per mail over ONE smtplib connection to the same aiosmtpd listener, with the
  replies the end-to-end pass really sent (bytes and recipients);
- move: the same mails appended again (not timed) to a folder of the same Dovecot, filed with
  one UID MOVE per batch of FLOOR_BATCH into another.

Not a script of its own: imap_throughput.py calls these and prints the figures.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import time
from typing import Any

import sqlalchemy as sa
from dovecot import DovecotServer

from mailbot.store.database import outbox

FLOOR_BATCH = 200  # as DOVECOT.md's floor figure and ImapSource's default batch_size


def read_spreadsheets(mail: Any) -> tuple[int, int]:
    """The floor's spreadsheet part for one mail parsed by mail-parser: every .xlsx attached,
    read by openpyxl read-only, every row iterated. Returns (spreadsheets, rows)."""
    import openpyxl

    sheets = rows = 0
    for att in mail.attachments:
        if not str(att.get("filename", "")).lower().endswith(".xlsx"):
            continue
        payload = att["payload"]
        payload = base64.b64decode(payload) if att.get("binary") else payload.encode()
        book = openpyxl.load_workbook(io.BytesIO(payload), read_only=True, data_only=True)
        try:
            for sheet in book.worksheets:
                rows += sum(1 for _ in sheet.iter_rows(values_only=True))
        finally:
            book.close()
        sheets += 1
    return sheets, rows


def measure_floor(imap: DovecotServer, expected: int) -> dict[str, Any]:
    """Raw imapclient fetch + mail-parser + openpyxl of every mail in the INBOX (read-only)."""
    import mailparser
    from imapclient import IMAPClient

    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
    client = IMAPClient(imap.host, imap.port, ssl=False, timeout=30)
    client.login(imap.user, imap.password)
    try:
        t0 = time.perf_counter()
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        bodies: list[bytes] = []
        for start in range(0, len(uids), FLOOR_BATCH):
            batch = uids[start:start + FLOOR_BATCH]
            response = client.fetch(batch, ["BODY.PEEK[]"])
            bodies.extend(bytes(response[uid][b"BODY[]"]) for uid in batch)
        t1 = time.perf_counter()
    finally:
        client.logout()
    if len(bodies) != expected:
        raise RuntimeError(f"floor: fetched {len(bodies)} mails, expected {expected}")
    parsed = [mailparser.parse_from_bytes(body) for body in bodies]
    t2 = time.perf_counter()
    sheets = rows = 0
    for mail in parsed:
        found, read = read_spreadsheets(mail)
        sheets, rows = sheets + found, rows + read
    t3 = time.perf_counter()
    total = t3 - t0
    return {"mails": len(bodies), "bytes": sum(map(len, bodies)),
            "fetch_s": t1 - t0, "parse_s": t2 - t1, "sheets_s": t3 - t2, "total_s": total,
            "spreadsheets": sheets, "spreadsheet_rows": rows,
            "fetch_mails_per_s": len(bodies) / (t1 - t0),
            "parse_mails_per_s": len(bodies) / (t2 - t1),
            "mails_per_s": len(bodies) / total}


def measure_floor_send(smtp: Any, replies: list[tuple[str, list[str], bytes]]
                       ) -> dict[str, Any]:
    """The floor's sending part: each reply over one smtplib connection to the same aiosmtpd
    server (the "plain" listener mailbot uses here), the replies' real bytes and recipients.

    The same server, in its own process or on threads of this one, as for the end-to-end
    pass."""
    import smtplib

    cfg = smtp.config("none")
    t0 = time.perf_counter()
    client = smtplib.SMTP(cfg.host, cfg.port, timeout=30)
    try:
        client.ehlo()
        for sender, recipients, data in replies:
            client.sendmail(sender, recipients, data)
    finally:
        with contextlib.suppress(Exception):
            client.quit()
    seconds = time.perf_counter() - t0
    return {"messages": len(replies), "bytes": sum(len(d) for _, _, d in replies),
            "seconds": seconds, "per_s": len(replies) / seconds if seconds else 0.0}


FLOOR_FROM, FLOOR_TO = "bench/floor-entrada", "bench/floor-procesados"


def measure_floor_move(imap: DovecotServer, bodies: list[bytes]) -> dict[str, Any]:
    """The floor's filing part: the same mails, appended again (not timed) to a folder of the
    same Dovecot, filed with one UID MOVE per batch of FLOOR_BATCH into another folder."""
    from imapclient import IMAPClient

    client = IMAPClient(imap.host, imap.port, ssl=False, timeout=30)
    client.login(imap.user, imap.password)
    try:
        for folder in (FLOOR_FROM, FLOOR_TO):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        for body in bodies:
            client.append(FLOOR_FROM, body)
        t0 = time.perf_counter()
        client.select_folder(FLOOR_FROM)
        uids = client.search(["ALL"])
        for start in range(0, len(uids), FLOOR_BATCH):
            client.move(uids[start:start + FLOOR_BATCH], FLOOR_TO)
        seconds = time.perf_counter() - t0
        client.close_folder()
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    if len(uids) != len(bodies):
        raise RuntimeError(f"floor: moved {len(uids)} mails, expected {len(bodies)}")
    return {"mails": len(uids), "moves": -(-len(uids) // FLOOR_BATCH), "seconds": seconds}


def sent_replies(app) -> list[tuple[str, list[str], bytes]]:
    """The replies the end-to-end pass sent (envelope, recipients, bytes), for the floor."""
    with app.store.transaction() as conn:
        rows = conn.execute(sa.select(outbox.c.envelope_from, outbox.c.recipients, outbox.c.data)
                            .where(outbox.c.status == "sent", outbox.c.purpose != "alert")
                            .order_by(outbox.c.id)).all()
    return [(r.envelope_from, json.loads(r.recipients), bytes(r.data)) for r in rows]


def honest_floor(read: dict[str, Any], send: dict[str, Any], move: dict[str, Any]
                 ) -> dict[str, Any]:
    """Fetch + parse + spreadsheets + one SMTP send per mail + one UID MOVE per batch: the work
    no implementation can avoid, as mails/s."""
    total = read["total_s"] + send["seconds"] + move["seconds"]
    return {"mails": read["mails"], "total_s": total, "mails_per_s": read["mails"] / total,
            "read_s": read["total_s"], "send_s": send["seconds"], "move_s": move["seconds"]}
