"""The dry-run page (`/admin/ensayo`) and its JSON twin over HTTP, on SQLite and PostgreSQL:
uploaded .eml files and stored mails decided with the rules and templates in use on a snapshot
(every table row for row as it was), each input that cannot be decided named in Spanish, the
comparison with a stored rules version listing exactly the answers it changes, and who may do
it (admins only, CSRF on the form) (issue 12, §1, the console half)."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT
from test_dry_run import every_row
from web_console import ACCOUNT_TABLES, CSRF_INPUT, Console, build_console, empty_accounts
from web_fixtures import desk_material, mail_desk

from mailbot.ops.cli import main
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run.versions import content_hash, folder_files
from mailbot.run.wiring import open_rules
from mailbot.store import versions as stored

__all__ = ["desk_material", "mail_desk"]

PAGE = "/admin/ensayo"
BANNER = "Ensayo: nada se guardó, no se asignó ninguna clave, no se envió ni se archivó nada."


@pytest.fixture
def fresh_desk(store, tmp_path):
    """A console over the demo's registry and keys, its mails not yet received: the .eml files
    an admin would upload."""
    empty_accounts(store)
    files = write_demo(tmp_path / "demo")
    console = build_console(store, tmp_path, '[source]\npath = "demo/inbox"\n'
                                             '[sink]\npath = "outbox"\n')
    rules = open_rules(console.app.state.web.config)
    with store.transaction() as conn:
        store.upsert_licences(conn, read_registry(files.registry_csv, rules.catalogue))
        store.add_keys(conn, read_keys(files.keys_csv, rules.catalogue))
    yield console, files
    empty_accounts(store)


def _rows(store) -> dict[str, list]:
    """Every row of every table but the console's accounts (a login or a token's use stamps
    those): what a dry run must leave as it was."""
    return {t: rows for t, rows in every_row(store).items() if t not in ACCOUNT_TABLES}


def _csrf(client, path: str = PAGE) -> str:
    return CSRF_INPUT.findall(client.get(path).text)[-1]


def _emls(files) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{m.name}.eml", m.path.read_bytes(), "message/rfc822"))
            for m in files.mails]


def _articles(page: str) -> dict[str, str]:
    """Each decided mail's block, by the name its heading shows (file name or reference)."""
    out = {}
    for block in page.split('<article class="dry-mail">')[1:]:
        name = re.search(r"<h2>(?:<a [^>]*>)?([^<]+)", block).group(1).strip()
        out[html.unescape(name)] = block
    return out


def test_uploaded_demo_mails_are_decided_and_shown_and_no_row_changes(fresh_desk):
    console, files = fresh_desk
    client = console.logged_in("root", "admin")
    assert f'href="{PAGE}"' in client.get("/admin").text
    rows = _rows(console.store)
    answer = client.post(PAGE, data={"csrf_token": _csrf(client)}, files=_emls(files))
    assert answer.status_code == 200, answer.text
    assert _rows(console.store) == rows
    assert BANNER in answer.text
    articles = _articles(answer.text)
    assert len(articles) == len(files.mails) == 12
    issued = [a for a in articles.values() if re.search(r'<strong class="outcome">clave emitida<', a)]
    assert issued
    block = issued[0]
    assert "<code>registry.known</code>" in block and "<code>keys.assign</code>" in block
    assert re.search(r'<span class="template">keys_issued</span> → <span class="to">[^<]+@', block)
    assert "<summary>ver texto</summary>" in block
    assert '<iframe class="body" sandbox="" ' in block
    assert re.search(r"Decidido el \d{4}-\d\d-\d\d \d\d:\d\d (CST|CDT)", answer.text)
    assert "script-src" not in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    with console.store.transaction() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mails")).scalar() == 0


