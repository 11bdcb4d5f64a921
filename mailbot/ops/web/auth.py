"""Who may come in: a browser session (a signed cookie naming a session kept in the store) or
an API token (`Authorization: Bearer TOKEN`), and a CSRF token on every form.

`guard` runs before every route of the app (a global dependency), so a new page cannot forget
it: every path but PUBLIC_PATHS (and the static files, served outside the routes) needs a live
session or token; /admin needs an admin; every POST from a browser session carries the
session's CSRF token, and the login form (before any session) a token of its own cookie.
Elsewhere a request that sends an Authorization header is judged by it alone: a browser never
adds one across sites, so token requests need no CSRF token, and a cookie never stands in for a
bad token. PUBLIC_PATHS take no account at all (their POSTs still need the login form's token).
Views read the account with `current_user(request)` or `Depends(current_user)`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature, TimestampSigner
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from mailbot.ops.accounts import ADMIN, Session, User, same_secret
from mailbot.ops.web.context import WebContext, context

log = logging.getLogger("mailbot.web")

SESSION_COOKIE = "mailbot_session"
LOGIN_COOKIE = "mailbot_login"  # the login form's CSRF token, before there is a session
LOGIN_COOKIE_SECONDS = 2 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PUBLIC_PATHS = frozenset({"/login", "/healthz"})
ADMIN_PREFIX = "/admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The account behind a request and how it came: "session" (with its session) or "token"."""

    user: User
    via: str
    session: Session | None = None

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def is_admin(self) -> bool:
        return self.user.role == ADMIN


class NotAuthenticated(Exception):
    """No live session or token: a page redirects to the login form, the API answers 401."""

    def __init__(self, api: bool) -> None:
        super().__init__("not authenticated")
        self.api = api


class Forbidden(Exception):
    def __init__(self, reason: str, api: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.api = api


def is_api(request: Request) -> bool:
    path = request.url.path
    return (path.startswith("/api/") or path == "/metrics"
            or "authorization" in request.headers)


def _signer(web: WebContext, salt: str) -> TimestampSigner:
    return TimestampSigner(web.secret_key, salt=f"mailbot.web.{salt}")


def sign(web: WebContext, value: str, salt: str) -> str:
    return _signer(web, salt).sign(value).decode("ascii")


def unsign(web: WebContext, signed: str | None, salt: str, max_age: float) -> str | None:
    if not signed or len(signed) > 500:
        return None
    try:
        return _signer(web, salt).unsign(signed, max_age=max_age).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        return None


def secure_cookies(request: Request) -> bool:
    """Secure cookies behind TLS: configured so, or the request came over https (uvicorn reads
    X-Forwarded-Proto from a trusted proxy)."""
    return context(request).config.web.behind_tls or request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str,
               max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=secure_cookies(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(request))


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        try:
            value = (await request.form()).get(CSRF_FIELD)
        except Exception:  # a malformed body: no token in it
            return None
        return value if isinstance(value, str) else None
    return None


async def guard(request: Request) -> None:
    """Every route's first dependency: authenticate, authorise /admin, check CSRF on POSTs."""
    web = context(request)
    path = request.url.path
    request.state.principal = None
    principal: Principal | None = None
    authorization = request.headers.get("authorization")
    if path in PUBLIC_PATHS:  # no account needed, none taken: a stale token cannot block them
        pass
    elif authorization is not None:
        scheme, _, token = authorization.partition(" ")
        user = None
        if scheme.lower() == "bearer" and token.strip():
            user = await run_in_threadpool(web.accounts.token_user, token.strip(),
                                           now=web.now())
        if user is None:
            log.warning("event=token_refused path=%s client=%s", path, client_address(request))
            raise NotAuthenticated(api=True)
        principal = Principal(user, "token")
    else:
        principal = await run_in_threadpool(session_principal, request)
        if principal is None:
            raise NotAuthenticated(api=is_api(request))
    request.state.principal = principal
    if ((path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"))
            and (principal is None or not principal.is_admin)):
        raise Forbidden("admins only", api=is_api(request))
    if request.method not in SAFE_METHODS:
        _refuse_oversize(request, web)
    if request.method not in SAFE_METHODS and (principal is None or principal.via == "session"):
        expected = (principal.session.csrf_token if principal is not None and principal.session
                    else unsign(web, request.cookies.get(LOGIN_COOKIE), "login",
                                LOGIN_COOKIE_SECONDS))
        if expected is None or not same_secret(await _submitted_csrf(request), expected):
            log.warning("event=csrf_refused path=%s client=%s", path, client_address(request))
            raise Forbidden("csrf", api=is_api(request))


def _refuse_oversize(request: Request, web: WebContext) -> None:
    """A file upload (multipart) larger than the console reads is refused before its body is
    read (the CSRF check would read it all): 413, or 411 without a Content-Length."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return
    length = request.headers.get("content-length", "")
    _ = request.app.state.renderer.gettext
    if not length.isdigit():
        raise HTTPException(411, _("The upload must say its size (Content-Length)."))
    if int(length) > web.max_upload_bytes:
        raise HTTPException(413, _("The file is larger than %(megabytes)s MB: split it and "
                                   "upload each part.",
                                   megabytes=web.max_upload_bytes // 1_000_000 or 1))


def session_principal(request: Request) -> Principal | None:
    web = context(request)
    token = unsign(web, request.cookies.get(SESSION_COOKIE), "session",
                   web.session_lifetime.total_seconds())
    if token is None:
        return None
    session = web.accounts.session(token, now=web.now())
    return Principal(session.user, "session", session) if session is not None else None


def principal_of(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def current_user(request: Request) -> Principal:
    """The signed-in account (a dependency: `user: Principal = Depends(current_user)`)."""
    principal = principal_of(request)
    if principal is None:
        raise NotAuthenticated(api=is_api(request))
    return principal


def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    """For an admin-only route outside /admin (everything under /admin is checked already)."""
    if not user.is_admin:
        raise Forbidden("admins only", api=True)
    return user


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def csrf_token_for(request: Request) -> str:
    """The token this request's forms carry: the session's, or (logged out) the login form's,
    made and set as a cookie by `login_csrf`."""
    principal = principal_of(request)
    if principal is not None and principal.session is not None:
        return principal.session.csrf_token
    return getattr(request.state, "login_csrf", "")


def new_login_csrf(request: Request) -> str:
    """A fresh token for the login form; `set_login_cookie` puts its signed copy in a cookie."""
    token = secrets.token_urlsafe(32)
    request.state.login_csrf = token
    return token


def set_login_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "login_csrf", None)
    if token:
        set_cookie(request, response, LOGIN_COOKIE, sign(context(request), token, "login"),
                   LOGIN_COOKIE_SECONDS)
