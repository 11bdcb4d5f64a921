"""The rules admin page (`/admin/reglas`) over HTTP, on SQLite and PostgreSQL: each form checked
field by field before anything is written (a bad date, a clash of spellings), the dry run of
the stored mails before saving (exactly the answers that change), the save recorded as a new
version with the admin's comments kept, the 409 of a folder changed meanwhile, revert, and who
may do it (admins only, CSRF on every form)."""

from __future__ import annotations

import html
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT
from web_console import CSRF_INPUT, Console, build_console, empty_accounts
from web_fixtures import MailDesk, build_mail_desk, desk_material

from mailbot.ruleset import load_rules
from mailbot.run.versions import content_hash, folder_files
from mailbot.store import versions as stored

__all__ = ["desk_material"]


@pytest.fixture
def desk(store, tmp_path) -> tuple[Console, Path]:
    """A console whose rules folder is a test's own copy of the project's."""
    empty_accounts(store)
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder)
    yield build_console(store, tmp_path, rules=folder), folder
    empty_accounts(store)


@pytest.fixture
def mail_rules_desk(store, tmp_path, desk_material) -> tuple[Console, Path, MailDesk]:
    """The demo inbox decided by the real pipeline (run_once), and a console over the same
    store and mailbox whose rules folder is a copy."""
    empty_accounts(store)
    mails = build_mail_desk(store, tmp_path / "desk", desk_material)
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder)
    console = build_console(store, tmp_path / "desk",
                            '[source]\npath = "demo/inbox"\n[sink]\npath = "outbox"\n',
                            rules=folder)
    yield console, folder, mails
    mails.app.source.close()
    empty_accounts(store)


def _form(client) -> dict[str, str]:
    """Every field of the rules form as the page fills it."""
    page = client.get("/admin/reglas")
    assert page.status_code == 200, page.text
    return _fields(page.text)


def _fields(page: str) -> dict[str, str]:
    form = page[page.index('class="rules-edit"'):]
    form = form[:form.index("</form>")]
    out = {}
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and ('type="checkbox"' not in tag or " checked" in tag):
            out[html.unescape(name.group(1))] = html.unescape(value.group(1) if value else "")
    for name, text in re.findall(r'<textarea name="([^"]+)"[^>]*>\n(.*?)</textarea>', form,
                                 re.S):
        out[name] = html.unescape(text)
    for name, options in re.findall(r'<select name="([^"]+)">(.*?)</select>', form, re.S):
        out[html.unescape(name)] = re.search(r'<option value="([^"]+)" selected', options).group(1)
    return out


def _preview(client, form: dict[str, str]):
    return client.post("/admin/reglas/vista-previa", data=form)


def _previewed(page: str) -> dict[str, str]:
    """The preview page's form, as its "Guardar estos cambios" button submits it."""
    return _fields(page)


def _trimestral(folder: Path) -> str:
    text = (folder / "free_update.toml").read_text(encoding="utf-8")
    return re.search(r'name = "Trimestral"\nprice = (\S+)', text).group(1)


