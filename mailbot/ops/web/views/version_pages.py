"""One version of a versioned folder (the rules, the templates) as a console page: its diff
against the version before, what writing it back would change in the folder as it is now, and
the form that writes it back (mailbot.ops.folder_edits.save, through the kind's own check).
Both admin pages (views/admin_templates.py, views/admin_rules.py) serve their versions here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from mailbot.ops import folder_edits
from mailbot.ops.web.context import context


@dataclass(frozen=True)
class Folder:
    """Which folder a version page is about, and where its pages are."""

    kind: str  # rules, templates
    home: str  # the admin page listing it: /admin/reglas
    home_label: str  # msgid of the link back
    title: str  # msgid: "Rules version %(number)s"
    directory: Callable[[Any], Any]  # WebContext -> the folder on disk


def listing(web: Any, kind: str, digest: str) -> list[dict[str, Any]]:
    """The folder's versions, newest first, the one holding `digest` marked in use."""
    return [{"number": v["number"], "hash": v["hash"][:8], "first_used_at": v["first_used_at"],
             "files": len(v["files"]), "in_use": v["hash"] == digest}
            for v in reversed(folder_edits.versions(web.store, kind))]


def listing_json(web: Any, kind: str, digest: str) -> list[dict[str, Any]]:
    return [{**v, "first_used_at": v["first_used_at"].isoformat() + "Z"}
            for v in listing(web, kind, digest)]


def _render(request: Request, values: dict[str, Any], status: int, headers: dict[str, str]
            ) -> Response:
    from mailbot.ops.web.pages import render

    return render(request, "admin_version.html", values, status_code=status, headers=headers)


def _values(request: Request, folder: Folder, number: int) -> dict[str, Any]:
    web = context(request)
    _ = request.app.state.renderer.gettext
    store, kind = web.store, folder.kind
    files = folder_edits.files_of(store, kind, number)
    previous = folder_edits.files_of(store, kind, number - 1) if number > 1 else {}
    now = folder_edits.current(store, kind, folder.directory(web))
    return {"title": _(folder.title, number=number), "home": folder.home,
            "home_label": _(folder.home_label), "number": number, "files": sorted(files),
            "diff": folder_edits.diff(previous, files, f"{kind} v{number - 1}",
                                      f"{kind} v{number}") if number > 1 else "",
            "first": number == 1,
            "revert_diff": folder_edits.diff(now.files, files, f"{kind} (folder now)",
                                             f"{kind} v{number}"),
            "in_use": now.number, "base": now.digest, "problems": [], "error": None}


def show(request: Request, folder: Folder, number: int, headers: dict[str, str]) -> Response:
    try:
        values = _values(request, folder, number)
    except folder_edits.EditRefused:
        raise HTTPException(404, request.app.state.renderer.gettext(
            "There is no such version.")) from None
    return _render(request, values, 200, headers)


def revert(request: Request, folder: Folder, number: int, base: str,
           save: Callable[[dict[str, bytes], str | None], folder_edits.Saved],
           headers: dict[str, str]) -> Response:
    """Write version `number`'s files back through `save` (the kind's check, the base hash):
    refused with the check's lines, nothing written; else back to the folder's page."""
    web = context(request)
    _ = request.app.state.renderer.gettext
    try:
        files = folder_edits.files_of(web.store, folder.kind, number)
    except folder_edits.EditRefused:
        raise HTTPException(404, _("There is no such version.")) from None
    try:
        saved = save(files, base or None)
    except folder_edits.EditRefused as exc:
        message = (_("Someone changed this folder since you opened this page: nothing was "
                     "written. Reload the page and try again.") if exc.code == "conflict"
                   else _("This version does not pass the check as the folders are now: "
                          "nothing was written.")
                   if exc.code == "invalid" else _("Nothing was saved: %(reason)s",
                                                    reason=str(exc)))
        values = _values(request, folder, number)
        values.update(problems=exc.problems, error=message)
        return _render(request, values, 409 if exc.code == "conflict" else 422, headers)
    return RedirectResponse(f"{folder.home}?restaurada={number}&version={saved.number}",
                            status_code=303)
