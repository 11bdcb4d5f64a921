"""Step 5: a mail whose answers are all out leaves the inbox for its folder, one move per
folder, then one commit marks them filed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mailbot.run import claims
from mailbot.run.app import BATCH_SIZE, App, RunReport
from mailbot.store import MailRecord
from mailbot.transport.seams import REVIEW

log = logging.getLogger("mailbot")


def file_mails(app: App, mail_ids: Sequence[int], report: RunReport) -> None:
    """File the decided mails among `mail_ids` whose answers are all out: one move per folder
    (where the source can move many at once), then one commit per folder marks them filed."""
    store = app.store
    with store.transaction() as conn:
        unsent = store.mails_with_unsent(conn, mail_ids)
        records = {rec.id: rec for rec in store.records(conn, mail_ids)}
    current = [records[m] for m in mail_ids if m in records]
    ready = [rec for rec in current
             if not rec.filed and rec.status != "received" and rec.id not in unsent]
    if not ready:
        return
    for _ in ready:
        app.hook("before_file")
    store.sync()  # their decisions on the disk before they leave the inbox (Store.transaction)
    by_folder: dict[str, list[MailRecord]] = {}
    for rec in ready:
        by_folder.setdefault(rec.folder or REVIEW, []).append(rec)
    file_many = getattr(app.source, "file_many", None)
    for folder, recs in by_folder.items():
        if file_many is not None and len(recs) > 1:
            file_many([rec.mail_id for rec in recs], folder)
        else:
            for rec in recs:
                app.source.file(rec.mail_id, folder)
        with store.transaction() as conn:
            store.mark_filed(conn, [rec.id for rec in recs], app.now())
        report.filed += len(recs)
        for rec in recs:
            log.info("event=mail_filed reference=%s folder=%s", rec.reference, folder)



def finish_unfiled(app: App, report: RunReport) -> None:
    """File what earlier runs decided but did not file; of the mails this run can claim (a run
    still at work on a mail holds it, and files it itself)."""
    with app.store.transaction() as conn:
        pending = app.store.mails_to_finish(conn, app.source.name)
    for start in range(0, len(pending), BATCH_SIZE):
        ids = [rec.id for rec in pending[start:start + BATCH_SIZE]]
        with app.store.transaction() as conn:
            held = claims.claim(app, conn, ids)
        try:
            file_mails(app, [m for m in ids if m in held], report)
        finally:
            claims.let_go(app, sorted(held))
