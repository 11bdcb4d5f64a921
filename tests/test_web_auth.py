"""Who may come into the console: every route refused without a session or token, the login
form and its limit, CSRF on every POST, admins only under /admin, API tokens, the cookie's
flags, /healthz and /metrics. Each on SQLite and PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families
from web_console import CSRF_INPUT, PASSWORD, build_console, empty_accounts

from mailbot.errors import ConfigError
from mailbot.ops.web.auth import SESSION_COOKIE
from mailbot.ops.web.context import load_secret_key
from mailbot.ops.web.serve import check_exposure, is_loopback
from mailbot.store import panel
from mailbot.store.schema import login_attempts

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz")}


def api_routes(routes) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as a branch holding
    the original router; no prefixes are used, so the paths are as declared)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):
            out.extend(api_routes(route.original_router.routes))
    return out


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, path parameters filled with a sample."""
    out = []
    for route in api_routes(app.routes):
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        out.extend((method, path) for method in sorted(route.methods - {"HEAD"}))
    return out


def cookie_headers(response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


# -- without a session or token ---------------------------------------------------------------

def test_every_route_but_login_and_healthz_is_refused_without_a_session_or_token(console):
    client = console.client()
    routes = every_route(console.app)
    assert PUBLIC <= set(routes) and ("GET", "/") in routes and ("POST", "/logout") in routes
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, path)
        if path.startswith("/api/") or path == "/metrics":
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            assert response.status_code == 302, (method, path)
            assert response.headers["location"].startswith("/login?next=")


def test_a_page_asked_for_without_a_session_comes_back_after_login(console):
    console.add_user()
    client = console.client()
    refused = client.get("/api/v1/summary", headers={"accept": "text/html"})
    assert refused.status_code == 401
    bounced = client.get("/admin?x=1")
    assert bounced.headers["location"] == "/login?next=%2Fadmin%3Fx%3D1"
    assert console.login(client, next_path="/?ver=1").headers["location"] == "/?ver=1"


def test_static_files_need_no_login_and_an_unknown_path_reveals_nothing(console):
    client = console.client()
    assert client.get("/static/console.css").status_code == 200
    assert client.get("/no-such-page").status_code == 404


# -- logging in -------------------------------------------------------------------------------

def test_login_starts_a_session_and_the_panel_greets_the_account(console):
    client = console.logged_in("ana")
    page = client.get("/")
    assert page.status_code == 200 and "Sesión de ana" in page.text
    assert client.get("/api/v1/summary").status_code == 200
    assert client.get("/login").headers["location"] == "/"  # logged in already


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil",
                                    "javascript:alert(1)"])
def test_login_never_redirects_off_the_site(console, target):
    console.add_user()
    assert console.login(console.client(), next_path=target).headers["location"] == "/"


def test_a_wrong_password_is_refused_counted_logged_and_says_not_which_part(console, caplog):
    console.add_user()
    client = console.client()
    with caplog.at_level(logging.WARNING, logger="mailbot.web"):
        wrong = console.login(client, password="no-es-la-clave")
        unknown = console.login(client, name="nadie")
    for response in (wrong, unknown):
        assert response.status_code == 401 and "Nombre o contraseña incorrectos." in response.text
        assert not cookie_headers(response, SESSION_COOKIE)
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=login_failed"] * 2
    with console.store.transaction() as conn:
        rows = conn.execute(sa.select(login_attempts.c.name, login_attempts.c.outcome)
                            .order_by(login_attempts.c.id)).all()
    assert [tuple(r) for r in rows] == [("ana", "failed"), ("nadie", "failed")]


def test_five_wrong_passwords_lock_the_account_name_for_the_window(console):
    console.add_user()
    client = console.client()
    for _ in range(5):
        assert console.login(client, password="adivinanza-1").status_code == 401
    locked = console.login(client)
    assert locked.status_code == 429 and locked.headers["retry-after"] == "900"
    assert "Demasiados intentos fallidos" in locked.text
    assert not cookie_headers(locked, SESSION_COOKIE)
    console.clock.advance(minutes=15, seconds=1)
    assert console.login(client).status_code == 303


def test_a_disabled_account_cannot_log_in_and_its_open_session_ends(console):
    client = console.logged_in("ana")
    console.app.state.web.accounts.disable("ana", now=console.app.state.web.now())
    assert client.get("/").status_code == 302
    assert console.login(console.client()).status_code == 401


