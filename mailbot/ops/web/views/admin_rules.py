"""The rules admin page (`/admin/reglas`, admins only: `auth.guard` refuses operators the whole
/admin prefix and checks the CSRF token of every form posted here).

One form over the rules an admin changes most: the catalogue (systems and aliases, clashes
found without accents or case), the eligibility date, prices and the January discount, business
hours and holidays, the unlock policy and limits. Every field is checked on its own and refused
next to it with the fix (mailbot.ops.web.rules_form); then the whole folder as it would be is
checked as `mailbot rules check` checks it, and the stored mails of the last N days are decided
again with the rules in use and with the proposed ones ("Este cambio altera 12 respuestas").
Only from that preview can the change be saved, and only the very content previewed
(`previewed`, its hash), over the folder as it was shown (`base`: 409 when it changed). Versions:
a list here, each one's diff and revert in views/version_pages.py. The work is
mailbot.ops.rule_edits'.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from mailbot.errors import MailbotError
from mailbot.ops import rule_edits
from mailbot.ops.folder_edits import EditRefused, is_shipped
from mailbot.ops.web import rules_form
from mailbot.ops.web.auth import require_admin
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.pages import FORMS_ONLY_POLICY, N_
from mailbot.ops.web.views import version_pages
from mailbot.ruleset import check_rules
from mailbot.run.versions import content_hash

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1/admin/rules", dependencies=[Depends(require_admin)])

BASE = "/admin/reglas"
HEADERS = {"Content-Security-Policy": FORMS_ONLY_POLICY}
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
DEFAULT_DAYS = 7


def _dirs(web: WebContext) -> tuple[Any, Any]:
    from mailbot.run.wiring import rules_dir, templates_dir

    return rules_dir(web.config), templates_dir(web.config)


VERSIONS = version_pages.Folder("rules", BASE, N_("Back to the rules"),
                                N_("Rules version %(number)s"), lambda web: _dirs(web)[0])


def _state(web: WebContext) -> dict[str, Any]:
    """The folder now: its values (None when it does not load: its problems instead)."""
    directory, _templates = _dirs(web)
    now = rule_edits.current(web.store, directory)
    ruleset, problems = check_rules(directory)
    values = rule_edits.values(now.files) if ruleset is not None else None
    return {"now": now, "values": values, "broken": [str(p) for p in problems],
            "directory": str(directory), "shipped": is_shipped("rules", directory)}


def _page(request: Request, *, fields: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, problems: list[str] | None = None,
          error: str | None = None, preview: rule_edits.Preview | None = None,
          previewed: str = "", base: str | None = None, status: int = 200,
          **extra: Any) -> Response:
    from mailbot.ops.web.pages import render

    web = context(request)
    _ = request.app.state.renderer.gettext
    state = _state(web)
    values = state["values"]
    shown = fields if fields is not None else (
        rules_form.fields_of(values) if values is not None else {})
    shown.setdefault("days", str(DEFAULT_DAYS))
    return render(request, "admin_rules.html", {
        "title": _("Rules"), **state, "fields": shown, "errors": errors or {},
        "problems": problems or [], "error": error, "preview": preview,
        "previewed": previewed, "base": base or state["now"].digest,
        "system_rows": int(rows) if (rows := shown.get("system_rows", "")).isdigit() else 0,
        "versions": version_pages.listing(web, rule_edits.KIND, state["now"].digest),
        "saved": None, "restored": None, "restored_as": None, "note": None, **extra},
        status_code=status, headers=HEADERS)


@router.get(BASE)
def show(request: Request, guardado: int | None = None, restaurada: int | None = None,
         version: int | None = None) -> Response:
    return _page(request, saved=guardado, restored=restaurada, restored_as=version)


def _proposed(request: Request, fields: dict[str, str]
              ) -> tuple[dict[str, bytes] | None, dict[str, str], list[str], str | None]:
    """The folder's files with the form written in: (files, field errors, check lines,
    message); files None when something is refused."""
    web = context(request)
    _ = request.app.state.renderer.gettext
    state = _state(web)
    if state["values"] is None:
        return None, {}, state["broken"], _("The rules folder does not pass its check as it "
                                            "is: fix it by hand or write a version back.")
    new, errors = rules_form.parse(fields, state["values"], _)
    if errors:
        return None, errors, [], _("Nothing was saved: correct the fields marked below.")
    files = rule_edits.written(state["now"].files, new)
    directory, templates = _dirs(web)
    problems = rule_edits.check(files, directory, templates)
    if problems:
        return None, {}, problems, _("With these changes the rules do not pass the check: "
                                     "nothing was written.")
    return files, {}, [], None


async def _fields(request: Request) -> dict[str, str]:
    return rules_form.submitted(await request.form())


@router.post(BASE + "/vista-previa")
async def preview(request: Request) -> Response:
    """Check the form and decide the last N days' stored mails with the current rules and
    with the proposed ones; nothing is written."""
    fields = await _fields(request)
    return _preview(request, fields)


def _preview(request: Request, fields: dict[str, str], note: str | None = None) -> Response:
    web = context(request)
    _ = request.app.state.renderer.gettext
    base = fields.get("base", "")
    files, errors, problems, error = _proposed(request, fields)
    days = fields.get("days", "").strip()
    if files is not None and not (days.isdigit()
                                  and 1 <= int(days) <= rule_edits.MAX_PREVIEW_DAYS):
        errors = {"days": _("Write a whole number of days between 1 and %(most)s.",
                            most=rule_edits.MAX_PREVIEW_DAYS)}
        files, error = None, _("Nothing was saved: correct the fields marked below.")
    if files is None:
        return _page(request, fields=fields, errors=errors, problems=problems, error=error,
                     base=base, status=422)
    directory, templates = _dirs(web)
    if files == rule_edits.current(web.store, directory).files:
        return _page(request, fields=fields, base=base,
                     error=_("The form changes nothing in the rules."))
    try:
        found = rule_edits.preview(web.config, web.store, web.rules_now(), templates,
                                   files, int(days))
    except (MailbotError, OSError) as exc:  # its mailbox cannot be reached, say
        return _page(request, fields=fields, base=base, status=422,
                     error=_("The preview could not run: %(reason)s", reason=str(exc)))
    return _page(request, fields=fields, preview=found, previewed=content_hash(files),
                 base=base, note=note)


@router.post(BASE)
async def save(request: Request) -> Response:
    """Write the previewed change: the same checks again, then the same content as the
    preview's, over the folder as the page showed it."""
    web = context(request)
    _ = request.app.state.renderer.gettext
    fields = await _fields(request)
    directory, templates = _dirs(web)
    if fields.get("base") and fields["base"] != rule_edits.current(web.store, directory).digest:
        return _page(request, fields=fields, error=_conflict(request), base=fields["base"],
                     status=409)
    files, errors, problems, error = _proposed(request, fields)
    if files is None:
        return _page(request, fields=fields, errors=errors, problems=problems, error=error,
                     base=fields.get("base", ""), status=422)
    if content_hash(files) != fields.get("previewed"):
        return _preview(request, fields, note=_(
            "These are not the changes previewed: look at their preview, then save."))
    try:
        saved = rule_edits.save(web.store, directory, templates, files,
                                base=fields.get("base") or None, now=web.now())
    except EditRefused as exc:
        message = (_conflict(request) if exc.code == "conflict"
                   else _("With these changes the rules do not pass the check: nothing was "
                          "written.") if exc.code == "invalid"
                   else _("Nothing was saved: %(reason)s", reason=str(exc)))
        return _page(request, fields=fields, problems=exc.problems, error=message,
                     base=fields.get("base", ""), status=409 if exc.code == "conflict" else 422)
    return RedirectResponse(f"{BASE}?guardado={saved.number}", status_code=303)


