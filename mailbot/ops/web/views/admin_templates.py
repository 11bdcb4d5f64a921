"""The templates admin page (`/admin/plantillas`, admins only: `auth.guard` refuses operators the
whole /admin prefix, and checks the CSRF token of every form posted here).

List every template with its parts and the version in use; edit one (a textarea per part);
preview the edit on every sample case and on a stored mail by its reference (the dry run's
engine), text and HTML side by side, the HTML in a frame with `sandbox=""` (no script, no form,
no navigation: the template's HTML is never part of our page); save (checked first, refused
with the file, line and reason, nothing written); and, per version, its diff against the one
before and a revert (written back, checked and recorded the same way). The work is
mailbot.ops.template_edits'; this module turns forms into its calls and its answers into pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response

from mailbot.errors import MailbotError
from mailbot.ops import template_edits as edits
from mailbot.ops.web.auth import require_admin
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.mail_view import framed
from mailbot.ops.web.pages import N_
from mailbot.ops.web.views import version_pages
from mailbot.ruleset import Ruleset

router = APIRouter(include_in_schema=False)
# The JSON twins of the list and of one template, read-only; outside /admin, so admins only by
# their own dependency. Saving stays a form: it is a person's act, checked and previewed first.
api = APIRouter(prefix="/api/v1/admin/templates", dependencies=[Depends(require_admin)])

BASE = "/admin/plantillas"
NAME = r"^_?[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
# The page's own policy: no script at all; the previews' inline styles are allowed because the
# sandboxed frames inherit this policy (their HTML is ours, written by an admin).
PAGE_POLICY = ("default-src 'none'; img-src data:; style-src 'self' 'unsafe-inline'; "
               "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": PAGE_POLICY}
MAX_PART = 200_000  # characters in one textarea: far above any template, below a flood

TemplateName = Annotated[str, Path(pattern=NAME)]
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
Part = Annotated[str | None, Form(max_length=MAX_PART)]
Reference = Annotated[str, Form(max_length=100)]
Base = Annotated[str, Form(max_length=64)]


def _words(request: Request) -> Any:
    return request.app.state.renderer.gettext


def _directory(web: WebContext) -> Any:
    from mailbot.run.wiring import templates_dir

    return templates_dir(web.config)


def _rules(web: WebContext) -> Ruleset:
    return web.rules_now()


def _render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> Response:
    from mailbot.ops.web.pages import render

    return render(request, name, values, status_code=status, headers=HEADERS)


def _submitted(folder: edits.Folder, name: str, text: str | None,
               html: str | None) -> dict[str, str | None]:
    """The parts the form holds: a textarea emptied by the admin arrives as no value at all,
    so a part the template has on disk and the form left empty is an empty part (refused by
    the check), never the old text kept silently."""
    template = folder.template(name)
    if template is None:
        return {"text": text, "html": html}
    return {"text": "" if text is None and template.text is not None else text,
            "html": "" if html is None and template.html is not None else html}


@router.get(BASE)
def listing(request: Request, restaurada: int | None = None,
            version: int | None = None) -> Response:
    web = context(request)
    _ = _words(request)
    folder = edits.look(web.store, _directory(web))
    return _render(request, "admin_templates.html", {
        "title": _("Templates"), "folder": folder, "directory": str(folder.directory),
        "versions": version_pages.listing(web, edits.KIND, folder.digest), "restored": restaurada,
        "shipped": edits.is_shipped(folder.directory),
        "restored_as": version})


def _edit_page(request: Request, name: str, *, text: str | None = None,
               html: str | None = None, base: str | None = None, reference: str = "",
               previews: list[dict[str, Any]] | None = None,
               mail: dict[str, Any] | None = None, problems: list[str] | None = None,
               error: str | None = None, saved: int | None = None,
               status: int = 200) -> Response:
    web = context(request)
    _ = _words(request)
    folder = edits.look(web.store, _directory(web))
    template = folder.template(name)
    if template is None:
        raise HTTPException(404, _("There is no such template."))
    for p in previews or []:
        p["frame"] = framed(p["html"])
    if mail is not None:
        for r in mail["replies"]:
            r["frame"] = framed(r["html"])
    return _render(request, "admin_template.html", {
        "title": _("Template %(name)s", name=name), "template": template,
        "text": template.text if text is None else text,
        "html": template.html if html is None else html,
        "base": base or folder.digest, "number": folder.number, "reference": reference,
        "previews": previews, "mail": mail, "problems": problems or [], "error": error,
        "saved": saved, "shipped": edits.is_shipped(folder.directory)}, status)


@router.get(BASE + "/{name}")
def show(request: Request, name: TemplateName, guardado: int | None = None) -> Response:
    return _edit_page(request, name, saved=guardado)


@router.post(BASE + "/{name}/vista-previa")
def preview(request: Request, name: TemplateName, text: Part = None, html: Part = None,
            reference: Reference = "", base: Base = "") -> Response:
    """Render the submitted parts (not saved) on every sample and, given one, a stored mail."""
    web = context(request)
    _ = _words(request)
    folder = edits.look(web.store, _directory(web))
    values = {"text": text, "html": html, "base": base, "reference": reference.strip()}
    try:
        files = edits.edited(folder, name, _submitted(folder, name, text, html))
    except edits.EditRefused:
        raise HTTPException(404, _("There is no such template.")) from None
    rules = _rules(web)
    mail = error = None
    with edits.staged(files) as staged:
        previews = (edits.sample_previews(staged, name, rules) if not name.startswith("_")
                    else [])
        if values["reference"]:
            try:
                mail = edits.mail_preview(web.config, web.store, rules, staged,
                                          values["reference"])
            except (MailbotError, OSError) as exc:  # not stored, or its mailbox unreachable
                error = _("That mail cannot be previewed: %(reason)s", reason=str(exc))
    return _edit_page(request, name, previews=previews, mail=mail, error=error, **values)


@router.post(BASE + "/{name}")
def save(request: Request, name: TemplateName, text: Part = None, html: Part = None,
         base: Base = "") -> Response:
    """Check and write the edit; refused with the check's lines, nothing written."""
    web = context(request)
    _ = _words(request)
    directory = _directory(web)
    folder = edits.look(web.store, directory)
    try:
        files = edits.edited(folder, name, _submitted(folder, name, text, html))
        saved = edits.save(web.store, directory, _rules(web), files, base=base or None,
                           now=web.now())
    except edits.EditRefused as exc:
        if exc.code == "unknown":
            raise HTTPException(404, _("There is no such template.")) from None
        message = (_("Someone changed the templates since you opened this page: nothing was "
                     "saved. Copy your text, reload the page and edit again.")
                   if exc.code == "conflict"
                   else _("The template was not saved: fix these problems first.")
                   if exc.code == "invalid" else _("Nothing was saved: %(reason)s",
                                                    reason=str(exc)))
        return _edit_page(request, name, text=text, html=html, base=base,
                          problems=exc.problems, error=message,
                          status=409 if exc.code == "conflict" else 422)
    return RedirectResponse(f"{BASE}/{name}?guardado={saved.number}", status_code=303)


