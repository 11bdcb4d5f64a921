"""The registry and key pool page (`/admin/registro`, admins only: `auth.guard` refuses
operators the whole /admin prefix and checks the CSRF token of every form posted here).

Keys left per system (every system of the catalogue, the empty ones marked: requests for them
wait); upload a registry or a key file and see what importing it would do (rows to add, to
change with each field old -> new, to refuse with line, column, reason and fix); confirm to
import it; download the registry and the issued keys as CSV or XLSX.

The confirm imports exactly the previewed file: the upload is kept server-side under its
SHA-256 (a folder beside the console's secret key, readable by this account only), the confirm
form names that hash and the digest of the preview, and the import plans again in its own
transaction and refuses when either differs (another file, or a store that changed since).
The work is mailbot.ops.import_preview's (the CLI's `--dry-run` too).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from mailbot.errors import ImportError_, MailbotError
from mailbot.ops import import_preview as engine
from mailbot.ops import registry_files
from mailbot.ops.pool_levels import levels
from mailbot.ops.web.auth import require_admin
from mailbot.ops.web.context import WebContext, context, secret_key_path
from mailbot.ops.web.mail_view import DOWNLOAD_HEADERS, content_disposition
from mailbot.ops.web.pages import FORMS_ONLY_POLICY
from mailbot.ruleset import Ruleset

router = APIRouter(include_in_schema=False)
# The JSON twins (levels, and a preview of an uploaded file), admins only by their own
# dependency (outside /admin). Importing stays a form: a person confirms what they saw.
api = APIRouter(prefix="/api/v1/admin/registry", dependencies=[Depends(require_admin)])

BASE = "/admin/registro"
HEADERS = {"Content-Security-Policy": FORMS_ONLY_POLICY}
SHOWN_ROWS = 200  # rows of each kind on the page; the counts are always whole
KEEP_UPLOADS_SECONDS = 24 * 3600
KIND_NAMES = {"registro": engine.REGISTRY, "claves": engine.KEYS}
SHA256 = r"^[0-9a-f]{64}$"
FILE_NAME = re.compile(r"[^\w.\- ]")

Kind = Annotated[str, Form(pattern=r"^(registro|claves)$")]
Hash = Annotated[str, Form(pattern=SHA256)]
Name = Annotated[str, Form(max_length=120)]


def _words(request: Request) -> Any:
    return request.app.state.renderer.gettext


def _render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> Response:
    from mailbot.ops.web.pages import render

    return render(request, name, values, status_code=status, headers=HEADERS)


def _rules(web: WebContext) -> Ruleset:
    """The rules on disk now (the next pass decides with their catalogue), else the console's."""
    from mailbot.run.wiring import open_rules

    try:
        return open_rules(web.config)
    except MailbotError:
        return web.rules


def uploads_dir(web: WebContext) -> Path:
    """Where previewed files wait for their confirm: beside the secret key, mode 0700."""
    folder = secret_key_path(web.config).parent / "imports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _keep(web: WebContext, payload: bytes) -> str:
    """Keep `payload` under its SHA-256 (mode 0600); forget uploads older than a day."""
    folder = uploads_dir(web)
    cutoff = time.time() - KEEP_UPLOADS_SECONDS
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    sha = engine.sha256_of(payload)
    temporary = folder / f".{sha}.{os.getpid()}.tmp"  # written whole, then renamed
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(payload)
    os.replace(temporary, folder / sha)
    return sha


def _kept(web: WebContext, sha: str) -> bytes | None:
    """The file previewed as `sha`, or None when it is not kept (or its bytes changed)."""
    try:
        payload = (uploads_dir(web) / sha).read_bytes()
    except OSError:
        return None
    return payload if engine.sha256_of(payload) == sha else None


def clean_name(name: str | None, default: str = "archivo.csv") -> str:
    """An uploaded file's name as the pages show it: no folder, no odd characters."""
    text = FILE_NAME.sub("_", Path(name or "").name).strip(" .")[:100]
    return text or default


def _levels(web: WebContext) -> list[dict[str, Any]]:
    with web.store.transaction() as conn:
        found = levels(conn, web.store, web.rules.catalogue,
                       low_stock_threshold=web.config.web.low_stock_threshold)
    return [level.to_json() for level in found]


@router.get(BASE)
def page(request: Request, hecho: str | None = None, archivo: str | None = None,
         altas: int | None = None, cambios: int | None = None,
         omitidas: int | None = None) -> Response:
    _ = _words(request)
    web = context(request)
    done = None
    if hecho in KIND_NAMES and altas is not None:
        done = {"kind": hecho, "file": (archivo or "")[:120], "add": altas,
                "change": cambios or 0, "skipped": omitidas or 0}
    return _render(request, "admin_registry.html", {
        "title": _("Registry and keys"), "levels": _levels(web), "done": done,
        "error": None})


