"""The console's locks, tried on every route the app has (a new page cannot forget them): no
session or token, no entry (but the login form, /healthz and the static files); an operator
never reaches /admin; every form POST needs the session's CSRF token; and two operators acting
on one review task at once: exactly one wins, the other is told. On SQLite and PostgreSQL, over
a store the real pipeline filled (tests/web_fixtures.py)."""

from __future__ import annotations

import re
import threading

import sqlalchemy as sa
from fastapi.routing import APIRoute
from web_console import CSRF_INPUT
from web_fixtures import desk_material, mail_desk

from mailbot.ops import review_actions
from mailbot.ops.review_actions import LOADED, TaskTaken
from mailbot.ops.web.views.reviews import action_app
from mailbot.store import reviews
from mailbot.store.schema import events, outbox
from mailbot.store.schema import review_actions as history

__all__ = ["desk_material", "mail_desk"]  # the fixtures

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz")}


def api_routes(routes) -> list[APIRoute]:
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):  # an included router, kept as a branch
            out.extend(api_routes(route.original_router.routes))
    return out


def every_route(app, samples: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every route, each path parameter filled with a real value of the
    store (`samples`, by parameter name), so a refusal is the lock's and not a 404."""
    out = []
    for route in api_routes(app.routes):
        path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: samples.get(m.group(1), "1"),
                      route.path)
        out.extend((method, path) for method in sorted(route.methods - {"HEAD"}))
    return out


def samples_of(desk) -> dict[str, str]:
    with desk.console.store.transaction() as conn:
        [task, *_] = reviews.tasks(conn)
    serial = (task.snapshot.get("request") or {}).get("serial") or "L9EP-3T7W-8ZUA-6FDN"
    return {"task_id": str(task.id), "reference": task.reference, "serial": serial,
            "message_id": "1", "index": "0", "name": "x"}


