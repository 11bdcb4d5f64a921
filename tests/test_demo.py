"""The demo set: a Maildir of real-looking request mails, a registry and a key pool that import."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import openpyxl
import pytest

from mailbot.ops.demo import SEED_CONTACT, SEED_SPREADSHEET, DemoFiles, write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.ruleset import load_rules
from mailbot.transport.maildir import MaildirSource

RULES = Path(__file__).resolve().parents[1] / "rules"
EXPECTED_MAILS = 12


@pytest.fixture
def demo(tmp_path: Path) -> DemoFiles:
    return write_demo(tmp_path / "demo")


@pytest.fixture(scope="module")
def catalogue():
    return load_rules(RULES).catalogue


def parse(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def mail(demo: DemoFiles, slug: str) -> EmailMessage:
    [found] = [m for m in demo.mails if f"_{slug}." in m.name]
    return parse(found.path)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_demo_writes_a_maildir_with_every_mail_in_new(demo):
    assert demo.maildir == demo.root / "inbox"
    assert {p.name for p in demo.maildir.iterdir()} == {"cur", "new", "tmp"}
    assert sorted(p.name for p in (demo.maildir / "new").iterdir()) == [m.name for m in demo.mails]
    assert len(demo.mails) == EXPECTED_MAILS
    assert not any((demo.maildir / "tmp").iterdir())
    assert all(":" not in m.name and "/" not in m.name for m in demo.mails)


def test_every_demo_mail_parses_cleanly_with_real_looking_headers(demo):
    ids = set()
    for demo_mail in demo.mails:
        message = parse(demo_mail.path)
        assert not message.defects, demo_mail.name
        assert all(not part.defects for part in message.walk()), demo_mail.name
        for header in ("Message-ID", "Date", "From", "To", "Subject", "MIME-Version"):
            assert message[header], (demo_mail.name, header)
        name, address = parseaddr(str(message["From"]))
        assert name and "@" in address, demo_mail.name
        assert message["To"] == "claves@example.com"
        ids.add(message["Message-ID"])
        body = message.get_body(("plain", "html"))
        assert body is not None and body.get_content().strip(), demo_mail.name
        assert demo_mail.purpose
    assert len(ids) == EXPECTED_MAILS


def test_mails_arrive_oldest_first_by_modification_time(demo):
    times = [m.path.stat().st_mtime for m in demo.mails]
    assert times == sorted(times) and len(set(times)) == len(times)
    for demo_mail in demo.mails:
        date = parse(demo_mail.path)["Date"].datetime
        assert demo_mail.path.stat().st_mtime == date.timestamp()


def test_the_seed_spreadsheet_is_attached_as_an_xlsx_that_openpyxl_opens(demo):
    message = mail(demo, "seed-spreadsheet")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == SEED_SPREADSHEET
    assert attachment.get_content_type() == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert message.get_body(("html",)) is not None  # Outlook: text and HTML alternatives

    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()), read_only=True)
    rows = [list(r) for r in book.active.iter_rows(values_only=True)]
    assert rows[0] == ["Nombre de la empresa", "Nombre del contacto", "Correo electrónico",
                       "Tipo de sistema", "Número de serie"]
    assert [r[4] for r in rows[1:]] == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE",
                                        "AAAA-BBBB-CCCC-FFFF", "AAAA-BBBB-CCCC-GGGG"]
    assert {r[0] for r in rows[1:]} == {"Empresa de muestra, S.A. de C.V."}
    assert {r[2] for r in rows[1:]} == {SEED_CONTACT}


def test_the_single_request_is_the_seeds_example(demo):
    body = mail(demo, "single-request").get_body(("plain",)).get_content()
    assert "Tipo de sistema: CONTPAQ i – Factura electrónica" in body
    assert "Número de serie: Aaaa-Bbbb-Cccc-Dddd" in body
    assert "Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx" in body


def test_the_repeated_request_is_the_same_request_in_a_new_mail(demo):
    first, again = mail(demo, "single-request"), mail(demo, "repeated-request")
    assert first["Message-ID"] != again["Message-ID"]
    assert again["Date"].datetime > first["Date"].datetime
    first_body = first.get_body(("plain",)).get_content()
    assert first_body in again.get_body(("plain",)).get_content()


def test_the_auto_reply_says_so_and_the_invoice_has_another_subject(demo):
    auto = mail(demo, "out-of-office")
    assert auto["Auto-Submitted"] == "auto-replied"
    assert mail(demo, "unrelated-invoice")["Subject"] == "Factura del mes"
    assert mail(demo, "unlock-request")["Subject"] == "Solicitud de desbloqueo"


def test_outlook_html_and_legacy_charsets_are_in_the_set(demo):
    outlook = mail(demo, "other-requester")
    assert outlook.get_content_type() == "multipart/alternative"
    html = outlook.get_body(("html",))
    assert html.get_content_charset() == "windows-1252"
    assert "class=MsoNormal" in html.get_content() and "mailto:" in html.get_content()
    assert mail(demo, "ineligible-serial").get_body(("plain",)).get_content_charset() == "iso-8859-1"
    assert mail(demo, "pending-keys").get_content_type() == "multipart/alternative"


def test_registry_and_key_pool_import_and_tell_the_demo_story(demo, catalogue):
    licences = {r.serial: r for r in read_registry(demo.registry_csv, catalogue)}
    keys = read_keys(demo.keys_csv, catalogue)
    assert len(licences) >= 10

    seed = [licences[f"AAAA-BBBB-CCCC-{s}"] for s in ("DDDD", "EEEE", "FFFF", "GGGG")]
    assert {(r.company, r.contact_email) for r in seed} == {("Empresa de muestra, S.A. de C.V.", SEED_CONTACT)}
    assert [r.system for r in seed] == ["CONTPAQ i Factura electrónica", "CONTPAQ i Contabilidad",
                                        "CONTPAQ i Nóminas", "CONTPAQ i Bancos"]
    eligible_from = dt.date(2011, 7, 1)
    assert all(r.purchase_date >= eligible_from for r in seed)
    assert any(r.support_until and r.support_until > dt.date(2090, 1, 1) for r in seed)  # support valid
    assert any(r.support_until is None or r.support_until < dt.date(2020, 1, 1) for r in seed)  # not
    assert licences["K7Q2-M9XD-41PL-ZT8R"].purchase_date < eligible_from
    assert {r.modality for r in licences.values()} == {"suscripcion", "electronico", "fisico"}

    pool_systems = {k.system for k in keys}
    assert licences["P7VT-3K9D-2LMX-8QRW"].system not in pool_systems  # the pending-keys mail
    assert all(r.system in pool_systems for s, r in licences.items() if s != "P7VT-3K9D-2LMX-8QRW")
    assert len({k.key for k in keys}) == len(keys)


def test_every_serial_a_mail_asks_for_is_in_the_registry(demo, catalogue):
    licences = {r.serial: r for r in read_registry(demo.registry_csv, catalogue)}
    asked = {
        "single-request": "AAAA-BBBB-CCCC-DDDD", "ineligible-serial": "K7Q2-M9XD-41PL-ZT8R",
        "other-requester": "D4LN-8P2Q-77XK-M3WA", "pending-keys": "P7VT-3K9D-2LMX-8QRW",
        "unlock-request": "R8TZ-5N1Q-6WHK-2JCE",
    }
    for slug, serial in asked.items():
        text = mail(demo, slug).get_body(("plain",)).get_content()
        written = re.sub(r"[^A-Z0-9]", "", text.upper())
        assert serial.replace("-", "") in written, slug
        assert serial in licences, slug
    requester = mail(demo, "other-requester")["From"].addresses[0].addr_spec
    assert requester != licences["D4LN-8P2Q-77XK-M3WA"].contact_email
    assert licences["R8TZ-5N1Q-6WHK-2JCE"].modality == "suscripcion"


def test_write_demo_again_gives_identical_files(tmp_path):
    first = write_demo(tmp_path / "a")
    before = snapshot(first.root)
    second = write_demo(tmp_path / "a")
    assert snapshot(second.root) == before
    assert second == first
    other = write_demo(tmp_path / "b")
    assert {k: v[0] for k, v in snapshot(other.root).items()} == {k: v[0] for k, v in before.items()}


def test_write_demo_uses_our_address(tmp_path):
    files = write_demo(tmp_path, our_address="claves@contpaqi.example")
    assert {parse(m.path)["To"] for m in files.mails} == {"claves@contpaqi.example"}


def test_mails_mailbot_already_filed_are_not_put_back_into_the_inbox(demo):
    source = MaildirSource(demo.maildir, max_message_bytes=10**7)
    [first, *rest] = demo.mails
    mail_id = first.name
    source.file(mail_id, "processed")

    again = write_demo(demo.root)

    assert sorted(p.name for p in (demo.maildir / "new").iterdir()) == [m.name for m in rest]
    assert again.mails[0].path == demo.maildir / ".processed" / "cur" / first.name
    assert [m.mail_id for m in source.fetch_new()] == [m.name for m in rest]


def test_a_mail_changed_in_new_is_rewritten(demo):
    path = demo.mails[0].path
    original = path.read_bytes()
    path.write_bytes(b"Subject: roto\n\n")
    os.utime(path, (0, 0))
    write_demo(demo.root)
    assert path.read_bytes() == original


# --- `mailbot demo`: from any directory, whole or not at all -------------------------------------

def test_the_demo_runs_from_any_directory_on_the_shipped_rules(tmp_path, monkeypatch, capsys):
    from mailbot import config as config_module
    from mailbot.ops.demodriver import run_demo
    from mailbot.shipped import shipped

    monkeypatch.chdir(tmp_path)  # no rules/ or templates/ here
    assert run_demo(Path("d")) == 0
    out = capsys.readouterr().out
    assert f"run: {EXPECTED_MAILS} mail(s) in the inbox, {EXPECTED_MAILS} decided" in out
    config = config_module.load(tmp_path / "d" / "config.toml")
    assert config.resolve(config.bot.rules_dir) == shipped("rules")
    assert config.resolve(config.bot.templates_dir) == shipped("templates")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no staging folder left
    assert len(list((tmp_path / "d" / "outbox").glob("*.eml"))) >= 10


def test_the_demo_fails_before_writing_anything_when_the_rules_are_missing(tmp_path, monkeypatch,
                                                                           capsys):
    from mailbot.ops import demodriver
    from mailbot.ops.cli import main

    real = demodriver.shipped
    monkeypatch.setattr(demodriver, "shipped",
                        lambda name: tmp_path / "gone" / name if name == "rules" else real(name))
    assert main(["demo", "--dir", str(tmp_path / "d")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mailbot: error: ") and "rules" in line
    assert list(tmp_path.iterdir()) == []


def test_a_demo_that_fails_while_writing_leaves_no_folder(tmp_path, monkeypatch):
    from mailbot.errors import ImportError_
    from mailbot.ops import demodriver

    def broken(*args, **kwargs):
        raise ImportError_("keys.csv: line 2: unknown system")

    monkeypatch.setattr(demodriver, "read_keys", broken)
    with pytest.raises(ImportError_):
        demodriver.run_demo(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []  # neither d nor its staging folder


def test_a_file_in_place_of_the_demo_folder_is_an_error(tmp_path):
    from mailbot.errors import MailbotError
    from mailbot.ops.demodriver import run_demo

    (tmp_path / "d").write_text("mine")
    with pytest.raises(MailbotError, match="not a directory"):
        run_demo(tmp_path / "d")
    assert (tmp_path / "d").read_text() == "mine"
