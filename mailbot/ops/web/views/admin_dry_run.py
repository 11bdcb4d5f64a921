"""The dry-run page (`/admin/ensayo`, admins only: `auth.guard` refuses operators the whole
/admin prefix and checks the CSRF token of every form posted here): `mailbot dry-run` from the
browser.

The admin uploads .eml files, names stored mails by their references, or asks for the last N
days (bounded as the rules page's preview is); the mails are decided with the rules and
templates in use (the folders on disk now, as the next pass would use them) on a snapshot of
the store: nothing is stored, no key is bound, nothing is sent or filed. Optionally against a
stored version of the rules or templates: then only the mails whose answers change, side by
side. Each input that cannot be decided is named with the fix. The work is
mailbot.ops.rehearsal's (over mailbot.run.dryrun, the one engine); the JSON twin
(`POST /api/v1/admin/dry-run`) gives the objects of `mailbot dry-run --json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from mailbot.errors import MailbotError
from mailbot.ops import folder_edits, rehearsal
from mailbot.ops.dryrun import change_json
from mailbot.ops.rule_edits import MAX_PREVIEW_DAYS, MAX_PREVIEW_MAILS, changed
from mailbot.ops.web.auth import require_admin
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.mail_view import framed
from mailbot.ops.web.views.admin_registry import clean_name, read_upload
from mailbot.ops.web.views.admin_templates import HEADERS

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(require_admin)])

BASE = "/admin/ensayo"
MAX_TEXT = 20_000  # characters of the references field: 100 references and their commas


@dataclass
class Asked:
    """The form as submitted (kept to show it again) and what it asks, or its errors."""

    references: str = ""
    days: str = ""
    against: str = ""
    uploads: list[rehearsal.Upload] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    wanted: list[str] = field(default_factory=list)  # the references, parsed
    problems: list[rehearsal.Problem] = field(default_factory=list)

    @property
    def versus(self) -> tuple[str, int] | None:
        kind, _, number = self.against.partition("-")
        return (kind, int(number)) if self.against else None


def _words(request: Request) -> Any:
    return request.app.state.renderer.gettext


def _dirs(web: WebContext) -> Any:
    from mailbot.run.wiring import templates_dir

    return templates_dir(web.config)


def _versions(web: WebContext) -> list[dict[str, Any]]:
    """The stored versions an admin can run against, newest first (rules, then templates)."""
    return [{"value": f"{kind}-{v['number']}", "kind": kind, "number": v["number"],
             "hash": v["hash"][:8]}
            for kind in rehearsal.KINDS for v in reversed(folder_edits.versions(web.store, kind))]


def _page(request: Request, asked: Asked, *, found: rehearsal.Rehearsal | None = None,
          error: str | None = None, status: int = 200) -> Response:
    from mailbot.ops.web.pages import render

    web = context(request)
    _ = _words(request)
    problems = [*asked.problems, *(found.problems if found else [])]
    diffs = [changed(c).text_diff for c in found.changes] if found and found.changes else []
    return render(request, "admin_dry_run.html", {
        "title": _("Dry run"), "asked": asked, "found": found, "error": error,
        "problems": [(p.label, p.words.say(_)) for p in problems], "diffs": diffs,
        "versions": _versions(web), "framed": framed, "max_days": MAX_PREVIEW_DAYS,
        "max_mails": MAX_PREVIEW_MAILS}, status_code=status, headers=HEADERS)


@router.get(BASE)
def show(request: Request, referencias: str = "") -> Response:
    return _page(request, Asked(references=referencias[:MAX_TEXT]))


async def _asked(request: Request) -> Asked:
    """The submitted form, each field checked: a field error names the field and the fix."""
    _ = _words(request)
    form = await request.form()
    text = str(form.get("references") or "")
    asked = Asked(references=text[:MAX_TEXT], days=str(form.get("days") or "").strip(),
                  against=str(form.get("against") or "").strip())
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    for upload in files[:rehearsal.MAX_UPLOADS + 1]:
        data = await read_upload(request, upload)
        asked.uploads.append(rehearsal.Upload(clean_name(upload.filename, "correo.eml"), data))
    if len(files) > rehearsal.MAX_UPLOADS:
        asked.errors["files"] = _("Upload at most %(most)s files at a time.",
                                  most=rehearsal.MAX_UPLOADS)
    if len(text) > MAX_TEXT:
        asked.errors["references"] = _("Too long: write at most %(most)s references.",
                                       most=rehearsal.MAX_REFERENCES)
    asked.wanted, asked.problems = rehearsal.references_in(asked.references)
    if len(asked.wanted) > rehearsal.MAX_REFERENCES:
        asked.errors["references"] = _("Too long: write at most %(most)s references.",
                                       most=rehearsal.MAX_REFERENCES)
    if asked.days and not (asked.days.isdigit() and 1 <= int(asked.days) <= MAX_PREVIEW_DAYS):
        asked.errors["days"] = _("Write a whole number of days between 1 and %(most)s.",
                                 most=MAX_PREVIEW_DAYS)
    kind, _sep, number = asked.against.partition("-")
    if asked.against and not (kind in rehearsal.KINDS and number.isdigit()
                              and 0 < int(number) < 2**31):
        asked.errors["against"] = _("Choose a version from the list.")
    if not (asked.uploads or asked.wanted or asked.problems or asked.days
            or asked.errors):
        asked.errors["files"] = _("Give at least one .eml file, a reference or a number of "
                                  "days.")
    return asked


def _run(request: Request, asked: Asked) -> rehearsal.Rehearsal:
    web = context(request)
    return rehearsal.rehearse(web.config, web.store, web.rules_now(), _dirs(web),
                              uploads=asked.uploads, references=asked.wanted,
                              days=int(asked.days) if asked.days else None,
                              against=asked.versus)


def _refusal(request: Request, exc: Exception) -> str:
    _ = _words(request)
    if isinstance(exc, folder_edits.EditRefused) and exc.code == "unknown":
        return _("There is no such version: choose one from the list.")
    return _("The dry run could not run: %(reason)s", reason=str(exc))


@router.post(BASE)
async def run(request: Request) -> Response:
    """Decide the submitted mails on a snapshot of the store; nothing is kept."""
    from starlette.concurrency import run_in_threadpool

    asked = await _asked(request)
    if asked.errors:
        return _page(request, asked, status=422)
    try:
        found = await run_in_threadpool(_run, request, asked)
    except (MailbotError, OSError) as exc:  # a version that does not load, a mailbox down
        return _page(request, asked, error=_refusal(request, exc), status=422)
    return _page(request, asked, found=found)


@api.post("/dry-run", summary="The dry run of uploaded .eml files (`files`), stored mails "
                              "(`references`) or the last `days` days, optionally `against` "
                              "a stored version (rules-N, templates-N); nothing is kept")
async def api_run(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    _ = _words(request)
    asked = await _asked(request)
    if asked.errors:
        return JSONResponse({"detail": asked.errors}, 422)
    show = str((await request.form()).get("show") or "") in ("1", "true", "on")
    try:
        found = await run_in_threadpool(_run, request, asked)
    except (MailbotError, OSError) as exc:
        return JSONResponse({"detail": _refusal(request, exc)}, 422)

    body: dict[str, Any] = {
        "at": found.at.isoformat() + "Z", "mails": found.total, "skipped": found.skipped,
        "against": asked.against or None,
        "problems": [{"input": p.label, "problem": p.words.say(_)}
                     for p in [*asked.problems, *found.problems]]}
    if found.changes is None:
        said = request.app.state.renderer.hit_reason
        body["results"] = [r.to_json(show=show, said=said) for r in found.results]
    else:
        body["changes"] = [change_json(c, show=show) for c in found.changes]
    return Response(json.dumps(body, ensure_ascii=False, default=str),
                    media_type="application/json")