def test_the_page_shows_the_rules_as_fields_and_links_from_the_admin_home(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    assert 'href="/admin/reglas"' in client.get("/admin").text
    form = _form(client)
    assert form["eligible_from"] == "2011-07-01"
    assert form["policy-0-price"] == "2500"
    assert form["system-2-name"] == "CONTPAQ i Nóminas"
    assert form["system-2-aliases"].splitlines() == ["Nóminas", "Nomina", "CONTPAQi Nomina"]
    assert form["day-lunes"] == "09:00-18:00" and form["max_unlocks_per_period"] == "2"
    assert form["unlock-suscripcion-1-policy"] == "auto"
    assert 'type="date"' in client.get("/admin/reglas").text


def test_a_price_with_cents_is_previewed_saved_and_recorded_keeping_the_comments(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    before = folder_files(folder, ".toml")
    form = _form(client)
    form["policy-0-price"] = "2,500.50"
    answer = _preview(client, form)
    assert answer.status_code == 200, answer.text
    assert "Vista previa de los cambios" in answer.text
    assert "ninguna respuesta cambia" in answer.text.lower()  # no stored mail: nothing changes
    assert folder_files(folder, ".toml") == before  # a preview writes nothing
    saved = client.post("/admin/reglas", data=_previewed(answer.text))
    assert saved.status_code == 303, saved.text
    assert _trimestral(folder) == "2500.50"
    after = folder_files(folder, ".toml")
    assert [p for p in after if after[p] != before[p]] == ["free_update.toml"]
    text = after["free_update.toml"].decode("utf-8")
    assert "# Renewal of the remote support policy, per system." in text  # comments kept
    assert load_rules(folder).free_update.installation.policies[0].price == Decimal("2500.50")
    with console.store.transaction() as conn:
        listing = stored.listing(conn, "rules")
    assert [v["number"] for v in listing] == [1, 2]  # the content replaced, then the new one
    assert listing[0]["hash"] == content_hash(before)
    assert listing[1]["hash"] == content_hash(after)
    assert saved.headers["location"].endswith("?guardado=2")
    assert "las reglas son ahora la versión 2" in client.get(saved.headers["location"]).text


def test_a_bad_date_is_refused_next_to_its_field_and_nothing_is_written(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    before = folder_files(folder, ".toml")
    form = _form(client)
    form["eligible_from"] = "01/07/2011"
    form["policy-1-price"] = "4000.505"
    for path in ("/admin/reglas/vista-previa", "/admin/reglas"):
        answer = client.post(path, data=form)
        assert answer.status_code == 422
        assert re.search(r'id="error-eligible_from">Escriba la fecha como AAAA-MM-DD',
                         answer.text)
        assert 'id="error-policy-1-price">' in answer.text
        assert 'value="01/07/2011"' in answer.text  # the admin's text is kept to correct it
    assert folder_files(folder, ".toml") == before
    with console.store.transaction() as conn:
        assert stored.listing(conn, "rules") == []


def test_an_alias_that_clashes_without_accents_or_case_is_refused(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    before = folder_files(folder, ".toml")
    form = _form(client)
    new = int(form["system_rows"]) - 1  # the blank row adds a system
    form[f"system-{new}-name"] = "CONTPAQ i Nómina Plus"
    form[f"system-{new}-aliases"] = "nomina"  # "Nomina" is an alias of CONTPAQ i Nóminas
    answer = _preview(client, form)
    assert answer.status_code == 422
    message = re.search(rf'id="error-system-{new}-aliases">([^<]*)<', answer.text).group(1)
    assert "CONTPAQ i Nóminas" in html.unescape(message) and "acentos" in message
    assert folder_files(folder, ".toml") == before


def test_a_system_added_and_one_removed_are_written_into_the_catalogue(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client)
    new = int(form["system_rows"]) - 1
    form[f"system-{new}-name"] = "Aspel SAE"
    form[f"system-{new}-aliases"] = "SAE\nAspel-SAE 9"
    form["system-3-remove"] = "on"  # CONTPAQ i Bancos
    answer = _preview(client, form)
    assert answer.status_code == 200, answer.text
    assert client.post("/admin/reglas", data=_previewed(answer.text)).status_code == 303
    names = [s.name for s in load_rules(folder).catalogue.systems]
    assert "Aspel SAE" in names and "CONTPAQ i Bancos" not in names
    assert "# The systems a request may name." in (folder / "catalogue.toml").read_text("utf-8")


def test_a_save_over_a_folder_changed_meanwhile_is_409_and_keeps_the_hand_edit(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client)
    form["policy-0-price"] = "2600"
    answer = _preview(client, form)
    hand = folder / "kinds.toml"
    hand.write_text(hand.read_text(encoding="utf-8") + "# editado a mano\n", encoding="utf-8")
    refused = client.post("/admin/reglas", data=_previewed(answer.text))
    assert refused.status_code == 409
    assert "Alguien cambió las reglas" in refused.text
    assert _trimestral(folder) == "2500"
    assert hand.read_text(encoding="utf-8").endswith("# editado a mano\n")


def test_a_save_of_other_values_than_the_previewed_shows_their_preview_instead(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    form = _form(client)
    form["policy-0-price"] = "2600"
    previewed = _previewed(_preview(client, form).text)
    previewed["policy-0-price"] = "2700"
    answer = client.post("/admin/reglas", data=previewed)
    assert answer.status_code == 200
    assert "no son los de la vista previa" in answer.text
    assert _trimestral(folder) == "2500"


def test_the_preview_lists_exactly_the_stored_answers_a_new_eligibility_date_changes(
        mail_rules_desk):
    console, folder, _mails = mail_rules_desk
    with console.store.transaction() as conn:
        # AAAA-BBBB-CCCC-FFFF was bought on 2011-08-22, the earliest of the issued serials
        [newly] = conn.execute(sa.text(
            "SELECT DISTINCT m.reference FROM mails m JOIN requests r ON r.mail = m.id "
            "WHERE r.serial = 'AAAA-BBBB-CCCC-FFFF' AND r.outcome = 'issued'")).scalars().all()
        # and the answer that was not eligible already names the date in its text
        [dated] = conn.execute(sa.text(
            "SELECT reference FROM mails WHERE outcome = 'not_eligible'")).scalars().all()
        outbox = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar()
    client = console.logged_in("root", "admin")
    form = _form(client)
    form["eligible_from"] = "2011-08-23"
    answer = _preview(client, form)
    assert answer.status_code == 200, answer.text
    assert "Este cambio altera 2 respuestas:" in answer.text
    section = answer.text[answer.text.index('id="preview"'):answer.text.index("</section>")]
    assert sorted(re.findall(r'href="/correos/([^"]+)"', section)) == sorted([newly, dated])
    rows = {re.search(r'href="/correos/([^"]+)"', row).group(1): row
            for row in re.findall(r"<tr>\s*<td><a.*?</tr>", section, re.S)}
    before, after = re.findall(r"<td>([^<]+)<br>", html.unescape(rows[newly]))
    assert before == "clave emitida" and "no aplica" in after.split(", ")
    assert "+   partir del 23 de agosto de 2011" in html.unescape(section)
    with console.store.transaction() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == outbox
    form["eligible_from"] = "2011-07-01"
    form["max_unlocks_per_period"] = "3"  # no stored unlock is near the cap
    quiet = _preview(client, form)
    assert quiet.status_code == 200 and "Ninguna respuesta cambia" in quiet.text


def test_renaming_a_system_whose_keys_are_in_the_pool_is_flagged_in_the_preview(
        mail_rules_desk):
    console, folder, _mails = mail_rules_desk
    with console.store.transaction() as conn:
        free, used = console.store.pool_counts(conn)["CONTPAQ i Bancos"]
    client = console.logged_in("root", "admin")
    form = _form(client)
    assert form["system-3-name"] == "CONTPAQ i Bancos"
    form["system-3-name"] = "CONTPAQ i Bancos Plus"
    answer = _preview(client, form)
    assert answer.status_code == 200, answer.text
    [warning] = re.findall(r'<p class="warn orphan">([^<]*)</p>', answer.text)
    assert warning.startswith("CONTPAQ i Bancos sale del catálogo")
    assert f"{free} claves libres y {used} asignadas" in warning


def test_a_version_diff_and_a_revert_write_the_old_rules_back(desk):
    console, folder = desk
    client = console.logged_in("root", "admin")
    original = folder_files(folder, ".toml")
    form = _form(client)
    form["policy-0-price"] = "2600"
    assert client.post("/admin/reglas", data=_previewed(_preview(client, form).text)
                       ).status_code == 303
    diff = html.unescape(client.get("/admin/reglas/versiones/2").text)
    assert "-price = 2500" in diff and "+price = 2600" in diff
    old = client.get("/admin/reglas/versiones/1")
    answer = client.post("/admin/reglas/versiones/1/restaurar",
                         data={"csrf_token": CSRF_INPUT.findall(old.text)[-1],
                               "base": re.search(r'name="base" value="([0-9a-f]+)"',
                                                 old.text).group(1)})
    assert answer.status_code == 303
    assert folder_files(folder, ".toml") == original
    assert "Se restauró la versión 1" in client.get(answer.headers["location"]).text


def test_an_operator_gets_403_and_a_form_without_csrf_is_refused(desk):
    console, folder = desk
    before = folder_files(folder, ".toml")
    admin = console.logged_in("root", "admin")
    form = _form(admin)
    form["policy-0-price"] = "1"
    del form["csrf_token"]
    assert admin.post("/admin/reglas/vista-previa", data=form).status_code == 403
    assert admin.post("/admin/reglas", data=dict(form, csrf_token="forged")).status_code == 403
    operator = console.logged_in("ana", "operator")
    token = CSRF_INPUT.findall(operator.get("/").text)[-1]
    assert operator.get("/admin/reglas").status_code == 403
    assert operator.post("/admin/reglas", data=dict(form, csrf_token=token)).status_code == 403
    assert operator.post("/admin/reglas/versiones/1/restaurar",
                         data={"csrf_token": token}).status_code == 403
    headers = {"authorization": f"Bearer {console.token('ana')}"}
    assert console.client().get("/api/v1/admin/rules", headers=headers).status_code == 403
    assert folder_files(folder, ".toml") == before


def test_the_json_twin_gives_the_form_state_and_the_preview_to_admins(desk):
    console, folder = desk
    console.add_user("root", "admin")
    headers = {"authorization": f"Bearer {console.token('root')}"}
    client = console.client()
    state = client.get("/api/v1/admin/rules", headers=headers).json()
    assert state["hash"] == content_hash(folder_files(folder, ".toml"))
    assert state["values"]["eligible_from"] == "2011-07-01"
    fields = dict(state["fields"], eligible_from="2011-13-01")
    refused = client.post("/api/v1/admin/rules/preview", headers=headers, json=fields)
    assert refused.status_code == 422 and "eligible_from" in refused.json()["errors"]
    fields["eligible_from"] = "2011-08-01"
    found = client.post("/api/v1/admin/rules/preview", headers=headers, json=fields).json()
    assert found["changes"] == [] and found["mails"] == 0


def test_the_shipped_rules_are_never_written_by_the_console(console):
    before = folder_files(ROOT / "rules", ".toml")
    client = console.logged_in("root", "admin")
    page = client.get("/admin/reglas")
    assert 'id="shipped"' in page.text
    form = _fields(page.text)
    form["policy-0-price"] = "2600"
    answer = client.post("/admin/reglas", data=_previewed(_preview(client, form).text))
    assert answer.status_code == 422 and "No se guardó nada" in answer.text
    assert folder_files(ROOT / "rules", ".toml") == before