def test_logout_ends_the_session_even_for_a_kept_copy_of_the_cookie(console):
    client = console.logged_in("ana")
    kept = client.cookies.get(SESSION_COOKIE)
    [csrf] = CSRF_INPUT.findall(client.get("/").text)
    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert cookie_headers(out, SESSION_COOKIE)[0].startswith(f'{SESSION_COOKIE}=""')
    replay = console.client()
    replay.cookies.set(SESSION_COOKIE, kept)
    assert replay.get("/").status_code == 302


def test_a_session_expires_after_session_hours(console):
    client = console.logged_in("ana")
    console.clock.advance(hours=12, seconds=1)
    assert client.get("/").status_code == 302


def test_a_forged_or_tampered_session_cookie_is_refused(console):
    client = console.logged_in("ana")
    real = client.cookies.get(SESSION_COOKIE)
    for forged in (real[:-2] + ("AA" if not real.endswith("AA") else "BB"), "x", "a.b.c"):
        other = console.client()
        other.cookies.set(SESSION_COOKIE, forged)
        assert other.get("/").status_code == 302


# -- CSRF ---------------------------------------------------------------------------------------

def test_every_post_from_a_session_needs_the_sessions_csrf_token(console):
    client = console.logged_in("admin", "admin")
    [csrf] = CSRF_INPUT.findall(client.get("/").text)
    posts = [path for method, path in every_route(console.app)
             if method == "POST" and path != "/login"]
    assert "/logout" in posts
    for path in posts:
        for data in ({}, {"csrf_token": "otro"}, {"csrf_token": ""}):
            response = client.post(path, data=data)
            assert response.status_code == 403, (path, data)
        assert client.post(path, headers={"x-csrf-token": "otro"}).status_code == 403
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303


def test_the_login_form_needs_its_own_csrf_token(console):
    console.add_user()
    client = console.client()
    bare = client.post("/login", data={"name": "ana", "password": PASSWORD})
    assert bare.status_code == 403 and not cookie_headers(bare, SESSION_COOKIE)
    [csrf] = CSRF_INPUT.findall(client.get("/login").text)
    stranger = console.client()  # has the token from the page, not the cookie that signs it
    assert stranger.post("/login", data={"name": "ana", "password": PASSWORD,
                                         "csrf_token": csrf}).status_code == 403
    assert client.post("/login", data={"name": "ana", "password": PASSWORD,
                                       "csrf_token": csrf}).status_code == 303


# -- roles and tokens ---------------------------------------------------------------------------

def test_an_operator_gets_403_under_admin_and_an_admin_gets_in(console):
    operator = console.logged_in("ana", "operator")
    refused = operator.get("/admin")
    assert refused.status_code == 403 and "solo para administradores" in refused.text
    assert "/admin" not in operator.get("/").text  # no link to where it may not go
    admin = console.logged_in("root", "admin")
    assert admin.get("/admin").status_code == 200
    token = console.token("ana")
    assert console.client().get("/admin", headers={"authorization": f"Bearer {token}"}
                                ).status_code == 403


