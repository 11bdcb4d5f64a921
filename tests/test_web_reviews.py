"""The review queue in the console: the queue and its JSON twin, one task with its mail beside
it, and the actions of `mailbot review` from a form and from the API. The console never sends:
an action queues its replies ("en cola") and the running service delivers them. Every action is
recorded with the signed-in account's name. On SQLite and PostgreSQL, over a store the real
pipeline filled from the demo mails (tests/web_fixtures.py)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re

import pytest
import sqlalchemy as sa
from test_unlock_flow import request_mail
from web_console import CSRF_INPUT
from web_fixtures import deliver, desk_material, mail_desk

from mailbot.errors import MailbotError
from mailbot.ops.imports import LicenceRecord
from mailbot.ops.web.views.reviews import PAGE_SIZE
from mailbot.run.pipeline import run_once
from mailbot.store import reviews
from mailbot.store.schema import outbox

__all__ = ["desk_material", "mail_desk"]  # the fixtures

NO_CONTACT = "L9EP-3T7W-8ZUA-6FDN"  # the demo's licence with no registered contact address
PAPELERIA = "papeleria.esperanza@hotmail.com"
LOMAS = "D4LN-8P2Q-77XK-M3WA"  # registered to mlopez@lomasdelnorte.com.mx
LOMAS_CONTACT = "mlopez@lomasdelnorte.com.mx"


def task_of(desk, reason: str) -> reviews.Task:
    with desk.console.store.transaction() as conn:
        [task] = [t for t in reviews.tasks(conn, include_closed=True) if t.reason == reason]
    return task


def bearer(desk, name: str = "ana") -> dict[str, str]:
    """A new API token of `name` (an operator account, made when missing)."""
    try:
        desk.console.add_user(name)
    except MailbotError:  # it exists already
        pass
    return {"authorization": f"Bearer {desk.console.token(name)}"}


def outbox_rows(desk, mail: int) -> list[tuple[str, str]]:
    with desk.console.store.transaction() as conn:
        return [(r.template, r.status) for r in conn.execute(
            sa.select(outbox.c.template, outbox.c.status).where(outbox.c.mail == mail)
            .order_by(outbox.c.id))]


def sink_files(desk) -> set[str]:
    return {p.name for p in desk.app.sink.path.glob("*.eml")}


def post_form(client, path: str, **data: str):
    """POST the form at `path` as the task page's forms do (each carries the session's token)."""
    tokens = set(CSRF_INPUT.findall(client.get(path.rsplit("/", 1)[0]).text))
    [csrf] = tokens
    return client.post(path, data={"csrf_token": csrf, **data})


def give_contact(desk, serial: str, address: str) -> None:
    """The registry fixed by an admin: the licence now has a contact address."""
    store = desk.console.store
    with store.transaction() as conn:
        row = store.licence(conn, serial)
        store.upsert_licences(conn, [LicenceRecord(
            serial=row.serial, system=row.system, company=row.company, contact_email=address,
            purchase_date=row.purchase_date, modality=row.modality,
            support_until=row.support_until, users=row.users)])


def stranger_unlock(desk) -> reviews.Task:
    """An unlock of LOMAS asked by someone who is not its registered contact: a task."""
    deliver(desk.inbox, "1328999999.M97_stranger.demo",
            request_mail(sender="contador@despachoperez.com.mx", serial=LOMAS,
                         system="CONTPAQ i Contabilidad", company="Distribuidora Lomas"),
            1328999999)
    assert run_once(desk.app).errors == []
    return task_of(desk, "other_requester")


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- the queue -----------------------------------------------------------------------------------

def test_the_queue_lists_open_tasks_most_urgent_first_with_the_reason_in_spanish(mail_desk):
    client = mail_desk.console.logged_in()
    page = client.get("/revision")
    assert page.status_code == 200 and "<title>Cola de revisión · mailbot</title>" in page.text
    text = text_of(page.text)
    assert "El asunto no es el de ninguna solicitud" in text  # unrecognised_subject
    assert "El registro no tiene correo de contacto para la serie" in text
    assert NO_CONTACT in text and PAPELERIA in text and "Actualización sin costo" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d (CST|CDT)", text)  # due, in the business zone
    api = client.get("/api/v1/reviews").json()
    assert api["filter"] == "open" and api["total"] == 2 and not api["has_next"]
    assert [t["due_at"] for t in api["items"]] == sorted(t["due_at"] for t in api["items"])
    assert {t["reason"] for t in api["items"]} == {"unrecognised_subject",
                                                    "no_registered_address"}
    assert all(t["status"] == "open" and t["reference"].startswith("CLV-")
               for t in api["items"])


def test_overdue_tasks_come_first_and_the_filters_pick_open_overdue_or_all(mail_desk):
    console = mail_desk.console
    silent = task_of(mail_desk, "unrecognised_subject")
    keys = task_of(mail_desk, "no_registered_address")
    with console.store.transaction() as conn:  # one task overdue, the other not yet
        reviews.update(conn, keys.id, due_at=console.app.state.web.now() - dt.timedelta(hours=1))
        reviews.update(conn, silent.id,
                       due_at=console.app.state.web.now() + dt.timedelta(hours=5))
    client = console.logged_in()
    listed = client.get("/api/v1/reviews").json()["items"]
    assert [t["id"] for t in listed] == [keys.id, silent.id]
    assert [t["overdue"] for t in listed] == [True, False]
    assert "vencida" in text_of(client.get("/revision").text)
    overdue = client.get("/api/v1/reviews?status=overdue").json()
    assert [t["id"] for t in overdue["items"]] == [keys.id] and overdue["total"] == 1
    assert client.post(f"/api/v1/reviews/{silent.id}/close", headers=bearer(mail_desk),
                       json={}).status_code == 200
    assert [t["id"] for t in client.get("/api/v1/reviews").json()["items"]] == [keys.id]
    everything = client.get("/api/v1/reviews?status=all").json()["items"]
    assert [(t["id"], t["status"]) for t in everything] == [(keys.id, "open"),
                                                           (silent.id, "closed")]
    assert client.get("/api/v1/reviews?status=cerradas").status_code == 422


def test_the_queue_is_paged(mail_desk):
    console = mail_desk.console
    model = task_of(mail_desk, "unrecognised_subject")
    now = console.app.state.web.now()
    with console.store.transaction() as conn:
        for n in range(PAGE_SIZE):
            reviews.create(conn, mail=model.mail, kind="unrecognised",
                           reason="unrecognised_subject", reason_text="otra",
                           due_at=now + dt.timedelta(days=1, minutes=n), snapshot=model.snapshot,
                           now=now)
    client = console.logged_in()
    first = client.get("/api/v1/reviews").json()
    assert (first["total"], len(first["items"]), first["has_next"]) == (PAGE_SIZE + 2,
                                                                        PAGE_SIZE, True)
    second = client.get("/api/v1/reviews?page=2").json()
    assert len(second["items"]) == 2 and not second["has_next"]
    assert not {t["id"] for t in first["items"]} & {t["id"] for t in second["items"]}
    html = client.get("/revision?page=2").text
    assert "Página 2" in html and 'href="/revision?status=open&amp;page=1"' in html


# --- one task ------------------------------------------------------------------------------------

def test_a_task_page_shows_the_mail_what_was_read_the_rules_and_the_history(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    client = mail_desk.console.logged_in()
    page = client.get(f"/revision/{task.id}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert f"Tarea #{task.id}: El registro no tiene correo de contacto para la serie" in text
    assert "Papelería La Esperanza" in text and "Lucía Herrera" in text and NO_CONTACT in text
    assert "registry.address" in text and "keys go only to a registered address" not in text
    assert "las claves solo se envían a una dirección registrada" in text  # reason and hit
    assert "created por mailbot" in text  # the history, with who
    assert "under_review" in text and "enviado" in text  # the reply the pipeline sent
    assert f'href="/correos/{task.reference}"' in page.text  # the whole mail, one click away
    for action in ("approve", "reject", "edit", "assign", "close"):
        assert f'action="/revision/{task.id}/{action}"' in page.text
    assert page.text.count('name="csrf_token"') == 6  # the five actions and logout
    api = client.get(f"/api/v1/reviews/{task.id}").json()
    assert api["task"]["reason"] == "no_registered_address"
    assert api["requests"][0]["serial"] == NO_CONTACT and api["request_outcome"] == "review"
    assert [h["rule"] for h in api["hits"]][-1] == "registry.address"
    assert api["hits"][-1]["reason"].endswith("keys go only to a registered address")
    assert api["hits"][-1]["reason_es"].endswith("las claves solo se envían a una dirección "
                                                 "registrada")
    assert api["task"]["reason_text"] == api["hits"][-1]["reason"]
    assert api["task"]["reason_text_es"] == api["hits"][-1]["reason_es"]
    assert api["actions"] == ["approve", "reject", "edit", "assign", "close"]
    assert "done" not in api and "template_words" not in api


def test_an_unknown_task_is_404_in_spanish_and_in_json(mail_desk):
    client = mail_desk.console.logged_in()
    page = client.get("/revision/99999")
    assert page.status_code == 404 and "No encontrado" in page.text
    missing = client.get("/api/v1/reviews/99999")
    assert missing.status_code == 404 and missing.json()["detail"] == ("Esa tarea de revisión "
                                                                       "no existe.")
    refused = client.post("/api/v1/reviews/99999/approve", headers=bearer(mail_desk), json={})
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"


def test_customer_written_text_is_escaped_on_the_queue_and_the_task_page(mail_desk):
    console = mail_desk.console
    model = task_of(mail_desk, "no_registered_address")
    hostile = "<script>alert(1)</script>"
    snapshot = {**model.snapshot, "request": {**model.snapshot["request"],
                                              "company": f"<b>Empresa</b>{hostile}"},
                "hits": [{"rule": "registry.known", "reason": f"serie {hostile}"}]}
    now = console.app.state.web.now()
    with console.store.transaction() as conn:
        console.store.update_mail(conn, model.mail, subject=f"Solicitud {hostile}",
                                  sender='"><img src=x onerror=alert(1)>@example.com')
        task_id = reviews.create(conn, mail=model.mail, kind="free_update",
                                 reason="unknown_serial", reason_text=hostile,
                                 due_at=now, snapshot=snapshot, now=now)
    client = console.logged_in()
    for path in ("/revision", f"/revision/{task_id}"):
        html = client.get(path).text
        assert hostile not in html and "<b>Empresa</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/revision/{task_id}").text


# --- actions from the page: queued, never sent; recorded under the account ------------------------

def test_approving_from_the_page_queues_the_keys_and_the_service_sends_them(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    give_contact(mail_desk, NO_CONTACT, PAPELERIA)
    before = sink_files(mail_desk)
    client = mail_desk.console.logged_in()
    done = post_form(client, f"/revision/{task.id}/approve", note="Registro corregido por teléfono")
    assert done.status_code == 303
    assert done.headers["location"] == f"/revision/{task.id}?done=approve"
    page = text_of(client.get(done.headers["location"]).text)
    assert "Aprobada. Sus respuestas quedan en cola hasta que el servicio las envíe." in page
    assert "keys_issued" in page and "en cola" in page
    assert "approve por ana: Registro corregido por teléfono" in page
    assert ("keys_issued", "queued") in outbox_rows(mail_desk, task.mail)
    assert sink_files(mail_desk) == before  # the console sent nothing
    with mail_desk.console.store.transaction() as conn:
        closed = reviews.get(conn, task.id)
    assert (closed.status, closed.closed_by) == ("approved", "ana")
    assert run_once(mail_desk.app).errors == []  # the running service delivers it
    assert ("keys_issued", "sent") in outbox_rows(mail_desk, task.mail)
    [sent] = [f for f in mail_desk.app.sink.sent() if f.path.name not in before]
    assert list(sent.recipients) == [PAPELERIA]
    assert "keys_issued" in client.get(f"/revision/{task.id}").text
    assert "enviado" in text_of(client.get(f"/revision/{task.id}").text)


def test_rejecting_from_the_page_queues_the_template_with_the_note(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    client = mail_desk.console.logged_in("beto")
    done = post_form(client, f"/revision/{task.id}/reject", template="review_rejected",
                     note="La serie no corresponde a su empresa.")
    assert done.status_code == 303
    assert ("review_rejected", "queued") in outbox_rows(mail_desk, task.mail)
    with mail_desk.console.store.transaction() as conn:
        row = conn.execute(sa.select(outbox.c.data).where(
            outbox.c.mail == task.mail, outbox.c.template == "review_rejected")).scalar_one()
        closed = reviews.get(conn, task.id)
        [*_, last] = reviews.history(conn, task.id)
    body = email.message_from_bytes(row, policy=email.policy.default).get_body(("plain",))
    assert "La serie no corresponde a su empresa." in body.get_content()
    assert (closed.status, closed.closed_by) == ("rejected", "beto")
    assert (last["action"], last["operator"]) == ("reject", "beto")


def test_a_reject_without_a_template_or_a_note_is_refused_and_changes_nothing(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    client = mail_desk.console.logged_in()
    for data in ({"template": "review_rejected", "note": "  "},
                 {"template": "keys_issued", "note": "Le mandamos las claves"}):
        refused = post_form(client, f"/revision/{task.id}/reject", **data)
        assert refused.status_code == 422
        assert "Elija una plantilla y escriba la nota" in refused.text
    assert task_of(mail_desk, "no_registered_address").status == "open"


def test_editing_from_the_page_runs_the_rules_again(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    client = mail_desk.console.logged_in()
    page = client.get(f"/revision/{task.id}").text
    assert f'name="serial" type="text" maxlength="500" value="{NO_CONTACT}"' in page
    unchanged = post_form(client, f"/revision/{task.id}/edit", serial=NO_CONTACT,
                          system="CONTPAQ i Bancos", company="Papelería La Esperanza",
                          contact_name="Lucía Herrera", contact_email=PAPELERIA)
    assert unchanged.status_code == 422 and "No cambia nada" in unchanged.text
    bad = post_form(client, f"/revision/{task.id}/edit", serial="no es una serie")
    assert bad.status_code == 422 and "Un valor no es válido" in bad.text
    assert 'value="no es una serie"' in bad.text  # what the operator wrote is kept
    # The right serial, as the customer said on the phone:
    moved = post_form(client, f"/revision/{task.id}/edit", serial="aaaa bbbb cccc gggg",
                      system="CONTPAQ i Bancos", note="El cliente se equivocó de serie")
    assert moved.status_code == 303, moved.text
    with mail_desk.console.store.transaction() as conn:
        edited = reviews.get(conn, task.id)
        [*_, last] = reviews.history(conn, task.id)
    assert (last["action"], last["operator"]) == ("edit", "ana")
    assert last["changes"]["fields"]["serial"] == [NO_CONTACT, "AAAA-BBBB-CCCC-GGGG"]
    assert edited.status == "resolved" and last["changes"]["outcome"] == "issued"
    # The keys go to that serial's registered contact; the sender is only told where they went.
    assert last["changes"]["messages"] == [f"keys_redirected to {PAPELERIA}",
                                           "keys_issued to rgonzalez@empresamuestra.com.mx"]
    assert outbox_rows(mail_desk, task.mail)[1:] == [("keys_redirected", "queued"),
                                                     ("keys_issued", "queued")]


def test_assign_to_me_shows_who_works_the_task(mail_desk):
    task = task_of(mail_desk, "unrecognised_subject")
    client = mail_desk.console.logged_in("beto")
    done = post_form(client, f"/revision/{task.id}/assign")
    assert done.headers["location"] == f"/revision/{task.id}?done=assign"
    page = text_of(client.get(done.headers["location"]).text)
    assert "La tarea quedó asignada a usted." in page and "Asignada a beto" in page
    assert "asignada a beto" in text_of(client.get("/revision").text)
    assert task_of(mail_desk, "unrecognised_subject").assigned_to == "beto"
    assert f'action="/revision/{task.id}/assign"' not in client.get(f"/revision/{task.id}").text


def test_close_without_an_answer_sends_nothing_and_records_who(mail_desk):
    task = task_of(mail_desk, "unrecognised_subject")
    queued = outbox_rows(mail_desk, task.mail)
    client = mail_desk.console.logged_in()
    done = post_form(client, f"/revision/{task.id}/close", note="Es una factura de proveedor")
    assert done.status_code == 303
    page = text_of(client.get(done.headers["location"]).text)
    assert "Cerrada sin respuesta." in page and "cerrada sin respuesta" in page
    assert "close por ana: Es una factura de proveedor" in page
    assert 'action="/revision/' not in client.get(f"/revision/{task.id}").text  # no actions left
    assert outbox_rows(mail_desk, task.mail) == queued
    assert task_of(mail_desk, "unrecognised_subject").status == "closed"


def test_a_request_closed_without_an_answer_is_no_longer_in_review(mail_desk):
    task = task_of(mail_desk, "no_registered_address")
    client = mail_desk.console.logged_in()
    assert post_form(client, f"/revision/{task.id}/close").status_code == 303
    api = client.get(f"/api/v1/reviews/{task.id}").json()
    assert api["request_outcome"] == "closed" and api["task"]["status"] == "closed"
    assert api["history"][-1]["action"] == "close" and api["actions"] == []


def test_an_action_on_a_closed_task_says_someone_else_attended_it(mail_desk):
    task = task_of(mail_desk, "unrecognised_subject")
    ana, beto = mail_desk.console.logged_in("ana"), mail_desk.console.logged_in("beto")

    [csrf] = set(CSRF_INPUT.findall(beto.get(f"/revision/{task.id}").text))  # beto has it open
    assert post_form(ana, f"/revision/{task.id}/close").status_code == 303
    late = beto.post(f"/revision/{task.id}/approve", data={"csrf_token": csrf})
    assert late.status_code == 409
    assert "Otra persona ya atendió esta tarea." in late.text
    assert "cerrada sin respuesta (por ana" in text_of(late.text)


# --- the JSON API ----------------------------------------------------------------------------------

def test_the_api_approves_with_a_token_and_answers_what_it_queued(mail_desk):
    task = stranger_unlock(mail_desk)
    client = mail_desk.console.client()
    before = sink_files(mail_desk)
    done = client.post(f"/api/v1/reviews/{task.id}/approve", headers=bearer(mail_desk, "sistemas"),
                       json={"note": "Confirmado con el contacto"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "approved" and body["queued"] == [{"template": "unlocked",
                                                                "to": LOMAS_CONTACT}]
    assert body["message"].startswith("Aprobada.")
    assert sink_files(mail_desk) == before
    history = client.get(f"/api/v1/reviews/{task.id}", headers=bearer(mail_desk)).json()
    assert history["history"][-1]["operator"] == "sistemas"
    assert history["unlock"]["status"] == "approved"
    assert {"template": "unlocked", "state": "queued"}.items() <= history["replies"][-1].items()


def test_the_api_rejects_edits_assigns_and_closes(mail_desk):
    client = mail_desk.console.client()
    headers = bearer(mail_desk)
    keys = task_of(mail_desk, "no_registered_address")
    still = client.post(f"/api/v1/reviews/{keys.id}/edit", headers=headers,
                        json={"company": "Papelería La Esperanza, S.A."})
    assert still.status_code == 200 and still.json()["status"] == "open"
    assert still.json()["message"].startswith("Corregida, pero las reglas")
    assigned = client.post(f"/api/v1/reviews/{keys.id}/assign", headers=headers)
    assert assigned.status_code == 200 and task_of(mail_desk, keys.reason).assigned_to == "ana"
    bad = client.post(f"/api/v1/reviews/{keys.id}/reject", headers=headers,
                      json={"template": "keys_issued", "note": "x"})
    assert bad.status_code == 422  # not a rejection template: the schema says so
    cannot = client.post(f"/api/v1/reviews/{keys.id}/approve", headers=headers, json={})
    assert cannot.status_code == 422 and cannot.json()["code"] == "rules_cannot_answer"
    rejected = client.post(f"/api/v1/reviews/{keys.id}/reject", headers=headers,
                           json={"template": "review_rejected", "note": "No procede."})
    assert rejected.status_code == 200 and rejected.json()["queued"] == [
        {"template": "review_rejected", "to": PAPELERIA}]
    again = client.post(f"/api/v1/reviews/{keys.id}/close", headers=headers, json={})
    assert again.status_code == 409 and again.json()["code"] == "taken"
    assert again.json()["message"] == "Otra persona ya atendió esta tarea."


def test_a_session_calling_the_api_needs_the_csrf_header(mail_desk):
    task = task_of(mail_desk, "unrecognised_subject")
    client = mail_desk.console.logged_in()
    assert client.post(f"/api/v1/reviews/{task.id}/close", json={}).status_code == 403
    [csrf] = CSRF_INPUT.findall(client.get("/revision").text)
    done = client.post(f"/api/v1/reviews/{task.id}/close", json={},
                       headers={"x-csrf-token": csrf})
    assert done.status_code == 200 and done.json()["status"] == "closed"


@pytest.mark.parametrize("path", ["/api/v1/reviews", "/api/v1/reviews/1"])
def test_the_openapi_document_describes_the_review_api(mail_desk, path):
    doc = mail_desk.console.client().get("/api/v1/openapi.json", headers=bearer(mail_desk)).json()
    template = path.replace("/1", "/{task_id}")
    assert "get" in doc["paths"][template]
    for action in ("approve", "reject", "edit", "assign", "close"):
        assert "post" in doc["paths"][f"/api/v1/reviews/{{task_id}}/{action}"]
    assert "/revision" not in doc["paths"]
