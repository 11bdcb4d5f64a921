"""The registry and key pool page (`/admin/registro`) over HTTP, on SQLite and PostgreSQL: upload,
preview, a confirm that imports exactly the previewed file, pool levels with the empty systems,
CSV/XLSX downloads that import back unchanged, and who may do it (admins only, CSRF, a bounded
upload)."""

from __future__ import annotations

import csv
import html
import io
import re
from types import SimpleNamespace

import openpyxl
from test_dry_run import every_row
from web_console import CSRF_INPUT

from mailbot.ops import import_preview as engine
from mailbot.ops.web.views.admin_registry import uploads_dir

HEADER = "serial,system,company,contact_email,purchase_date,modality,support_until,users\n"
OLD = "AAAA-BBBB-CCCC-0002,CONTPAQ i Bancos,Antes SA,b@example.mx,2012-01-01,fisico,,1\n"
NEW = "AAAA-BBBB-CCCC-0002,CONTPAQ i Bancos,Después SA,b@example.mx,2012-01-01,fisico,,3\n"
ADD = "AAAA-BBBB-CCCC-0003,Contabilidad,=cmd|' /C calc'!A0,,2013-05-06,electronico,,\n"
BAD = "AAAA-BBBB-CCCC-0004,CONTPAQ i Bancos,Mala SA,d@example.mx,2012-13-01,fisico,,1\n"
CSV = "text/csv"


def _csrf(page: str) -> str:
    return CSRF_INPUT.findall(page)[-1]


def _hidden(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


def _upload(client, text: str, *, tipo: str = "registro", name: str = "registro.csv",
            csrf: str | None = None):
    token = csrf if csrf is not None else _csrf(client.get("/admin/registro").text)
    return client.post("/admin/registro/vista-previa", data={"csrf_token": token, "tipo": tipo},
                       files={"file": (name, text.encode("utf-8"), CSV)})


def _confirm_form(page: str) -> dict[str, str]:
    return {name: _hidden(page, name) for name in ("csrf_token", "tipo", "sha256", "nombre",
                                                    "digest")}


def _seed(console) -> None:
    client = console.logged_in("seed", "admin")
    page = _upload(client, HEADER + OLD)
    assert client.post("/admin/registro/confirmar", data=_confirm_form(page.text)
                       ).status_code == 303


def test_an_admin_uploads_sees_the_preview_confirms_and_the_import_is_what_was_shown(console):
    _seed(console)
    client = console.logged_in("root", "admin")
    rows = every_row(console.store)
    page = _upload(client, HEADER + NEW + ADD)
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    counts = re.search(r'<ul class="counts" id="counts">(.*?)</ul>', page.text, re.S).group(1)
    assert re.findall(r"<li>([^<]*)</li>", counts) == ["Altas: 1", "Cambios: 1",
                                                       "Sin cambios: 0", "Rechazadas: 0"]
    assert "Antes SA" in page.text and "Después SA" in page.text
    assert "=cmd|&#39; /C calc&#39;!A0" in page.text  # escaped, shown as text
    assert every_row(console.store) == rows  # a preview writes nothing
    done = client.post("/admin/registro/confirmar", data=_confirm_form(page.text))
    assert done.status_code == 303
    after = client.get(done.headers["location"])
    assert "Se importó registro.csv al registro: 1 altas, 1 cambios." in after.text
    with console.store.transaction() as conn:
        changed = console.store.licence(conn, "AAAA-BBBB-CCCC-0002")
        added = console.store.licence(conn, "AAAA-BBBB-CCCC-0003")
    assert (changed.company, changed.users) == ("Después SA", 3)
    assert added.system == "CONTPAQ i Contabilidad"
    assert list(uploads_dir(console.app.state.web).iterdir()) == []  # the kept file is gone


def test_a_file_with_bad_rows_shows_line_column_reason_and_fix_and_cannot_be_confirmed(console):
    client = console.logged_in("root", "admin")
    page = _upload(client, HEADER + ADD + BAD)
    assert page.status_code == 422
    assert "no se puede importar así (todo o nada)" in page.text
    row = re.search(r'<tr class="blocking">(.*?)</tr>', page.text, re.S).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row) == [
        "3", "purchase_date", "&#39;2012-13-01&#39; no es una fecha",
        "escriba la fecha como AAAA-MM-DD, p. ej. 2011-07-15"]
    assert 'action="/admin/registro/confirmar"' not in page.text


def _refused_rows(page: str) -> list[list[str]]:
    table = re.search(r'<table class="refuse">(.*?)</table>', page, re.S).group(1)
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]]


def _no_english_left(page: str, preview: engine.Preview) -> None:
    """None of the CLI's words for these refusals is on the page."""
    for refusal in preview.refuse:
        for english in (refusal.reason, refusal.fix):
            assert html.escape(english) not in page, english
    for word in ("is not", "write ", "e.g.", "also on line", "skipped", "already"):
        assert word not in page, word