def _conflict(request: Request) -> str:
    return request.app.state.renderer.gettext(
        "Someone changed the rules since you opened this page: nothing was saved. Reload the "
        "page and make the change again.")


@router.get(BASE + "/versiones/{number}")
def version(request: Request, number: Number) -> Response:
    return version_pages.show(request, VERSIONS, number, HEADERS)


@router.post(BASE + "/versiones/{number}/restaurar")
def revert(request: Request, number: Number,
           base: Annotated[str, Form(max_length=64)] = "") -> Response:
    web = context(request)
    directory, templates = _dirs(web)
    return version_pages.revert(
        request, VERSIONS, number, base,
        lambda files, base: rule_edits.save(web.store, directory, templates, files,
                                            base=base, now=web.now()), HEADERS)


# --- the JSON twins: the form's state, and the preview of a change ------------------------------

def _json(value: Any) -> Any:
    import dataclasses
    import datetime as dt
    from decimal import Decimal

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@api.get("", summary="The rules page's values, the folder's hash and version, the versions")
def api_state(request: Request) -> dict[str, Any]:
    web = context(request)
    state = _state(web)
    return {"directory": state["directory"], "hash": state["now"].digest,
            "number": state["now"].number, "shipped": state["shipped"],
            "problems": state["broken"], "values": _json(state["values"]),
            "fields": rules_form.fields_of(state["values"]) if state["values"] else None,
            "versions": version_pages.listing_json(web, rule_edits.KIND, state["now"].digest)}


@api.post("/preview", summary="The dry run of a change of the rules page's fields (the same "
                              "fields as the form, JSON); nothing is written")
async def api_preview(request: Request) -> Response:
    from fastapi.responses import JSONResponse

    web = context(request)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "a JSON object of the form's fields"}, 422)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "a JSON object of the form's fields"}, 422)
    fields = rules_form.submitted(body)
    files, errors, problems, error = _proposed(request, fields)
    if files is None:
        return JSONResponse({"detail": error, "errors": errors, "problems": problems}, 422)
    days = int(fields["days"]) if fields.get("days", "").isdigit() else DEFAULT_DAYS
    _directory, templates = _dirs(web)
    found = rule_edits.preview(web.config, web.store, web.rules_now(), templates, files,
                               days)
    return JSONResponse({"previewed": content_hash(files), **_json(found)})
