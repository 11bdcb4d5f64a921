"""Server-rendered pages, each with its JSON twin (Datasette's pattern: the API is the same view
asked for JSON, not a second program).

A view is a plain function that returns the page's data (JSON-able: strings, numbers, lists,
dicts, ISO times). `page()` registers it twice: at its HTML path, rendered into a template, and
at its /api/v1 path, returned as JSON (and documented in the OpenAPI schema by its response
model). Both take the same query parameters, because both are the same function.

Templates escape everything (autoescape on every file), fail loudly on a missing variable
(StrictUndefined), and speak through gettext: `{{ _("Panel") }}`, `{% trans %}`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from babel.numbers import format_decimal
from babel.support import Translations
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mailbot.ops.timefmt import operator_time
from mailbot.ops.web.hit_words import hit_reason
from mailbot.ops.web.i18n import DEFAULT_LOCALE, html_lang
from mailbot.ops.web.outcome_words import kind_words, outcome_words
from mailbot.wording import N_ as N_  # the one marker; views import it from here

TEMPLATES_DIR = Path(__file__).parent / "templates"
# The policy of an admin page that shows no mail and no preview: our stylesheet and our own
# forms, nothing else (no script, no frame, no image).
FORMS_ONLY_POLICY = ("default-src 'none'; style-src 'self'; form-action 'self'; "
                     "frame-ancestors 'none'; base-uri 'none'")
STATIC_DIR = Path(__file__).parent / "static"


class Renderer:
    """The console's Jinja2 environment, one per app (no module-level loader)."""

    def __init__(self, translations: Translations, zone: dt.tzinfo,
                 locale: str = DEFAULT_LOCALE) -> None:
        self.locale = locale
        self.translations = translations
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True, undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
        self.env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        self.env.filters["when"] = lambda moment: operator_time(moment, zone)
        self.env.filters["number"] = lambda n: format_decimal(n, locale=locale)
        self.env.filters["outcome"] = outcome_words(translations.gettext)
        self.env.filters["kind"] = kind_words(translations.gettext)
        self.hit_reason = hit_reason(translations.gettext)  # also for the JSON twins
        self.env.filters["hit_reason"] = self.hit_reason
        self.env.globals["html_lang"] = html_lang(locale)

    def gettext(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    def render(self, name: str, values: Mapping[str, Any], *, status_code: int = 200,
               headers: Mapping[str, str] | None = None) -> HTMLResponse:
        html = self.env.get_template(name).render(values)
        return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))


def render(request: Request, name: str, values: Mapping[str, Any] | None = None, *,
           status_code: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """Render template `name` for `request`: with the signed-in account, its CSRF token (every
    form carries it) and the current path, besides `values`."""
    from mailbot.ops.web.auth import csrf_token_for, principal_of

    renderer: Renderer = request.app.state.renderer
    page = {"request_path": request.url.path, "user": principal_of(request),
            "csrf_token": csrf_token_for(request), "title": "", **(values or {})}
    return renderer.render(name, page, status_code=status_code, headers=headers)


def page(router: APIRouter, *, html: str, api: str, template: str, title: str,
         response_model: Any = None, summary: str = "",
         headers: Mapping[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Serve the decorated view at `html` (rendered into `template`) and at `api` (as JSON).

    The view takes FastAPI parameters (it must take `request: Request`) and returns a dict.
    `title` is an English msgid marked with N_(). The HTML route is left out of the OpenAPI
    schema; the JSON route is in it. `headers` go with the HTML (a page's own CSP).
    """

    def decorate(view: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        @functools.wraps(view)
        def as_html(*args: Any, **kwargs: Any) -> HTMLResponse:
            request = kwargs["request"]
            return render(request, template, {
                "title": request.app.state.renderer.gettext(title), **view(*args, **kwargs)},
                headers=headers)

        @functools.wraps(view)
        def as_json(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return view(*args, **kwargs)

        router.add_api_route(html, as_html, methods=["GET"], response_class=HTMLResponse,
                             response_model=None, include_in_schema=False)
        router.add_api_route(api, as_json, methods=["GET"], response_model=response_model,
                             summary=summary or None)
        return view

    return decorate