def test_refused_rows_say_why_and_the_fix_in_spanish_under_the_file_s_own_headers(console):
    with console.store.transaction() as conn:
        console.store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Bancos", key="K-0")])
    admin = console.logged_in("root", "admin")
    rules = console.app.state.web.rules
    registry = ("Serial,System,Company,Contact_Email,Purchase date (YYYY-MM-DD),Modality,"
                "Support until,Users\n" + ADD + BAD
                + "AAAA-BBBB,CONTPAQ i Bancos,Corta SA,,2012-01-01,fisico,,\n"
                + "AAAA-BBBB-CCCC-0005,Sistema Fantasma,Otra SA,,2012-01-01,fisico,,\n")
    page = _upload(admin, registry)
    assert page.status_code == 422
    [date, serial, system] = _refused_rows(page.text)
    assert date == ["3", "Purchase date (YYYY-MM-DD)", "&#39;2012-13-01&#39; no es una fecha",
                    "escriba la fecha como AAAA-MM-DD, p. ej. 2011-07-15"]
    assert serial == ["4", "Serial", "&#39;AAAA-BBBB&#39; no es un número de serie",
                      "escriba cuatro grupos de cuatro letras o dígitos, "
                      "p. ej. AAAA-BBBB-CCCC-DDDD"]
    assert system[:2] == ["5", "System"]
    assert re.fullmatch(r"&#39;Sistema Fantasma&#39; no es un sistema del catálogo "
                        r"\(\S+catalogue\.toml\)", system[2]), system[2]
    assert system[3] == ("escriba uno de sus nombres o alias, o primero agregue el sistema "
                         "al catálogo")
    _no_english_left(page.text, engine.preview(console.store, rules, engine.REGISTRY,
                                               "registro.csv", registry.encode()))

    keys = "System,Key\nBancos,K-0\nBancos,K-1\nComercial,K-1\n"
    page = _upload(admin, keys, tipo="claves", name="claves.csv")
    assert page.status_code == 422
    assert _refused_rows(page.text) == [
        ["2", "Key", "ya está entre las claves disponibles, sin entregar", "esta fila se omite"],
        ["4", "Key", "&#39;K-1&#39; también está en la línea 3",
         "cada clave puede aparecer una sola vez: quite una de las dos filas"]]
    _no_english_left(page.text, engine.preview(console.store, rules, engine.KEYS, "claves.csv",
                                               keys.encode()))


def test_a_confirm_names_only_the_previewed_file_and_a_preview_the_store_outgrew_is_refused(
        console):
    client = console.logged_in("root", "admin")
    page = _upload(client, HEADER + ADD)
    form = _confirm_form(page.text)
    rows = every_row(console.store)
    other = {**form, "sha256": "0" * 64}  # a file that was never previewed
    refused = client.post("/admin/registro/confirmar", data=other)
    assert refused.status_code == 409 and "no es el de la vista previa" in refused.text
    kept = uploads_dir(console.app.state.web) / form["sha256"]
    kept.write_bytes(kept.read_bytes() + b"AAAA-BBBB-CCCC-0009,Bancos,X,,2012-01-01,fisico,,\n")
    swapped = client.post("/admin/registro/confirmar", data=form)  # its bytes no longer match
    assert swapped.status_code == 409
    assert every_row(console.store) == rows
    page = _upload(client, HEADER + ADD)
    form = _confirm_form(page.text)
    _seed(console)  # meanwhile someone imports another registry
    with console.store.transaction() as conn:
        console.store.upsert_licences(conn, [SimpleNamespace(
            serial="AAAA-BBBB-CCCC-0003", system="CONTPAQ i Bancos", company="Otra",
            contact_email=None, purchase_date=__import__("datetime").date(2012, 1, 1),
            modality="fisico", support_until=None, users=None)])
    rows = every_row(console.store)
    outgrown = client.post("/admin/registro/confirmar", data=form)
    assert outgrown.status_code == 409
    assert "cambiaron desde esta vista previa: no se importó nada" in outgrown.text
    assert every_row(console.store) == rows


def test_operators_get_403_and_every_form_needs_its_csrf_token(console):
    operator = console.logged_in("ana", "operator")
    assert operator.get("/admin/registro").status_code == 403
    assert operator.get("/admin/registro/exportar/registro.csv").status_code == 403
    assert _upload(operator, HEADER + ADD, csrf="x").status_code == 403
    assert operator.get("/api/v1/admin/registry/levels").status_code == 403
    token = console.token("ana")
    assert operator.get("/api/v1/admin/registry/levels", headers={
        "Authorization": f"Bearer {token}"}).status_code == 403
    admin = console.logged_in("root", "admin")
    rows = every_row(console.store)
    assert _upload(admin, HEADER + ADD, csrf="not-the-token").status_code == 403
    page = _upload(admin, HEADER + ADD)
    form = {**_confirm_form(page.text), "csrf_token": "not-the-token"}
    assert admin.post("/admin/registro/confirmar", data=form).status_code == 403
    assert every_row(console.store) == rows


