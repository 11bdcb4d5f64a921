"""The console's pages: the panel and its JSON twin from what the store holds, Spanish through
the catalog, every time in the business zone, customer-written text escaped. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from mailbot.ops.web.i18n import catalog_path, load_translations
from mailbot.store import panel, reviews

OPS = Path(__file__).resolve().parent.parent / "mailbot" / "ops"
# Where rule hits are written with N_() templates the console translates (mailbot.wording).
HIT_FOLDERS = [OPS.parent / "decide", OPS.parent / "run"]


def add_mail(store, n: int, outcome: str | None, received_at: dt.datetime) -> int:
    with store.transaction() as conn:
        rec = store.add_mail(conn, source="test", mail_id=str(n), fp=f"{n:064d}", size=10)
        store.update_mail(conn, rec.id, outcome=outcome, received_at=received_at,
                          sender=f"cliente{n}@example.com", subject="Solicitud")
    return rec.id


def fill(console) -> None:
    """A day at the desk: mails today and yesterday, two review tasks (one overdue), keys,
    the outbox, an alert whose title a customer could have influenced."""
    store, now = console.store, console.app.state.web.now()
    web = console.app.state.web
    today = web.today_start()
    ids = [add_mail(store, 1, "answered", today + dt.timedelta(hours=1)),
           add_mail(store, 2, "answered", today + dt.timedelta(hours=2)),
           add_mail(store, 3, "review", today + dt.timedelta(minutes=5)),
           add_mail(store, 4, None, today + dt.timedelta(minutes=1)),
           add_mail(store, 5, "answered", today - dt.timedelta(minutes=1))]  # yesterday
    with store.transaction() as conn:
        for due in (now - dt.timedelta(hours=1), now + dt.timedelta(hours=5)):
            reviews.create(conn, mail=ids[2], kind="free_update", reason="unknown_serial",
                           reason_text="serie desconocida", due_at=due, snapshot={}, now=now)
        store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Nóminas", key=f"K-{n}")
                              for n in range(12)])
        store.add_keys(conn, [SimpleNamespace(system="Aspel FACTURE", key="A-1")])
        for n, status in enumerate(("queued", "queued", "failed", "sent")):
            message = store.enqueue(conn, mail=ids[0], purpose="reply", template="t",
                                    message_id=f"<m{n}@x>", envelope_from="claves@example.com",
                                    recipients=["a@example.com"], data=b"x")
            if status == "failed":
                store.mark_failed(conn, message, error="550")
            elif status == "sent":
                store.mark_sent(conn, message)
        store.log_event(conn, "alert", mail=ids[2], title="<script>alert(1)</script>",
                        detail="Sin claves para <b>Aspel</b>")
        store.log_event(conn, panel.PASS_FINISHED, duration_seconds=1.25)


def test_the_summary_counts_what_the_store_holds_today(console):
    fill(console)
    console.add_user()
    summary = console.client().get("/api/v1/summary", headers={
        "authorization": f"Bearer {console.token()}"}).json()
    assert summary["mails_today"] == {"total": 4, "by_outcome": {"": 1, "answered": 2,
                                                                  "review": 1}}
    assert summary["reviews"] == {"open": 2, "overdue": 1}
    keys = {k["system"]: k for k in summary["keys"]}
    assert keys["CONTPAQ i Nóminas"] == {"system": "CONTPAQ i Nóminas", "free": 12,
                                        "assigned": 0, "low": False}
    assert keys["Aspel FACTURE"]["free"] == 1 and keys["Aspel FACTURE"]["low"]
    assert keys["CONTPAQ i Bancos"]["free"] == 0 and keys["CONTPAQ i Bancos"]["low"]
    assert summary["low_stock_threshold"] == 10
    assert summary["outbox"] == {"queued": 2, "failed": 1}
    assert summary["last_pass"]["source"] == "pass_finished"
    assert summary["last_pass"]["duration_seconds"] == 1.25
    [alert] = summary["alerts"]
    assert alert["reference"].startswith("CLV-") and alert["title"] == "<script>alert(1)</script>"


def test_the_panel_shows_the_same_in_spanish_with_times_marked_and_text_escaped(console):
    fill(console)
    client = console.logged_in()
    html = client.get("/").text
    assert '<html lang="es-MX">' in html and "<title>Panel · mailbot</title>" in html
    assert "Correos de hoy" in html and "2 tareas abiertas, 1 vencidas." in html
    assert "2 en cola, 1 fallidos." in html and "quedan pocas" in html
    assert "<script>alert(1)</script>" not in html and "<b>Aspel</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d (CST|CDT)", html)  # the business zone, marked
    assert "1.25 s" in html  # es_MX writes a decimal point
    assert "Mails today" not in html  # every English msgid has its Spanish text


def test_the_panel_with_an_empty_store_says_so(console):
    html = console.logged_in().get("/").text
    assert "Hoy no ha llegado ningún correo." in html and "Sin alertas." in html
    assert "Todavía no hay ninguna pasada registrada." in html


def test_every_message_of_the_console_has_a_spanish_translation_and_none_is_unused():
    # The console's templates and Python, and the N_() templates of mailbot/ops it shows (the
    # reasons an import refuses a row, mailbot.wording): outside ops/web only the console
    # translates, so any N_ there is a console message. The same for the rule hits' reasons
    # written in decide/ and run/ (RuleHit.said): a hit template without its Spanish fails here.
    method_map = [("web/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    used = {message for _, _, message, _, _ in extract_from_dir(str(OPS), method_map=method_map,
                                                                options_map=options)}
    hit_templates = {message for folder in HIT_FOLDERS
                     for _, _, message, _, _ in extract_from_dir(
                         str(folder), method_map=[("**.py", "python")], keywords={"N_": None})}
    assert "serial %(serial)s is registered" in hit_templates  # the scan reaches decide/
    used |= hit_templates
    with catalog_path().open("rb") as po:
        catalog = read_po(po, locale="es_MX")
    translated = {m.id: m.string for m in catalog if m.id}
    assert used, "no message found: the extraction itself is broken"
    assert sorted(used - set(translated)) == []  # missing from the .po
    assert sorted(set(translated) - used) == []  # left in the .po, no longer used
    assert [m for m, text in translated.items() if not text] == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]
    assert list(catalog.check()) == []  # placeholders match between msgid and msgstr


def test_the_catalog_compiles_in_memory_at_start():
    translations = load_translations()
    assert translations.gettext("Sign in") == "Iniciar sesión"
    assert translations.gettext("Wrong name or password.") == "Nombre o contraseña incorrectos."


def test_a_stored_hit_is_said_through_the_catalogue_and_an_old_row_as_it_was_stored():
    from mailbot.model import RuleHit
    from mailbot.ops.web.hit_words import hit_reason
    from mailbot.wording import N_

    said = hit_reason(load_translations().gettext)
    hit = RuleHit.said("registry.known", N_("serial %(serial)s is registered"), serial="S-1")
    assert hit.reason == "serial S-1 is registered"  # the English of the CLI and the store
    assert hit == RuleHit("registry.known", "serial S-1 is registered")  # words do not compare
    stored = hit.to_json()
    assert stored == {"rule": "registry.known", "reason": "serial S-1 is registered",
                      "template": "serial %(serial)s is registered",
                      "values": {"serial": "S-1"}}
    assert RuleHit.from_json(stored).words == hit.words
    assert said(stored) == "la serie S-1 está registrada"
    old = {"rule": "registry.known", "reason": "serial S-1 is registered"}  # before templates
    assert RuleHit.from_json(old).words is None and said(old) == "serial S-1 is registered"
    broken = {**stored, "values": {}}  # a value missing: the stored reason, not an error
    assert said(broken) == "serial S-1 is registered"
