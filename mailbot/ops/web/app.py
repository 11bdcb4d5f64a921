"""`create_app(config)`: the console as one FastAPI app over one context (config, store, rules,
accounts, clock), with no module-level state, so tests build as many apps as they like.

Every route runs `auth.guard` first (a global dependency); the static files are served outside
the routes and need no login. The OpenAPI document is at /api/v1/openapi.json, behind the same
guard as the API it describes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailbot import __version__
from mailbot.config import Config
from mailbot.ops.accounts import Accounts
from mailbot.ops.timefmt import business_zone
from mailbot.ops.web import login
from mailbot.ops.web.auth import Forbidden, NotAuthenticated, guard
from mailbot.ops.web.context import WebContext, load_secret_key, secret_key_path, utc_clock
from mailbot.ops.web.i18n import load_translations
from mailbot.ops.web.pages import STATIC_DIR, Renderer, render
from mailbot.ops.web.views import (
    admin,
    admin_dry_run,
    admin_registry,
    admin_rules,
    admin_templates,
    health,
    mail,
    mails,
    panel,
    serials,
)
from mailbot.ops.web.views import reviews as review_queue
from mailbot.ruleset import Ruleset
from mailbot.store import Store

API_PREFIX = "/api/v1"


def create_app(config: Config, *, store: Store | None = None, rules: Ruleset | None = None,
               clock: Callable[[], dt.datetime] = utc_clock,
               hasher: PasswordHasher | None = None) -> FastAPI:
    """The console over `config`'s store and rules (or the ones given, for tests)."""
    from mailbot.run.wiring import open_rules, open_store

    rules = rules if rules is not None else open_rules(config)
    store = store if store is not None else open_store(config)
    zone = business_zone(config, rules)
    web = WebContext(config=config, store=store, rules=rules,
                     accounts=Accounts(store, hasher=hasher), zone=zone,
                     secret_key=load_secret_key(secret_key_path(config)), clock=clock)
    app = FastAPI(title="mailbot", version=__version__, dependencies=[Depends(guard)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    app.state.renderer = Renderer(load_translations(), zone)
    app.state.metrics = health.metrics_registry(web)
    for module in (login, health, panel, admin, admin_templates, admin_rules,
                   admin_registry, admin_dry_run):
        app.include_router(module.router)
        if hasattr(module, "api"):
            app.include_router(module.api)  # the admin pages' JSON twins, admins only
    app.include_router(review_queue.router)  # the review queue, one task and its actions
    for module in (mails, mail, serials):  # the log, one mail, one serial
        app.include_router(module.router)

    @app.get(f"{API_PREFIX}/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_error_pages(app)
    return app


def _add_error_pages(app: FastAPI) -> None:
    """Refusals as the client expects them: a page redirects to the login form or shows a
    Spanish error page; the API answers JSON with the status."""

    @app.exception_handler(NotAuthenticated)
    def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if exc.api:
            return JSONResponse({"detail": "authentication required"}, 401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=302)

    @app.exception_handler(Forbidden)
    def forbidden(request: Request, exc: Forbidden) -> Response:
        if exc.api:
            return JSONResponse({"detail": exc.reason}, 403)
        _ = request.app.state.renderer.gettext
        message = (_("This form has expired or did not come from this console. Go back, "
                     "reload the page and try again.") if exc.reason == "csrf"
                   else _("This page is for admins only."))
        return render(request, "error.html", {"title": _("Not allowed"), "message": message},
                      status_code=403)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or exc.status_code == 405:
            return JSONResponse({"detail": exc.detail}, exc.status_code,
                                headers=getattr(exc, "headers", None))
        _ = request.app.state.renderer.gettext
        message = _("There is no such page.") if exc.status_code == 404 else str(exc.detail)
        return render(request, "error.html", {"title": _("Not found") if exc.status_code == 404
                                              else _("Error"), "message": message},
                      status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": jsonable_errors(exc)}, 422)


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
