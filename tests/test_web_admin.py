"""The templates admin page (`/admin/plantillas`) over HTTP, on SQLite and PostgreSQL: listing,
editing with the check before any write, previews (samples and a stored mail through the dry
run's engine), diff and revert, and who may do it (admins only, CSRF on every form)."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, write_config
from web_console import CSRF_INPUT, FAST, Clock, Console, empty_accounts
from web_fixtures import desk_material, mail_desk

from mailbot import config as config_module
from mailbot.answer.samples import sample_context
from mailbot.ops.web.app import create_app
from mailbot.run import versions
from mailbot.run.app import App
from mailbot.run.dryrun import CapturingSink
from mailbot.run.versions import content_hash, folder_files
from mailbot.run.wiring import open_renderer, open_rules, open_source
from mailbot.store import versions as stored

__all__ = ["desk_material", "mail_desk"]

MARK = "Texto nuevo del administrador"


@pytest.fixture
def desk(store, tmp_path) -> tuple[Console, Path]:
    """A console whose templates folder is a test's own copy of the project's."""
    empty_accounts(store)
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    path = write_config(tmp_path, f'[store]\nurl = "{store.url}"\n'
                                  f'[web]\nsecret_key_file = "{tmp_path / "secret.key"}"\n')
    path.write_text(path.read_text(encoding="utf-8").replace(
        str(ROOT / "templates"), str(folder)), encoding="utf-8")
    clock = Clock()
    app = create_app(config_module.load(path), store=store, clock=clock, hasher=FAST)
    yield Console(app, store, clock, path), folder
    empty_accounts(store)


def _csrf(page: str) -> str:
    return CSRF_INPUT.findall(page)[-1]


def _base(page: str) -> str:
    return re.search(r'name="base" value="([0-9a-f]+)"', page).group(1)


def _form(client, name: str) -> dict[str, str]:
    page = client.get(f"/admin/plantillas/{name}")
    assert page.status_code == 200
    # a browser drops the one newline that follows <textarea>: the page puts one there
    text = html.unescape(re.search(r'<textarea name="text"[^>]*>\n(.*?)</textarea>', page.text,
                                   re.S).group(1))
    part = html.unescape(re.search(r'<textarea name="html"[^>]*>\n(.*?)</textarea>', page.text,
                                   re.S).group(1))
    return {"text": text, "html": part, "csrf_token": _csrf(page.text), "base": _base(page.text)}


def test_the_list_shows_every_template_with_its_parts_and_the_version_in_use(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    page = client.get("/admin/plantillas")
    assert page.status_code == 200
    for name in ("keys_issued", "not_eligible", "_layout"):
        assert f'href="/admin/plantillas/{name}"' in page.text
    assert "La carpeta tiene un contenido que ninguna pasada ha usado" in page.text
    form = _form(client, "keys_issued")
    assert form["text"] == (folder / "keys_issued.txt.j2").read_text(encoding="utf-8")
    assert form["html"] == (folder / "keys_issued.html.j2").read_text(encoding="utf-8")


def test_saving_writes_the_files_records_a_version_and_says_which(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    before = folder_files(folder, ".j2")
    form["text"] = MARK + "\n" + form["text"]
    answer = client.post("/admin/plantillas/not_eligible", data=form)
    assert answer.status_code == 303
    assert (folder / "not_eligible.txt.j2").read_text(encoding="utf-8").startswith(MARK)
    assert (folder / "not_eligible.html.j2").read_bytes() == before["not_eligible.html.j2"]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    with console.store.transaction() as conn:
        listing = stored.listing(conn, "templates")
        number = stored.number_of(conn, "templates", content_hash(folder_files(folder, ".j2")))
    # the content replaced is kept too (v1), the new one is v2
    assert [v["number"] for v in listing] == [1, 2]
    assert listing[0]["hash"] == content_hash(before)
    assert number == 2 and answer.headers["location"].endswith("?guardado=2")
    page = client.get(answer.headers["location"])
    assert "las plantillas son ahora la versión 2" in page.text


def test_a_broken_template_is_refused_with_file_line_and_reason_and_nothing_is_written(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    before = folder_files(folder, ".j2")
    form["text"] = "Hola\n{{ nadie_definio_esto }}\n"
    answer = client.post("/admin/plantillas/not_eligible", data=form)
    assert answer.status_code == 422
    assert "no se guardó" in answer.text
    assert re.search(r"not_eligible\.txt\.j2, line 2: undefined", answer.text)
    assert str(folder) in answer.text and "mailbot-templates-edit" not in answer.text
    form["text"] = "{% if %}\n"
    answer = client.post("/admin/plantillas/not_eligible", data=form)
    assert answer.status_code == 422 and "syntax error" in answer.text
    assert folder_files(folder, ".j2") == before
    with console.store.transaction() as conn:
        assert stored.listing(conn, "templates") == []


def test_an_emptied_html_part_is_refused(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    form["html"] = ""
    before = folder_files(folder, ".j2")
    assert client.post("/admin/plantillas/not_eligible", data=form).status_code == 422
    assert folder_files(folder, ".j2") == before


def test_a_save_over_a_folder_changed_meanwhile_is_refused(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    hand = (folder / "under_review.txt.j2")
    hand.write_text(hand.read_text(encoding="utf-8") + "Editado a mano\n", encoding="utf-8")
    form["text"] = MARK + "\n" + form["text"]
    answer = client.post("/admin/plantillas/not_eligible", data=form)
    assert answer.status_code == 409
    assert MARK not in (folder / "not_eligible.txt.j2").read_text(encoding="utf-8")
    assert hand.read_text(encoding="utf-8").endswith("Editado a mano\n")


def test_the_preview_renders_every_sample_unsaved_with_the_html_in_a_sandboxed_frame(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "keys_issued")
    before = folder_files(folder, ".j2")
    form["text"] = MARK + "\n" + form["text"]
    form["html"] = form["html"].replace("{% block body %}", "{% block body %}<p>HTML-NUEVO</p>", 1)
    answer = client.post("/admin/plantillas/keys_issued/vista-previa", data=form)
    assert answer.status_code == 200
    assert answer.text.count(f"<pre class=\"text\">{MARK}") >= 2  # every sample case
    frames = re.findall(r"<iframe([^>]*)>", answer.text)
    assert frames and all('sandbox=""' in f and "srcdoc=" in f for f in frames)
    assert "&lt;p&gt;HTML-NUEVO&lt;/p&gt;" in answer.text  # only inside srcdoc, escaped
    assert "<p>HTML-NUEVO</p>" not in answer.text
    assert "script-src" not in answer.headers["content-security-policy"]
    assert folder_files(folder, ".j2") == before  # a preview writes nothing


def test_the_preview_on_a_stored_mail_shows_what_it_would_get_now(mail_desk):
    console = mail_desk.console
    with console.store.transaction() as conn:
        reference = conn.execute(sa.text(
            "SELECT m.reference FROM mails m JOIN outbox o ON o.mail = m.id "
            "WHERE o.template = 'keys_issued' ORDER BY m.id")).scalars().first()
        outbox = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar()
    assert reference
    client = console.logged_in("root", "admin")
    form = _form(client, "keys_issued")
    form["text"] = MARK + "\n" + form["text"]
    form["reference"] = reference
    answer = client.post("/admin/plantillas/keys_issued/vista-previa", data=form)
    assert answer.status_code == 200
    assert f"Vista previa con {reference}" in answer.text
    section = answer.text.split(f"Vista previa con {reference}", 1)[1]
    assert f"<pre class=\"text\">{MARK}" in section
    with console.store.transaction() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == outbox
    form["reference"] = "CLV-999999"
    answer = client.post("/admin/plantillas/keys_issued/vista-previa", data=form)
    assert answer.status_code == 200 and "No se puede hacer la vista previa" in answer.text


def test_the_diff_and_a_revert_write_the_old_text_back_as_a_new_version(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    original = (folder / "not_eligible.txt.j2").read_text(encoding="utf-8")
    form = _form(client, "not_eligible")
    form["text"] = MARK + "\n" + form["text"]
    assert client.post("/admin/plantillas/not_eligible", data=form).status_code == 303
    diff = client.get("/admin/plantillas/versiones/2")
    assert diff.status_code == 200
    assert f"+{MARK}" in html.unescape(diff.text)
    assert "templates v1/not_eligible.txt.j2" in html.unescape(diff.text)
    assert "Restaurar esta versión" not in diff.text  # v2 is the one in use
    old = client.get("/admin/plantillas/versiones/1")
    answer = client.post("/admin/plantillas/versiones/1/restaurar",
                         data={"csrf_token": _csrf(old.text), "base": _base(old.text)})
    assert answer.status_code == 303
    assert (folder / "not_eligible.txt.j2").read_text(encoding="utf-8") == original
    with console.store.transaction() as conn:
        listing = stored.listing(conn, "templates")
    # the old content's hash is version 1 already: the folder is back on it
    assert [v["number"] for v in listing] == [1, 2]
    assert content_hash(folder_files(folder, ".j2")) == listing[0]["hash"]
    page = client.get(answer.headers["location"])
    assert "Se restauró la versión 1" in page.text


def test_an_operator_gets_403_on_every_admin_template_path(desk):
    console, folder = desk
    client = console.logged_in("ana", "operator")
    before = folder_files(folder, ".j2")
    assert client.get("/admin/plantillas").status_code == 403
    assert client.get("/admin/plantillas/not_eligible").status_code == 403
    page = client.get("/")
    answer = client.post("/admin/plantillas/not_eligible",
                         data={"text": "x", "csrf_token": _csrf(page.text)})
    assert answer.status_code == 403
    assert client.post("/admin/plantillas/versiones/1/restaurar",
                       data={"csrf_token": _csrf(page.text)}).status_code == 403
    assert folder_files(folder, ".j2") == before


def test_a_save_without_the_csrf_token_is_refused(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    before = folder_files(folder, ".j2")
    form["text"] = MARK + "\n" + form["text"]
    del form["csrf_token"]
    assert client.post("/admin/plantillas/not_eligible", data=form).status_code == 403
    form["csrf_token"] = "forged"
    assert client.post("/admin/plantillas/not_eligible", data=form).status_code == 403
    assert folder_files(folder, ".j2") == before


def test_an_unknown_template_or_version_is_404_and_a_path_is_no_name(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    assert client.get("/admin/plantillas/no_existe").status_code == 404
    assert client.get("/admin/plantillas/versiones/9").status_code == 404
    assert client.get("/admin/plantillas/..%2Fconfig").status_code in (404, 422)


def test_a_revert_to_a_version_that_no_longer_passes_the_check_writes_nothing(desk):
    console, folder = desk
    files = folder_files(folder, ".j2")
    bad = dict(files, **{"not_eligible.txt.j2": b"{{ variable_que_ya_no_existe }}\n"})
    number = stored.record(console.store, "templates", content_hash(bad), bad)
    client = console.logged_in("root", "admin")
    page = client.get(f"/admin/plantillas/versiones/{number}")
    assert "variable_que_ya_no_existe" in html.unescape(page.text)  # its diff is shown
    answer = client.post(f"/admin/plantillas/versiones/{number}/restaurar",
                         data={"csrf_token": _csrf(page.text), "base": _base(page.text)})
    assert answer.status_code == 422
    assert "no pasa la revisión" in answer.text and "undefined" in answer.text
    assert folder_files(folder, ".j2") == files


def test_two_saves_from_the_same_page_the_second_is_a_conflict(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    first = dict(form, text="Primera\n" + form["text"])
    second = dict(form, text="Segunda\n" + form["text"])
    assert client.post("/admin/plantillas/not_eligible", data=first).status_code == 303
    assert client.post("/admin/plantillas/not_eligible", data=second).status_code == 409
    assert (folder / "not_eligible.txt.j2").read_text(encoding="utf-8").startswith("Primera")


def test_a_running_bot_picks_up_the_saved_version_at_its_next_pass(desk):
    console, folder = desk
    config = console.app.state.web.config
    app = App(config=config, rules=open_rules(config), store=console.store,
              renderer=open_renderer(config), source=open_source(config),
              sink=CapturingSink(), read_workers=0)
    assert app.renderer.templates_dir == folder
    versions.remember(app)
    assert versions.refresh(app).templates.number == 1  # the folder as the bot started
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    form["text"] = form["text"].replace("{% block body %}\n", "{% block body %}\n" + MARK + "\n")
    assert MARK in form["text"]
    assert client.post("/admin/plantillas/not_eligible", data=form).status_code == 303
    assert versions.refresh(app).templates.number == 2  # the next pass: the console's save
    rendered = app.renderer.render("not_eligible", sample_context("not_eligible", app.rules))
    assert MARK in rendered.text


def test_the_shipped_templates_are_never_written_by_the_console(console):
    assert console.app.state.web.config.bot.templates_dir == str(ROOT / "templates")
    before = folder_files(ROOT / "templates", ".j2")
    client = console.logged_in("root", "admin")
    assert 'id="shipped"' in client.get("/admin/plantillas").text
    form = _form(client, "not_eligible")
    form["text"] = MARK + "\n" + form["text"]
    answer = client.post("/admin/plantillas/not_eligible", data=form)
    assert answer.status_code == 422 and "No se guardó nada" in answer.text
    assert folder_files(ROOT / "templates", ".j2") == before
    with console.store.transaction() as conn:
        assert stored.listing(conn, "templates") == []


def test_the_json_twins_are_for_admins_only(desk):
    console, folder = desk
    console.add_user("ana", "operator")
    console.add_user("root", "admin")
    operator = {"authorization": f"Bearer {console.token('ana')}"}
    admin = {"authorization": f"Bearer {console.token('root')}"}
    client = console.client()
    assert client.get("/api/v1/admin/templates", headers=operator).status_code == 403
    assert client.get("/api/v1/admin/templates/not_eligible",
                      headers=operator).status_code == 403
    listing = client.get("/api/v1/admin/templates", headers=admin).json()
    assert {"name": "not_eligible", "public": True, "text": True, "html": True} in listing[
        "templates"]
    assert listing["hash"] == content_hash(folder_files(folder, ".j2"))
    one = client.get("/api/v1/admin/templates/not_eligible", headers=admin).json()
    assert one["text"] == (folder / "not_eligible.txt.j2").read_text(encoding="utf-8")
    assert client.get("/api/v1/admin/templates/no_existe", headers=admin).status_code == 404


def test_the_preview_of_a_broken_edit_shows_the_error_of_each_sample_and_writes_nothing(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client, "not_eligible")
    before = folder_files(folder, ".j2")
    form["text"] = "Hola\n{{ nadie_definio_esto }}\n"
    answer = client.post("/admin/plantillas/not_eligible/vista-previa", data=form)
    assert answer.status_code == 200
    assert re.search(r'<p class="error">[^<]*line 2: undefined', answer.text)
    assert "nadie_definio_esto" in html.unescape(answer.text)  # the textarea keeps the edit
    assert folder_files(folder, ".j2") == before