async def read_upload(request: Request, upload: UploadFile) -> bytes:
    """The uploaded file's bytes; 413 past the console's bound (the guard already refused a
    body declared larger)."""
    limit = context(request).max_upload_bytes
    payload = await upload.read(limit + 1)
    if len(payload) > limit:
        raise HTTPException(413, _words(request)(
            "The file is larger than %(megabytes)s MB: split it and upload each part.",
            megabytes=limit // 1_000_000 or 1))
    return payload


@router.post(BASE + "/vista-previa")
async def preview(request: Request, file: UploadFile, tipo: Kind) -> Response:
    """Check the uploaded file and show what importing it would do; nothing is imported."""
    from starlette.concurrency import run_in_threadpool

    payload = await read_upload(request, file)
    return await run_in_threadpool(_preview_page, request, KIND_NAMES[tipo], tipo,
                                   clean_name(file.filename), payload)


def _preview_page(request: Request, kind: str, tipo: str, name: str,
                  payload: bytes) -> Response:
    _ = _words(request)
    web = context(request)
    try:
        result = engine.preview(web.store, _rules(web), kind, name, payload)
    except ImportError_ as exc:  # the file as a whole: no header, a missing column...
        return _render(request, "admin_registry.html", {
            "title": _("Registry and keys"), "levels": _levels(web), "done": None,
            "error": _("The file cannot be imported: %(reason)s", reason=str(exc))}, 422)
    sha = _keep(web, payload) if not result.blocked else result.sha256
    return _render(request, "admin_registry_preview.html", {
        "title": _("Import preview"), "preview": preview_json(result, _, limit=SHOWN_ROWS),
        "tipo": tipo, "sha256": sha, "name": name, "shown": SHOWN_ROWS,
        "error": None}, 422 if result.blocked else 200)


def preview_json(result: engine.Preview, gettext: Any, *,
                 limit: int | None = None) -> dict[str, Any]:
    """The engine's JSON (the CLI's `--dry-run --json`: `reason` and `fix` in English) with each
    refused row also in the console's words: `header`, its column as the file wrote it, and
    `reason_es`, `fix_es`, the same Words through the catalogue. The page shows these; the JSON
    twin returns them beside the English, so a script that matched the English keeps working."""
    out = result.to_json(limit=limit)
    out["refuse"] = [{**r.to_json(), "header": result.heading(r.column),
                      "reason_es": r.reason_words.say(gettext),
                      "fix_es": r.fix_words.say(gettext)}
                     for r in result.refuse[:len(out["refuse"])]]
    return out


@router.post(BASE + "/confirmar")
def confirm(request: Request, tipo: Kind, sha256: Hash, nombre: Name,
            digest: Hash) -> Response:
    """Import the previewed file, exactly as previewed (else refused, nothing written)."""
    _ = _words(request)
    web = context(request)
    payload = _kept(web, sha256)
    if payload is None:
        raise HTTPException(409, _("This file is not the one previewed, or its preview has "
                                   "expired: upload it again and check its preview."))
    name = clean_name(nombre)
    try:
        result = engine.commit(web.store, _rules(web), KIND_NAMES[tipo], name, payload,
                               expected=digest, now=web.now())
    except ImportError_ as exc:
        message = (_("The registry or the key pool changed since this preview: nothing was "
                     "imported. Upload the file again and check its new preview.")
                   if isinstance(exc, engine.PreviewOutdated)
                   else _("The file cannot be imported: %(reason)s", reason=str(exc)))
        return _render(request, "admin_registry.html", {
            "title": _("Registry and keys"), "levels": _levels(web), "done": None,
            "error": message}, 409)
    (uploads_dir(web) / sha256).unlink(missing_ok=True)
    if result.kind == engine.KEYS and result.add:
        _fulfil_waiting(web)
    skipped = len(result.refuse)
    from urllib.parse import urlencode

    query = urlencode({"hecho": tipo, "archivo": name, "altas": len(result.add),
                       "cambios": len(result.change), "omitidas": skipped})
    return RedirectResponse(f"{BASE}?{query}", status_code=303)


def _fulfil_waiting(web: WebContext) -> None:
    """New keys: the requests that waited for them are fulfilled now, as `keys import` does
    (their replies go out on the service's next pass; this console never sends mail)."""
    from mailbot.run.pending import fulfil_pending
    from mailbot.run.wiring import open_app

    try:
        app = open_app(web.config)
    except MailbotError:
        return  # the next `mailbot run` pass fulfils them too
    try:
        fulfil_pending(app)
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()


_EXPORTS = {"registro": "registry", "claves-emitidas": "issued"}


@router.get(BASE + "/exportar/{what}.{fmt}")
def export(request: Request, what: str, fmt: str) -> Response:
    """The registry or the issued keys as a CSV or XLSX download."""
    if what not in _EXPORTS or fmt not in registry_files.FORMATS:
        raise HTTPException(404, _words(request)("There is no such page."))
    web = context(request)
    with web.store.transaction() as conn:
        data = (registry_files.registry_file(conn, fmt) if what == "registro"
                else registry_files.issued_file(conn, fmt, web.zone))
    today = web.clock().astimezone(web.zone).date()
    return Response(data, media_type=registry_files.MEDIA_TYPES[fmt], headers={
        **DOWNLOAD_HEADERS,
        "Content-Disposition": content_disposition(registry_files.file_name(what, fmt, today))})


@api.get("/levels", summary="Keys available and issued for every system of the catalogue, "
                            "empty ones too")
def api_levels(request: Request) -> dict[str, Any]:
    return {"levels": _levels(context(request))}


@api.post("/preview", summary="What importing a registry or key file would do (nothing is "
                              "written)")
async def api_preview(request: Request, file: UploadFile,
                      kind: Annotated[str, Form(pattern=r"^(registry|keys)$")]) -> Any:
    from starlette.concurrency import run_in_threadpool

    payload = await read_upload(request, file)
    web = context(request)
    try:
        result = await run_in_threadpool(engine.preview, web.store, _rules(web), kind,
                                         clean_name(file.filename), payload)
    except ImportError_ as exc:
        raise HTTPException(422, str(exc)) from None
    return preview_json(result, _words(request))