VERSIONS = version_pages.Folder("templates", BASE, N_("All templates"),
                                N_("Templates version %(number)s"), lambda web: _directory(web))


@router.get(BASE + "/versiones/{number}")
def version(request: Request, number: Number) -> Response:
    return version_pages.show(request, VERSIONS, number, HEADERS)


@router.post(BASE + "/versiones/{number}/restaurar")
def revert(request: Request, number: Number, base: Base = "") -> Response:
    """Write version `number`'s files back: checked and recorded as a save is."""
    web = context(request)
    return version_pages.revert(
        request, VERSIONS, number, base,
        lambda files, base: edits.save(web.store, _directory(web), _rules(web), files,
                                       base=base, now=web.now()), HEADERS)


@api.get("", summary="Every template with its parts, the version in use and the versions")
def api_listing(request: Request) -> dict[str, Any]:
    web = context(request)
    folder = edits.look(web.store, _directory(web))
    return {"directory": str(folder.directory), "hash": folder.digest, "number": folder.number,
            "shipped": edits.is_shipped(folder.directory),
            "templates": [{"name": t.name, "public": t.public, "text": t.text is not None,
                           "html": t.html is not None} for t in folder.templates],
            "versions": version_pages.listing_json(web, edits.KIND, folder.digest)}


@api.get("/{name}", summary="One template: the text of its parts as the folder holds them")
def api_template(request: Request, name: TemplateName) -> dict[str, Any]:
    web = context(request)
    folder = edits.look(web.store, _directory(web))
    template = folder.template(name)
    if template is None:
        raise HTTPException(404, "no such template")
    return {"name": template.name, "public": template.public, "text": template.text,
            "html": template.html, "hash": folder.digest, "number": folder.number}