def test_a_bearer_token_opens_the_api_until_revoked_or_its_account_disabled(console):
    console.add_user("ana")
    console.add_user("beto")
    web = console.app.state.web
    client = console.client()
    ana, beto = console.token("ana"), console.token("beto")
    for path in ("/api/v1/summary", "/metrics", "/api/v1/openapi.json"):
        assert client.get(path, headers={"authorization": f"Bearer {ana}"}).status_code == 200
    web.accounts.revoke_tokens("ana", now=web.now())
    web.accounts.disable("beto", now=web.now())
    for token in (ana, beto, "mbt_inventado", ""):
        refused = client.get("/api/v1/summary", headers={"authorization": f"Bearer {token}"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/summary",
                      headers={"authorization": "Basic YW5hOng="}).status_code == 401


def test_a_bad_token_is_refused_even_with_a_good_session_cookie(console):
    client = console.logged_in("ana")
    refused = client.get("/api/v1/summary", headers={"authorization": "Bearer mbt_malo"})
    assert refused.status_code == 401


def test_the_openapi_document_lists_the_api_and_not_the_pages(console):
    console.add_user()
    token = console.token()
    doc = console.client().get("/api/v1/openapi.json",
                               headers={"authorization": f"Bearer {token}"}).json()
    assert "/api/v1/summary" in doc["paths"] and "/" not in doc["paths"]
    assert "/login" not in doc["paths"]


# -- the cookie -------------------------------------------------------------------------------

def test_the_session_cookie_is_httponly_samesite_and_not_secure_over_plain_http(console):
    console.add_user()
    response = console.login(console.client())
    [cookie] = cookie_headers(response, SESSION_COOKIE)
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=lax", "path=/"} <= flags and "secure" not in flags


def test_the_cookie_is_secure_over_https(console):
    console.add_user()
    [cookie] = cookie_headers(console.login(console.client(https=True)), SESSION_COOKIE)
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_the_cookie_is_secure_behind_tls_even_when_the_proxy_speaks_http(store, tmp_path):
    empty_accounts(store)
    try:
        behind = build_console(store, tmp_path, "behind_tls = true\n")
        behind.add_user()
        for response in (behind.client().get("/login"), behind.login(behind.client())):
            for cookie in response.headers.get_list("set-cookie"):
                assert "secure" in {part.strip().lower() for part in cookie.split(";")}
    finally:
        empty_accounts(store)


# -- the secret key -----------------------------------------------------------------------------

def test_the_secret_key_is_made_once_with_mode_0600_and_refused_when_others_can_read(tmp_path):
    path = tmp_path / "var" / "web-secret.key"
    key = load_secret_key(path)
    assert len(key) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_secret_key(path) == key
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_secret_key(path)


def test_a_forged_cookie_signed_with_another_key_is_refused(console, store, tmp_path):
    client = console.logged_in("ana")
    (tmp_path / "other").mkdir()
    other = build_console(store, tmp_path / "other")  # the same store, another secret key
    stolen = console.client()
    stolen.cookies.set(SESSION_COOKIE, client.cookies.get(SESSION_COOKIE))
    assert stolen.get("/").status_code == 200  # the same cookie is good on its own console
    foreign = other.client()
    foreign.cookies.set(SESSION_COOKIE, client.cookies.get(SESSION_COOKIE))
    assert foreign.get("/").status_code == 302


# -- health and metrics -----------------------------------------------------------------------

def test_healthz_is_503_until_a_pass_is_recorded_then_200_while_it_is_recent(console):
    client = console.client()
    first = client.get("/healthz")
    assert first.status_code == 503 and first.json()["reason"] == "no pass recorded yet"
    with console.store.transaction() as conn:
        console.store.log_event(conn, panel.PASS_FINISHED, duration_seconds=1.5)
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert ok.json()["last_pass_source"] == "pass_finished"
    console.clock.advance(seconds=181)  # three polls of 60 s
    stale = client.get("/healthz")
    assert stale.status_code == 503 and "more than 180 s" in stale.json()["reason"]


def test_healthz_answers_whatever_authorization_a_checker_sends(console):
    for header in ("Bearer mbt_revocado", "Basic eDp5"):
        response = console.client().get("/healthz", headers={"authorization": header})
        assert response.status_code == 503 and response.json()["reason"] == "no pass recorded yet"


def test_a_bearer_token_does_not_excuse_the_login_form_from_its_csrf_token(console):
    console.add_user()
    response = console.client().post("/login", headers={
        "authorization": f"Bearer {console.token()}"}, data={"name": "ana", "password": PASSWORD})
    assert response.status_code == 403 and not cookie_headers(response, SESSION_COOKIE)


def test_healthz_falls_back_to_the_newest_event_and_says_so(console):
    with console.store.transaction() as conn:
        console.store.log_event(conn, "alert", title="Buzón inaccesible", detail="x")
    body = console.client().get("/healthz").json()
    assert body["status"] == "ok" and body["last_pass_source"] == "newest_event"


def test_healthz_is_503_when_the_store_does_not_answer_and_names_no_url(console, monkeypatch):
    def broken():
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(console.app.state.web.store, "transaction", broken)
    response = console.client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "reason": "the store does not answer"}


