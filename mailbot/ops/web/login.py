"""The login form and logout. Each login starts a new session (a fixed session id cannot be
planted); a failed or refused login is recorded in the store and logged, and says only that
the name or the password is wrong, never which."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailbot.ops.accounts import LOGIN_LIMITED
from mailbot.ops.web.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    client_address,
    current_user,
    new_login_csrf,
    session_principal,
    set_cookie,
    set_login_cookie,
    sign,
)
from mailbot.ops.web.context import context
from mailbot.ops.web.pages import render

log = logging.getLogger("mailbot.web")
router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path of this site: "/x?y" yes; "//evil.example", "https://...", "/\\x" no."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(c in target for c in "\r\n\t")):
        return "/"
    return target


def login_form(request: Request, *, next_path: str, error: str = "", name: str = "",
               status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    new_login_csrf(request)
    renderer = request.app.state.renderer
    response = render(request, "login.html", {
        "title": renderer.gettext("Sign in"), "next": next_path, "error": error, "name": name,
    }, status_code=status_code, headers=headers)
    set_login_cookie(request, response)
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if session_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_form(request, next_path=safe_next(next))


@router.post("/login")
def login(request: Request, name: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=1000)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    web = context(request)
    _ = request.app.state.renderer.gettext
    client = client_address(request)
    result = web.accounts.login(name, password, client=client, now=web.now(),
                                limit=web.login_limit)
    if result.outcome == LOGIN_LIMITED:
        log.warning("event=login_limited name=%r client=%s", name[:200], client)
        minutes = web.config.web.login_window_minutes
        return login_form(request, next_path=safe_next(next), name=name, status_code=429,
                          headers={"Retry-After": str(minutes * 60)},
                          error=_("Too many failed attempts. Try again in %(minutes)d "
                                  "minutes.", minutes=minutes))
    if result.user is None:
        log.warning("event=login_failed name=%r client=%s", name[:200], client)
        return login_form(request, next_path=safe_next(next), name=name, status_code=401,
                          error=_("Wrong name or password."))
    token, _session = web.accounts.start_session(result.user, now=web.now(),
                                                 lifetime=web.session_lifetime)
    log.info("event=login name=%s client=%s", result.user.name, client)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, sign(web, token, "session"),
               int(web.session_lifetime.total_seconds()))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    web = context(request)
    principal = current_user(request)
    if principal.session is not None:
        web.accounts.end_session(principal.session, now=web.now())
        log.info("event=logout name=%s", principal.name)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response
