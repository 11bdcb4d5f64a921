"""What one usual mail costs in SQL statements (issue 10 §3): the look-ups that used to be
separate statements are joined, and the answers are the same as before."""

from __future__ import annotations

import re

import sqlalchemy as sa
from test_unlock_flow import FACTURA, FREE, RAUL, Harness, request_mail


def statements_of(bot: Harness, *mails: bytes) -> list[str]:
    seen: list[str] = []

    def log(conn, cursor, statement, *args):
        seen.append(re.sub(r"\s+", " ", statement))

    sa.event.listen(bot.app.store.engine, "before_cursor_execute", log)
    try:
        bot.run(*mails)
    finally:
        sa.event.remove(bot.app.store.engine, "before_cursor_execute", log)
    return seen


def free_update(serial: str = FREE, **kw) -> bytes:
    return request_mail(sender=RAUL, serial=serial, system=FACTURA, contact_email=RAUL,
                        subject="Solicitud de claves para actualización sin costo",
                        company="Empresa de muestra, S.A. de C.V.", **kw)


def test_a_one_request_mail_looks_up_its_licence_and_bound_key_in_one_statement(tmp_path):
    bot = Harness(tmp_path)
    seen = statements_of(bot, free_update())
    [issued] = bot.requests()
    assert issued.outcome == "issued" and issued.key is not None
    assert not [s for s in seen if s.startswith("SELECT keys.") and "keys.serial = ?" in s]
    [look_up] = [s for s in seen if s.startswith("SELECT licences.")]
    assert "LEFT OUTER JOIN keys" in look_up
    # asked again: the key already bound is found by that same look-up, none is assigned
    again = statements_of(bot, free_update())
    assert not [s for s in again if s.startswith("UPDATE keys SET serial")]
    first, second = bot.requests()
    assert second.key == first.key and second.outcome == "issued"
    assert len(bot.replies()) == 2


def test_a_group_of_new_mails_sets_its_references_in_one_statement(tmp_path):
    bot = Harness(tmp_path)
    seen = statements_of(bot, *(free_update(serial=s) for s in (FREE, "AAAA-BBBB-CCCC-EEEE")))
    assert len([s for s in seen if s.startswith("UPDATE mails SET reference")]) == 1
    references = [m.reference for m in bot.mails()]
    assert len(set(references)) == 2 and all(r and r.startswith("CLV-") for r in references)
    assert [m.id for m in bot.mails()] == [int(r.split("-")[1]) for r in references]


def test_the_keys_of_a_many_row_mail_are_bound_to_their_requests_in_one_statement(tmp_path):
    from test_big_sheet import harness, rows_for, sheet_mail

    bot = harness(tmp_path, 4)
    seen = statements_of(bot, sheet_mail(rows_for(range(4))))
    issued = bot.requests()
    assert len(issued) == 4 and all(r.outcome == "issued" and r.key for r in issued)
    assert len([s for s in seen if s.startswith("UPDATE keys SET request")]) == 1
    from mailbot.store.database import keys
    with bot.app.store.transaction() as conn:
        bound = dict(conn.execute(sa.select(keys.c.id, keys.c.request)
                                  .where(keys.c.request.is_not(None))).all())
    assert bound == {r.key: r.id for r in issued}