def state(desk) -> tuple:
    """What an action would change: the tasks, their history, the outbox, the events."""
    with desk.console.store.transaction() as conn:
        return (tuple((t.id, t.status, t.assigned_to)
                      for t in reviews.tasks(conn, include_closed=True)),
                conn.execute(sa.select(sa.func.count()).select_from(history)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())


def test_every_route_refuses_a_visitor_with_no_session_or_token_and_changes_nothing(mail_desk):
    console = mail_desk.console
    routes = every_route(console.app, samples_of(mail_desk))
    task_id = samples_of(mail_desk)["task_id"]
    assert ("POST", f"/api/v1/reviews/{task_id}/approve") in routes
    assert ("GET", "/revision") in routes
    before = state(mail_desk)
    client = console.client()
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for body in ({}, {"json": {"note": "x", "template": "review_rejected"}}):
            response = client.request(method, path, **body)
            if path.startswith("/api/") or path == "/metrics":
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 302, (method, path)
                assert response.headers["location"].startswith("/login?next=")
        forged = client.request(method, path, headers={"authorization": "Bearer mbt_forjado"})
        assert forged.status_code == 401, (method, path)
    assert client.get("/static/console.css").status_code == 200
    assert state(mail_desk) == before


def test_an_operator_is_refused_every_admin_route_by_session_and_by_token(mail_desk):
    console = mail_desk.console
    operator = console.logged_in("ana", "operator")
    [csrf] = set(CSRF_INPUT.findall(operator.get("/").text))
    token = console.token("ana")
    admin_routes = [(m, p) for m, p in every_route(console.app, samples_of(mail_desk))
                    if p == "/admin" or p.startswith("/admin/")]
    assert ("GET", "/admin") in admin_routes
    for method, path in admin_routes:
        by_session = operator.request(method, path, data={"csrf_token": csrf}
                                      if method == "POST" else None)
        assert by_session.status_code == 403, (method, path)
        by_token = console.client().request(method, path,
                                            headers={"authorization": f"Bearer {token}"})
        assert by_token.status_code == 403, (method, path)
    assert console.logged_in("root", "admin").get("/admin").status_code == 200


def test_every_post_needs_the_sessions_csrf_token_and_changes_nothing_without_it(mail_desk):
    console = mail_desk.console
    client = console.logged_in("root", "admin")  # an admin: no route is refused for the role
    [csrf] = set(CSRF_INPUT.findall(client.get("/").text))
    posts = [path for method, path in every_route(console.app, samples_of(mail_desk))
             if method == "POST" and path != "/login"]
    task_id = samples_of(mail_desk)["task_id"]
    assert f"/revision/{task_id}/approve" in posts and f"/revision/{task_id}/close" in posts
    before = state(mail_desk)
    for path in posts:
        for data in ({}, {"csrf_token": "otro"}, {"csrf_token": ""},
                     {"csrf_token": csrf + "x"}):
            refused = client.post(path, data={**data, "note": "x"})
            assert refused.status_code == 403, (path, data)
        assert client.post(path, json={"note": "x"},
                           headers={"x-csrf-token": "otro"}).status_code == 403, path
        assert client.post(path, json={}).status_code == 403, path  # a session's JSON too
    assert state(mail_desk) == before
    done = client.post(f"/revision/{task_id}/assign", data={"csrf_token": csrf})
    assert done.status_code == 303  # the right token opens the same door


def race(desk, first, second) -> tuple[object, object]:
    """Run `first` until the review action inside it has taken and read its task, then start
    `second` on the same task while `first` still holds it, then let `first` finish. Returns
    both results (a response, or the exception raised)."""
    app = action_app(desk.console.app)
    loaded, release = threading.Event(), threading.Event()
    calls = []

    def hold(point: str) -> None:
        if point == LOADED:
            calls.append(threading.current_thread().name)
            if len(calls) == 1:  # only the first action waits, holding the task
                loaded.set()
                release.wait(30)

    results: dict[str, object] = {}

    def run(name, action) -> None:
        try:
            results[name] = action()
        except Exception as exc:  # the loser's refusal, when called without HTTP
            results[name] = exc

    app.hook = hold
    try:
        one = threading.Thread(target=run, args=("first", first), name="first")
        one.start()
        assert loaded.wait(30), "the first action never reached its task"
        two = threading.Thread(target=run, args=("second", second), name="second")
        two.start()
        two.join(0.5)  # the second waits for the task (or, without the lock, finishes)
        release.set()
        one.join(60)
        two.join(60)
    finally:
        app.hook = lambda point: None
        release.set()
    return results["first"], results["second"]


def test_two_operators_approving_one_task_at_once_exactly_one_wins(mail_desk):
    console = mail_desk.console
    with console.store.transaction() as conn:
        [task] = [t for t in reviews.tasks(conn) if t.kind == "unrecognised"]
    ana, beto = console.logged_in("ana"), console.logged_in("beto")

    def approve(client):
        [csrf] = set(CSRF_INPUT.findall(client.get(f"/revision/{task.id}").text))
        return lambda: client.post(f"/revision/{task.id}/approve", data={"csrf_token": csrf})

    first, second = race(mail_desk, approve(ana), approve(beto))
    assert sorted([first.status_code, second.status_code]) == [303, 409]
    [lost] = [r for r in (first, second) if r.status_code == 409]
    assert "Otra persona ya atendió esta tarea." in lost.text
    with console.store.transaction() as conn:
        done = reviews.get(conn, task.id)
        actions = [(h["action"], h["operator"]) for h in reviews.history(conn, task.id)]
    assert done.status == "approved" and done.closed_by in ("ana", "beto")
    assert actions == [("created", "mailbot"), ("approve", done.closed_by)]


def test_the_console_and_mailbot_review_on_one_task_at_once_answer_once(mail_desk):
    """The queue's CLI and the console share the store: an approve in the console and a reject
    from `mailbot review` at the same moment queue one answer, never both."""
    console = mail_desk.console
    with console.store.transaction() as conn:
        [task] = [t for t in reviews.tasks(conn) if t.reason == "no_registered_address"]
    queued = state(mail_desk)[2]
    client = console.client()
    console.add_user("ana")
    token = console.token("ana")
    app = action_app(console.app)

    def console_reject():
        return client.post(f"/api/v1/reviews/{task.id}/reject",
                           headers={"authorization": f"Bearer {token}"},
                           json={"template": "review_rejected", "note": "No procede."})

    def cli_reject():
        return review_actions.reject(app, task.id, template="missing_data",
                                     note="Faltan datos.", operator="beto", deliver=False)

    first, second = race(mail_desk, console_reject, cli_reject)
    assert first.status_code == 200 and isinstance(second, TaskTaken)
    assert state(mail_desk)[2] == queued + 1  # one rejection queued, not two
    with console.store.transaction() as conn:
        assert reviews.get(conn, task.id).closed_by == "ana"