def test_an_upload_larger_than_the_bound_is_refused_before_it_is_read(console):
    console.app.state.web.max_upload_bytes = 2_000
    admin = console.logged_in("root", "admin")
    big = HEADER + ADD * 40
    assert len(big.encode()) > 2_000
    answer = _upload(admin, big)
    assert answer.status_code == 413 and "pesa más de" in answer.text
    assert list(uploads_dir(console.app.state.web).iterdir()) == []
    assert _upload(admin, HEADER + ADD).status_code == 200  # below it: fine


def test_levels_list_every_system_with_the_empty_ones_marked_in_html_and_json(console):
    with console.store.transaction() as conn:
        console.store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Bancos", key="K-1")])
    admin = console.logged_in("root", "admin")
    page = admin.get("/admin/registro").text
    rules = console.app.state.web.rules
    for system in rules.catalogue.names:
        assert f"<td>{system}</td>" in page
    assert re.search(r'<tr class="empty">\s*<td>Aspel FACTURE</td>', page)
    assert not re.search(r'<tr class="empty">\s*<td>CONTPAQ i Bancos</td>', page)
    assert "Sin claves: las solicitudes esperan" in page
    token = console.token("root")
    levels = admin.get("/api/v1/admin/registry/levels",
                       headers={"Authorization": f"Bearer {token}"}).json()["levels"]
    by_system = {level["system"]: level for level in levels}
    assert [level["system"] for level in levels] == list(rules.catalogue.names)
    assert by_system["CONTPAQ i Bancos"] | {} == {
        "system": "CONTPAQ i Bancos", "free": 1, "assigned": 0, "in_catalogue": True,
        "low": True, "empty": False}
    assert by_system["Aspel FACTURE"]["free"] == 0 and by_system["Aspel FACTURE"]["empty"]


def test_a_key_file_preview_and_confirm_change_the_levels(console):
    with console.store.transaction() as conn:
        console.store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Bancos", key="K-1")])
    admin = console.logged_in("root", "admin")
    page = _upload(admin, "system,key\nBancos,K-1\nAspel FACTURE,K-2\nFACTURE,K-3\n",
                   tipo="claves", name="claves.csv")
    assert page.status_code == 200
    assert "Altas: 2" in page.text and "Rechazadas: 1" in page.text
    assert "ya está entre las claves disponibles, sin entregar" in page.text
    done = admin.post("/admin/registro/confirmar", data=_confirm_form(page.text))
    after = admin.get(done.headers["location"]).text
    assert ("Se importó claves.csv a las claves disponibles: 2 claves agregadas, 1 omitidas"
            in after)
    assert not re.search(r'<tr class="empty">\s*<td>Aspel FACTURE</td>', after)


def test_the_json_preview_of_an_upload_with_a_token(console):
    console.add_user("root", "admin")
    token = console.token("root")
    client = console.client()
    answer = client.post("/api/v1/admin/registry/preview", data={"kind": "registry"},
                         files={"file": ("r.csv", (HEADER + ADD + BAD).encode(), CSV)},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    out = answer.json()
    assert out["blocked"] is True and out["counts"]["add"] == 1
    assert out["refuse"] == [{  # the CLI's English, and the page's Spanish beside it
        "line": 3, "column": "purchase_date", "header": "purchase_date", "blocking": True,
        "reason": "'2012-13-01' is not a date", "fix": "write YYYY-MM-DD, e.g. 2011-07-15",
        "reason_es": "'2012-13-01' no es una fecha",
        "fix_es": "escriba la fecha como AAAA-MM-DD, p. ej. 2011-07-15"}]


def test_downloads_are_attachments_with_formulas_neutralised_and_import_back_unchanged(console):
    admin = console.logged_in("root", "admin")
    page = _upload(admin, HEADER + OLD + ADD)
    admin.post("/admin/registro/confirmar", data=_confirm_form(page.text))
    data = {}
    for fmt in ("csv", "xlsx"):
        answer = admin.get(f"/admin/registro/exportar/registro.{fmt}")
        assert answer.status_code == 200
        assert answer.headers["content-disposition"].startswith(
            'attachment; filename="registro-')
        assert answer.headers["x-content-type-options"] == "nosniff"
        data[fmt] = answer.content
    rows = list(csv.reader(io.StringIO(data["csv"].decode("utf-8-sig"))))
    assert rows[2][2] == "'=cmd|' /C calc'!A0"
    sheet = openpyxl.load_workbook(io.BytesIO(data["xlsx"])).active
    formula = sheet.cell(row=3, column=3)
    assert formula.value == "=cmd|' /C calc'!A0" and formula.quotePrefix
    for fmt, payload in data.items():
        token = _csrf(admin.get("/admin/registro").text)
        again = admin.post("/admin/registro/vista-previa", data={"csrf_token": token,
                                                                 "tipo": "registro"},
                           files={"file": (f"registro.{fmt}", payload, CSV)})
        assert "Altas: 0" in again.text and "Cambios: 0" in again.text, fmt
        assert "Sin cambios: 2" in again.text
    issued = admin.get("/admin/registro/exportar/claves-emitidas.xlsx")
    assert issued.status_code == 200 and issued.headers["content-type"].startswith(
        "application/vnd.openxmlformats")
    assert admin.get("/admin/registro/exportar/otra-cosa.csv").status_code == 404