def test_an_unknown_reference_and_a_file_that_is_no_mail_are_named_and_the_rest_decided(
        fresh_desk):
    console, files = fresh_desk
    client = console.logged_in("root", "admin")
    uploads = [*_emls(files)[:1], ("files", ("foto.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))]
    answer = client.post(PAGE, data={"csrf_token": _csrf(client),
                                     "references": "CLV-999999, no-es-referencia"},
                         files=uploads)
    assert answer.status_code == 200, answer.text
    problems = html.unescape(answer.text[answer.text.index('id="input-problems"'):])
    problems = problems[:problems.index("</div>")]
    assert "<strong>foto.png</strong>: este archivo no es un correo (.eml)" in problems
    assert ("<strong>CLV-999999</strong>: ningún correo guardado tiene esta referencia"
            in problems)
    assert "<strong>no-es-referencia</strong>: esto no es una referencia" in problems
    assert list(_articles(answer.text)) == [f"{files.mails[0].name}.eml"]


def test_stored_mails_by_reference_are_decided_again_as_their_pass_did(mail_desk):
    console = mail_desk.console
    with console.store.transaction() as conn:
        issued = conn.execute(sa.text(
            "SELECT DISTINCT m.reference FROM mails m JOIN requests r ON r.mail = m.id "
            "WHERE r.outcome = 'issued' ORDER BY m.reference")).scalars().all()
    assert len(issued) >= 2
    client = console.logged_in("root", "admin")
    mail_page = client.get(f"/correos/{issued[0]}").text
    assert 'action="/admin/ensayo"' in mail_page
    assert "Ensayar de nuevo con las reglas en uso" in mail_page
    rows = _rows(console.store)
    answer = client.post(PAGE, data={"csrf_token": _csrf(client),
                                     "references": f"{issued[0]}\n{issued[1]} {issued[0]}"})
    assert answer.status_code == 200, answer.text
    assert _rows(console.store) == rows
    articles = _articles(answer.text)
    assert sorted(articles) == sorted(issued[:2])
    for reference, block in articles.items():
        assert f'href="/correos/{reference}"' in block
        assert re.search(r'<strong class="outcome">clave emitida<', block)
        assert "keys_issued" in block


def test_operators_see_no_dry_run_button_on_a_mail_page(mail_desk):
    console = mail_desk.console
    with console.store.transaction() as conn:
        reference = conn.execute(sa.text(
            "SELECT reference FROM mails WHERE reference IS NOT NULL ORDER BY id")).scalar()
    operator = console.logged_in("ana", "operator")
    assert "Ensayar de nuevo" not in operator.get(f"/correos/{reference}").text


def _changed_rules_version(console: Console, tmp_path: Path) -> int:
    """A stored rules version whose eligibility date is 2011-08-23 (the one in use: 2011-07-01)."""
    other = tmp_path / "rules-v"
    shutil.copytree(ROOT / "rules", other)
    text = (other / "free_update.toml").read_text(encoding="utf-8")
    assert "eligible_from = 2011-07-01" in text
    (other / "free_update.toml").write_text(
        text.replace("eligible_from = 2011-07-01", "eligible_from = 2011-08-23"),
        encoding="utf-8")
    files = folder_files(other, ".toml")
    return stored.record(console.store, "rules", content_hash(files), files)


def test_against_a_stored_rules_version_lists_exactly_the_answers_it_changes(
        mail_desk, tmp_path):
    console = mail_desk.console
    with console.store.transaction() as conn:
        # AAAA-BBBB-CCCC-FFFF was bought on 2011-08-22, the earliest of the issued serials
        [newly] = conn.execute(sa.text(
            "SELECT DISTINCT m.reference FROM mails m JOIN requests r ON r.mail = m.id "
            "WHERE r.serial = 'AAAA-BBBB-CCCC-FFFF' AND r.outcome = 'issued'")).scalars().all()
        # and the answer that was not eligible already names the date in its text
        [dated] = conn.execute(sa.text(
            "SELECT reference FROM mails WHERE outcome = 'not_eligible'")).scalars().all()
    number = _changed_rules_version(console, tmp_path)
    client = console.logged_in("root", "admin")
    page = client.get(PAGE).text
    assert f'<option value="rules-{number}">reglas, versión {number}' in page
    rows = _rows(console.store)
    answer = client.post(PAGE, data={"csrf_token": _csrf(client), "days": "7",
                                     "against": f"rules-{number}"})
    assert answer.status_code == 200, answer.text
    assert _rows(console.store) == rows
    assert BANNER in answer.text
    assert (f"2 correos recibirían otra respuesta con reglas, versión {number}:"
            in answer.text)
    listed = re.findall(r'<tr class="dry-change">\s*<th scope="row"><a href="/correos/([^"]+)"',
                        answer.text)
    assert sorted(listed) == sorted([newly, dated])
    row = answer.text[answer.text.index(f'<a href="/correos/{newly}"'):]
    before = row[row.index('<td class="before">'):row.index('<td class="after">')]
    after = row[row.index('<td class="after">'):row.index('<tr class="change-text">')]
    assert '<strong class="outcome">clave emitida<' in before
    assert '<strong class="outcome">no aplica<' in after
    assert "+   partir del 23 de agosto de 2011" in html.unescape(answer.text)
    unknown = client.post(PAGE, data={"csrf_token": _csrf(client), "days": "7",
                                      "against": "rules-999"})
    assert unknown.status_code == 422 and "No existe esa versión" in unknown.text


def test_the_json_twin_gives_the_objects_of_the_cli(mail_desk, capsys):
    console = mail_desk.console
    with console.store.transaction() as conn:
        references = conn.execute(sa.text(
            "SELECT reference FROM mails WHERE reference IS NOT NULL ORDER BY id LIMIT 4")
        ).scalars().all()
    console.add_user("root", "admin")
    headers = {"authorization": f"Bearer {console.token('root')}"}
    rows = _rows(console.store)
    answer = console.client().post("/api/v1/admin/dry-run", headers=headers,
                                   data={"references": " ".join(references)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert _rows(console.store) == rows
    assert body["mails"] == len(references) and body["problems"] == []
    assert main(["--config", str(console.config_path), "dry-run", "--json", *references]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The CLI's objects, each hit with its Spanish (reason_es) beside the English reason.
    spanish = [h.pop("reason_es") for r in body["results"] for d in r["decisions"]
               for h in d["hits"]]
    assert body["results"] == cli
    assert spanish and all(spanish)
    english = [h["reason"] for r in cli for d in r["decisions"] for h in d["hits"]]
    assert any(es != en for es, en in zip(spanish, english, strict=True))
    for result in body["results"]:
        assert {"reference", "kind", "requests", "decisions", "replies"} <= set(result)
        for d in result["decisions"]:
            assert {"outcome", "hits"} <= set(d)
        for r in result["replies"]:
            assert {"template", "to", "subject"} <= set(r)
    refused = console.client().post("/api/v1/admin/dry-run", headers=headers, data={})
    assert refused.status_code == 422 and "files" in refused.json()["detail"]


def test_an_operator_gets_403_and_a_form_without_csrf_is_refused(fresh_desk):
    console, files = fresh_desk
    admin = console.logged_in("root", "admin")
    rows = _rows(console.store)
    assert admin.post(PAGE, data={"references": "CLV-000001"}).status_code == 403
    assert admin.post(PAGE, data={"csrf_token": "forged"},
                      files=_emls(files)[:1]).status_code == 403
    operator = console.logged_in("ana", "operator")
    token = CSRF_INPUT.findall(operator.get("/").text)[-1]
    assert operator.get(PAGE).status_code == 403
    assert operator.post(PAGE, data={"csrf_token": token},
                         files=_emls(files)[:1]).status_code == 403
    headers = {"authorization": f"Bearer {console.token('ana')}"}
    assert console.client().post("/api/v1/admin/dry-run", headers=headers,
                                 files=_emls(files)[:1]).status_code == 403
    assert _rows(console.store) == rows


def test_a_days_field_out_of_bounds_is_refused_next_to_it(fresh_desk):
    console, _files = fresh_desk
    client = console.logged_in("root", "admin")
    answer = client.post(PAGE, data={"csrf_token": _csrf(client), "days": "90"})
    assert answer.status_code == 422
    assert re.search(r'id="error-days">Escriba un número entero de días entre 1 y 31',
                     answer.text)
    empty = client.post(PAGE, data={"csrf_token": _csrf(client)})
    assert empty.status_code == 422 and 'id="error-files"' in empty.text


def test_against_a_stored_templates_version_lists_exactly_the_mails_it_words_otherwise(
        fresh_desk):
    """The JSON twin's `against`: a templates version whose keys_issued text ends otherwise
    changes the mails that get keys_issued, and only those; nothing is kept."""
    console, files = fresh_desk
    templates = folder_files(ROOT / "templates", ".j2")
    text = templates["keys_issued.txt.j2"].decode("utf-8")
    changed = dict(templates, **{"keys_issued.txt.j2": text.replace(
        "{% endblock %}", "Gracias por su preferencia.\n{% endblock %}").encode("utf-8")})
    assert changed != templates
    number = stored.record(console.store, "templates", content_hash(changed), changed)
    console.add_user("root", "admin")
    headers = {"authorization": f"Bearer {console.token('root')}"}
    rows = _rows(console.store)
    plain = console.client().post("/api/v1/admin/dry-run", headers=headers,
                                  files=_emls(files)).json()
    expected = sorted(r["file"] for r in plain["results"]
                      if any(m["template"] == "keys_issued" for m in r["replies"]))
    assert expected and len(expected) < len(files.mails)
    versus = console.client().post("/api/v1/admin/dry-run", headers=headers,
                                   data={"against": f"templates-{number}", "show": "1"},
                                   files=_emls(files))
    assert versus.status_code == 200, versus.text
    body = versus.json()
    assert body["against"] == f"templates-{number}" and "results" not in body
    assert sorted(c["file"] for c in body["changes"]) == expected
    for change in body["changes"]:
        [after] = [m for m in change["after"]["replies"] if m["template"] == "keys_issued"]
        assert "Gracias por su preferencia." in after["text"]
        assert change["before"]["decisions"] == change["after"]["decisions"]
    assert _rows(console.store) == rows