def test_metrics_are_built_from_the_store_and_every_name_starts_with_mailbot(console):
    from types import SimpleNamespace

    store = console.store
    with store.transaction() as conn:
        store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Nóminas", key=f"K-{n}")
                              for n in range(3)])
        mail = store.add_mail(conn, source="test", mail_id="1", fp="f" * 64, size=10)
        store.update_mail(conn, mail.id, outcome="answered")
        store.enqueue(conn, mail=mail.id, purpose="reply", template="t", message_id="<m@x>",
                      envelope_from="claves@example.com", recipients=["a@example.com"],
                      data=b"x")
        store.log_event(conn, panel.PASS_FINISHED, duration_seconds=2.0)
    console.add_user()
    text = console.client().get("/metrics", headers={
        "authorization": f"Bearer {console.token()}"}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(name.startswith("mailbot_") for name in families)
    assert {"mailbot_store_up", "mailbot_mails", "mailbot_outbox_messages",
            "mailbot_review_tasks_open", "mailbot_review_tasks_overdue", "mailbot_keys_free",
            "mailbot_last_pass_timestamp_seconds",
            "mailbot_last_pass_duration_seconds"} <= set(families)

    def value(name: str, **labels: str) -> float:
        [sample] = [s for s in families[name].samples if s.labels == labels]
        return sample.value

    assert value("mailbot_store_up") == 1
    assert value("mailbot_mails", outcome="answered") == 1
    assert value("mailbot_outbox_messages", state="queued", purpose="reply") == 1
    assert value("mailbot_keys_free", system="CONTPAQ i Nóminas") == 3
    assert value("mailbot_keys_free", system="Aspel FACTURE") == 0
    assert value("mailbot_last_pass_duration_seconds") == 2.0


# -- mailbot web --------------------------------------------------------------------------------

def test_only_loopback_addresses_may_serve_without_an_account():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example")
    check_exposure("127.0.0.1", has_accounts=False)
    check_exposure("0.0.0.0", has_accounts=True)
    with pytest.raises(ConfigError, match="no account exists yet"):
        check_exposure("0.0.0.0", has_accounts=False)


def test_mailbot_web_refuses_a_public_address_without_an_account(console):
    proc = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(console.config_path),
                           "web", "--listen", "0.0.0.0:8999"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mailbot: error: refusing to serve the console on 0.0.0.0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mailbot_web_serves_the_console_on_loopback_under_uvicorn(console):
    import httpx2 as httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config",
                             str(console.config_path), "web", "--listen", f"127.0.0.1:{port}"],
                            cwd=ROOT, env=os.environ.copy(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = None
        for _ in range(300):  # up to 30 s for the process to start listening
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert health is not None, proc.communicate(timeout=10)
        assert health.status_code == 503 and health.json()["reason"] == "no pass recorded yet"
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 302 and page.headers["location"] == "/login?next=%2F"
        assert "server" not in page.headers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "no account yet" in proc.stderr.read()


@pytest.mark.parametrize(("setting", "fragment"), [
    ('listen = "8080"', "[web] listen must be HOST:PORT"),
    ('listen = "127.0.0.1:99999"', "[web] listen must be HOST:PORT"),
    ("session_hours = 0", "[web] session_hours must be greater than zero"),
    ("low_stock_threshold = -1", "[web] low_stock_threshold must be zero or more"),
    ('behind_tls = "yes"', "[web] behind_tls must be true or false"),
])
def test_a_bad_web_setting_is_one_clear_error_naming_the_key(tmp_path, setting, fragment):
    from botconfig import write_config

    from mailbot import config as config_module

    path = write_config(tmp_path, f"[web]\n{setting}\n")
    with pytest.raises(ConfigError) as error:
        config_module.load(path)
    assert fragment in str(error.value) and str(path) in str(error.value)


def test_metrics_count_the_faults_of_the_last_pass_and_the_alerts_by_title(console):
    """The IMAP, SMTP and store faults a pass met, and the operators' alerts (a failed delivery,
    an unreachable mailbox), reach the metrics."""
    store = console.store
    with store.transaction() as conn:
        panel.record_pass(conn, at=console.clock(), duration_seconds=0.5, errors=2)
        for title in ("Entrega fallida", "Entrega fallida", "Buzón inaccesible"):
            store.log_event(conn, "alert", title=title, detail="x")
    console.add_user()
    text = console.client().get("/metrics", headers={
        "authorization": f"Bearer {console.token()}"}).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("mailbot_last_pass_errors", ())] == 2
    assert samples[("mailbot_alerts_total", (("title", "Entrega fallida"),))] == 2
    assert samples[("mailbot_alerts_total", (("title", "Buzón inaccesible"),))] == 1
