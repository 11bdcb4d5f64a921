"""A person at the console, in a real browser: Debian's chromium driven by Playwright, against
`mailbot web` under uvicorn on a free loopback port, over what `mailbot demo` left (the real
pipeline on the demo mails) and an account made by `mailbot users add`. Every step is a command
or a click, as the README tells an operator.

And the rules: an admin changes a price, sees which real stored answers it changes (the same
the CLI's `dry-run --against` lists), saves, sees the next pass record the new version on its
decision, and reverts.

Log in, find a mail by its serial with the log's filter, open it, open the review queue,
approve a task, see its reply queued ("en cola"), log out. And an admin: edit a template, preview it on the
sample cases and on a stored mail, save it, see the new version (on a copy of the templates); and
upload a key file for a system with no keys, see its preview, confirm it, see the levels change;
and dry-run a stored mail from its page, its reply's text behind "ver texto".
Screenshots of the panel and of a
mail page are kept as artifacts in tests/artifacts/browser/ (not committed), their paths
printed in the test output.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (make system-deps installs it)
PASSWORD = "correcto-caballo-bateria"
NO_CONTACT = "L9EP-3T7W-8ZUA-6FDN"  # the demo's licence with no contact: its request waits
PAPELERIA = "papeleria.esperanza@hotmail.com"


def mailbot(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "mailbot", *args], input=stdin,
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`mailbot demo`, the registry fixed for the waiting request, an operator account, and
    `mailbot web` serving them; yields the console's base URL and the demo's config."""
    demo = tmp_path_factory.mktemp("browser") / "demo"
    mailbot("demo", "--dir", str(demo))
    config = str(demo / "config.toml")
    with (demo / "registry.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    [row] = [r for r in rows if r["serial"] == NO_CONTACT]
    fixed = demo / "registry-fix.csv"
    with fixed.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow({**row, "contact_email": PAPELERIA})
    mailbot("--config", config, "registry", "import", str(fixed))
    mailbot("--config", config, "users", "add", "ana", "--role", "operator",
            "--password-stdin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    with serving(config) as base:
        yield base, config


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def keep(page, name: str, tmp_path: Path, capsys) -> Path:
    """Screenshot `page` into the test's tmp dir and tests/artifacts/browser/, and say where."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / name
    shutil.copyfile(shot, kept)
    with capsys.disabled():
        print(f"\nscreenshot: {kept}")
    return kept


def test_an_operator_finds_a_mail_by_serial_approves_its_task_and_sees_the_reply_queued(
        served, browser, tmp_path, capsys):
    base, _config = served
    page = browser.new_page(locale="es-MX", viewport={"width": 1280, "height": 900})

    # Log in: every page asks for it first.
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=%2F")
    page.get_by_label("Nombre de la cuenta").fill("ana")
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Iniciar sesión").click()
    expect(page).to_have_url(f"{base}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Panel")
    expect(page.get_by_text("Sesión de ana")).to_be_visible()
    panel = keep(page, "panel.png", tmp_path, capsys)

    # Find the mail by its serial with the log's filter, and open it.
    page.get_by_role("link", name="Registro de correos").click()
    page.locator('input[name="serial"]').fill(NO_CONTACT.lower().replace("-", " "))
    page.locator('form.filters button[type="submit"]').click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"/correos/CLV-\d+-[A-Z0-9]+$"))
    expect(page.get_by_text(NO_CONTACT).first).to_be_visible()
    mail_shot = keep(page, "mail.png", tmp_path, capsys)

    # The review queue: the task of that mail, its reason in Spanish; approve it.
    page.get_by_role("link", name="Cola de revisión").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cola de revisión")
    task_row = page.locator("tr", has_text=NO_CONTACT)
    expect(task_row).to_contain_text("El registro no tiene correo de contacto para la serie")
    task_row.get_by_role("link").first.click()
    page.get_by_label("Nota para el historial (opcional)").first.fill(
        "El registro ya tiene el correo de contacto")
    page.locator('form[action$="/approve"] button[type="submit"]').click()
    expect(page.get_by_role("status")).to_contain_text("Sus respuestas quedan en cola")
    reply = page.locator("table.replies tr", has_text="keys_issued")
    expect(reply).to_contain_text("en cola")
    expect(reply).to_contain_text(PAPELERIA)
    expect(page.locator("ol.history")).to_contain_text("approve por ana")
    keep(page, "review-approved.png", tmp_path, capsys)

    # Log out: the console asks for the login again.
    page.get_by_role("button", name="Cerrar sesión").click()
    expect(page).to_have_url(f"{base}/login")
    page.goto(f"{base}/revision")
    expect(page).to_have_url(f"{base}/login?next=%2Frevision")
    assert panel.stat().st_size > 10_000 and mail_shot.stat().st_size > 10_000


@contextlib.contextmanager
def serving(config: str):
    """`mailbot web` on a free loopback port over `config`, until the block ends."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", config, "web",
                               "--listen", f"127.0.0.1:{port}"], cwd=ROOT,
                              env=os.environ.copy(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for uvicorn to listen
            if server.poll() is not None:
                pytest.fail(f"mailbot web exited: {server.stderr.read()}")
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("mailbot web did not start listening")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


ADMIN_MARK = "Gracias por escribirnos, revisamos su solicitud con cuidado."


def admin_demo(tmp_path_factory, name: str, own: str | None = None) -> tuple[Path, str]:
    """The demo with an admin account `root`; `own` ("rules", "templates"): the demo gets a
    copy of that folder of its own and its config points there (the console writes into it,
    never into the project's). Returns the demo's folder and its config file."""
    demo = tmp_path_factory.mktemp(name) / "demo"
    mailbot("demo", "--dir", str(demo))
    config = str(demo / "config.toml")
    if own is not None:
        shutil.copytree(ROOT / own, demo / own)
        written = Path(config).read_text(encoding="utf-8")
        setting = f'{own}_dir = "{ROOT / own}"'
        assert setting in written
        Path(config).write_text(written.replace(setting, f'{own}_dir = "{demo / own}"'),
                                encoding="utf-8")
    mailbot("--config", config, "users", "add", "root", "--role", "admin",
            "--password-stdin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    return demo, config


def log_in(page, url: str, name: str = "root") -> None:
    """Open `url` and log in as `name` on the login page it sends to."""
    page.goto(url)
    page.get_by_label("Nombre de la cuenta").fill(name)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Iniciar sesión").click()


def test_an_admin_edits_a_template_previews_it_saves_it_and_sees_the_new_version(
        tmp_path_factory, browser, tmp_path, capsys):
    # The demo with a templates folder of its own (the console writes into it) and an admin.
    demo, config = admin_demo(tmp_path_factory, "browser-admin", own="templates")
    with serving(config) as base:
        page = browser.new_page(locale="es-MX", viewport={"width": 1400, "height": 900})
        log_in(page, f"{base}/admin")
        expect(page).to_have_url(f"{base}/admin")
        page.get_by_role("link", name="Plantillas").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Plantillas")
        expect(page.locator("#version-in-use")).to_contain_text("Versión en uso: 1")
        page.get_by_role("link", name="keys_issued", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Plantilla keys_issued")

        # Edit the text part and preview it on the sample cases: nothing is written yet.
        text = page.locator('textarea[name="text"]')
        original = text.input_value()
        assert original == (demo / "templates" / "keys_issued.txt.j2").read_text("utf-8")
        edited = original.replace("{% block body %}\n", "{% block body %}\n" + ADMIN_MARK + "\n",
                                  1)
        assert edited != original
        text.fill(edited)
        page.get_by_role("button", name="Vista previa").click()
        expect(page.get_by_role("heading", name="Vista previa con los casos de ejemplo")
               ).to_be_visible()
        expect(page.locator("pre.text").first).to_contain_text(ADMIN_MARK)
        frame = page.locator('iframe[sandbox=""]').first
        expect(frame).to_be_visible()
        expect(page.frame_locator('iframe[sandbox=""]').first.locator("body")
               ).not_to_be_empty()
        assert ADMIN_MARK not in (demo / "templates" / "keys_issued.txt.j2").read_text("utf-8")
        keep(page, "admin-template-preview.png", tmp_path, capsys)

        # And on a real stored mail, by its reference: the dry run's reply carries the edit.
        with contextlib.closing(sqlite3.connect(demo / "mailbot.db")) as db:
            [reference] = db.execute(
                "SELECT m.reference FROM mails m JOIN outbox o ON o.mail = m.id "
                "WHERE o.template = 'keys_issued' ORDER BY m.id LIMIT 1").fetchone()
        page.locator('input[name="reference"]').fill(reference)
        page.get_by_role("button", name="Vista previa").click()
        expect(page.get_by_role("heading", name=f"Vista previa con {reference}")).to_be_visible()
        expect(page.locator("section.mail-preview pre.text").first).to_contain_text(ADMIN_MARK)
        expect(page.frame_locator("section.mail-preview iframe").first.locator("body")
               ).to_contain_text("Hola")
        keep(page, "admin-template-mail-preview.png", tmp_path, capsys)

        # Save: checked, written into the folder, recorded as version 2.
        page.get_by_role("button", name="Revisar y guardar").click()
        expect(page.get_by_role("status")).to_contain_text(
            "las plantillas son ahora la versión 2")
        assert ADMIN_MARK in (demo / "templates" / "keys_issued.txt.j2").read_text("utf-8")
        page.get_by_role("link", name="Todas las plantillas").click()
        expect(page.locator("#version-in-use")).to_contain_text("Versión en uso: 2")
        saved = keep(page, "admin-template-saved.png", tmp_path, capsys)
    assert "templates v2" in mailbot("--config", config, "templates", "versions")
    assert saved.stat().st_size > 10_000


def test_an_admin_uploads_keys_for_an_empty_system_previews_confirms_and_sees_the_levels(
        tmp_path_factory, browser, tmp_path, capsys):
    demo, config = admin_demo(tmp_path_factory, "browser-registry")
    empty = "CONTPAQ i Punto de venta"  # the demo's pool has no key for it
    keys_file = tmp_path / "claves-punto-de-venta.csv"
    keys_file.write_text("system,key\nPunto de venta,PV-2026-0001\n"
                         "Punto de venta,PV-2026-0002\n", encoding="utf-8")
    with serving(config) as base:
        page = browser.new_page(locale="es-MX", viewport={"width": 1400, "height": 900})
        log_in(page, f"{base}/admin")
        page.get_by_role("link", name="Registro y claves").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Registro y claves")
        row = page.locator("table.levels tr", has_text=empty)
        expect(row).to_have_class("empty")
        expect(row).to_contain_text("Sin claves: las solicitudes esperan")

        # Upload the file through the file input: a preview, nothing imported yet.
        page.get_by_label("Claves para entregar").check()
        page.get_by_label("Archivo").set_input_files(str(keys_file))
        page.get_by_role("button", name="Vista previa de la importación").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Vista previa de la importación")
        expect(page.locator("#counts")).to_contain_text("Altas: 2")
        expect(page.locator("#counts")).to_contain_text("Rechazadas: 0")
        expect(page.locator("table.add")).to_contain_text("PV-2026-0002")
        assert free_keys(config)[empty] == 0
        keep(page, "admin-registry-preview.png", tmp_path, capsys)

        # Confirm: imported; the demo's request that waited for this system takes one of the
        # two keys at once (its reply goes out on the next pass), so 1 available, 1 issued.
        page.get_by_role("button", name="Confirmar la importación").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Se importó claves-punto-de-venta.csv a las claves disponibles: 2 claves agregadas")
        row = page.locator("table.levels tr", has_text=empty)
        expect(row).not_to_have_class("empty")
        expect(row.locator("td").nth(1)).to_have_text("1")
        expect(row.locator("td").nth(2)).to_have_text("1")
        shot = keep(page, "admin-registry-levels.png", tmp_path, capsys)
    assert free_keys(config)[empty] == 1
    assert shot.stat().st_size > 10_000


def free_keys(config: str) -> dict[str, int]:
    """`mailbot keys levels --json`: free keys by system."""
    return {level["system"]: level["free"] for level in map(
        json.loads, mailbot("--config", config, "keys", "levels", "--json").splitlines())}


NEW_REQUEST = (
    "From: Raul Gonzalez Rivera <rgonzalez@empresamuestra.com.mx>\r\n"
    "To: claves@example.com\r\n"
    "Subject: Solicitud de claves para actualización sin costo\r\n"
    "Date: Tue, 01 Dec 2026 10:00:00 -0600\r\n"
    "Message-ID: <nueva-solicitud-1@empresamuestra.com.mx>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Nombre de la empresa: Empresa de muestra, S.A. de C.V.\r\n"
    "Nombre del contacto: Raul Gonzalez Rivera\r\n"
    "Correo electrónico: rgonzalez@empresamuestra.com.mx\r\n"
    "Sistema: CONTPAQ i Contabilidad\r\n"
    "Número de serie: AAAA-BBBB-CCCC-EEEE\r\n").encode()


def test_an_admin_changes_a_price_sees_the_answers_it_changes_saves_and_reverts(
        tmp_path_factory, browser, tmp_path, capsys):
    """The issue's "done when" for the rules: change a price in the browser, see which real
    answers change before saving, save, see the new version used by the next pass and recorded
    on its decision, revert."""
    demo, config = admin_demo(tmp_path_factory, "browser-rules", own="rules")
    prices = demo / "rules" / "free_update.toml"
    original = prices.read_text(encoding="utf-8")
    # What the CLI's dry run says the same change alters: the console must list these.
    other = tmp_path / "rules"
    shutil.copytree(demo / "rules", other)
    (other / "free_update.toml").write_text(
        original.replace('name = "Trimestral"\nprice = 2500\n',
                         'name = "Trimestral"\nprice = 2600.50\n'), encoding="utf-8")
    expected = sorted(json.loads(line)["reference"] for line in mailbot(
        "--config", config, "dry-run", "--json", "--since", "7d", "--against",
        str(other)).splitlines())
    assert expected  # the demo has answers that quote the renewal prices
    with serving(config) as base:
        page = browser.new_page(locale="es-MX", viewport={"width": 1400, "height": 900})
        log_in(page, f"{base}/admin")
        page.get_by_role("link", name="Reglas").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Reglas")
        expect(page.locator("#version-in-use")).to_contain_text("Versión en uso: 1")

        # A bad price first: refused next to its field, nothing written.
        price = page.get_by_label("Precio de Trimestral")
        price.fill("2.600,50")
        page.get_by_role("button", name="Vista previa de los cambios").click()
        expect(page.locator("#error-policy-0-price")).to_contain_text(
            "Escriba el precio en pesos con dos decimales como máximo")
        assert prices.read_text(encoding="utf-8") == original

        # The price with cents: the preview lists the real stored answers it changes.
        page.get_by_label("Precio de Trimestral").fill("2,600.50")
        page.get_by_role("button", name="Vista previa de los cambios").click()
        expect(page.locator("#preview-count")).to_have_text(
            f"Este cambio altera {len(expected)} respuestas:")
        links = page.locator("#preview table.changes a")
        expect(links).to_have_count(len(expected))
        assert sorted(links.all_inner_texts()) == expected
        expect(page.locator("#preview pre.diff").first).to_contain_text("2,600.50")
        assert prices.read_text(encoding="utf-8") == original  # nothing written yet
        keep(page, "admin-rules-preview.png", tmp_path, capsys)

        # Save: written with the admin's comments kept, recorded as version 2.
        page.get_by_role("button", name="Guardar estos cambios").click()
        expect(page.get_by_role("status")).to_contain_text("las reglas son ahora la versión 2")
        saved_text = prices.read_text(encoding="utf-8")
        assert 'name = "Trimestral"\nprice = 2600.50\n' in saved_text
        assert "# Renewal of the remote support policy, per system." in saved_text

        # The next pass decides a new request with version 2 and records it on the decision.
        inbox = demo / "inbox"
        (inbox / "tmp" / "1330000000.M1_nueva.demo").write_bytes(NEW_REQUEST)
        os.replace(inbox / "tmp" / "1330000000.M1_nueva.demo",
                   inbox / "new" / "1330000000.M1_nueva.demo")
        mailbot("--config", config, "run", "--once")
        with contextlib.closing(sqlite3.connect(demo / "mailbot.db")) as db:
            reference, rules_version = db.execute(
                "SELECT reference, rules_version FROM mails ORDER BY id DESC LIMIT 1"
            ).fetchone()
        assert rules_version == 2
        page.goto(f"{base}/correos/{reference}")
        expect(page.locator("dd.versions")).to_contain_text("reglas v2")

        # Revert: version 1 written back, the folder as it was.
        page.goto(f"{base}/admin/reglas")
        page.get_by_role("link", name="v1", exact=True).click()
        expect(page.locator("pre.diff").first).to_contain_text("-price = 2600.50")
        page.get_by_role("button", name="Restaurar esta versión").click()
        expect(page.get_by_role("status")).to_contain_text("Se restauró la versión 1")
        expect(page.locator("#version-in-use")).to_contain_text("Versión en uso: 1")
        assert prices.read_text(encoding="utf-8") == original
        keep(page, "admin-rules-reverted.png", tmp_path, capsys)
    assert "rules v2" in mailbot("--config", config, "rules", "versions")


def test_an_admin_dry_runs_a_stored_mail_from_its_page_and_an_upload_from_the_dry_run_page(
        tmp_path_factory, browser, tmp_path, capsys):
    """From a mail's page, "Ensayar de nuevo con las reglas en uso": the dry run's page with its
    banner, the decision and the reply, its text behind "ver texto"; then an upload that is no
    mail, named. Chromium's own multipart upload under the page's strict policy."""
    demo, config = admin_demo(tmp_path_factory, "browser-dry-run")
    not_a_mail = tmp_path / "nota.txt"
    not_a_mail.write_text("solo una nota, sin encabezados\n", encoding="utf-8")
    with serving(config) as base:
        page = browser.new_page(locale="es-MX", viewport={"width": 1400, "height": 900})
        log_in(page, f"{base}/correos")
        page.locator('input[name="serial"]').fill("AAAA-BBBB-CCCC-DDDD")
        page.locator('form.filters button[type="submit"]').click()
        page.locator("table tbody tr").first.get_by_role("link").first.click()
        page.get_by_role("button", name="Ensayar de nuevo con las reglas en uso").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Ensayo")
        expect(page.locator("#banner")).to_have_text(
            "Ensayo: nada se guardó, no se asignó ninguna clave, no se envió ni se archivó nada.")
        mail = page.locator("article.dry-mail").first
        expect(mail.locator("strong.outcome").first).to_have_text("clave emitida")
        text = mail.locator("article.reply pre.text").first
        expect(text).to_be_hidden()
        mail.get_by_text("ver texto").first.click()
        expect(text).to_contain_text("AAAA-BBBB-CCCC-DDDD")
        expect(mail.locator('iframe[sandbox=""]').first).to_be_visible()
        keep(page, "admin-dry-run.png", tmp_path, capsys)

        page.get_by_label("Archivos .eml (uno o varios)").set_input_files(str(not_a_mail))
        page.get_by_role("button", name="Ensayar", exact=True).click()
        expect(page.locator("#input-problems")).to_contain_text(
            "nota.txt: este archivo no es un correo (.eml)")
