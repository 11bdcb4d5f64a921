"""A mail whose decision fails for a reason that will fail again is quarantined at once.

Retrying is for faults outside the mail: the store, the mailbox, the SMTP server, a lease lost
to another run. A failure of the pure steps on this mail's own data (the reading in read/, the
rules in decide/, the answer in answer/: a template that fails on its values, a render limit,
a bug that raises on its bytes) happens again on every attempt, and each attempt of a
10,000-row mail costs minutes: such a mail goes to the `failed` folder now, with the reason,
and the operators are alerted (`mailbot retry REFERENCE` decides it again once fixed).

Which is which is told by what raised: a TemplateError while the templates render all their
samples (`templates_work`), so it is this mail's data; or an exception whose innermost mailbot
frame is in one of the pure layers (they do no I/O, so their failure depends on the input
only). A template that is missing, does not compile or fails its samples is the
installation's fault, not the mail's: those keep their retries, like anything unknown.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from pathlib import Path
from typing import Any

from mailbot.errors import StoreError, TemplateError
from mailbot.run import claims
from mailbot.run.app import App
from mailbot.store import MailRecord
from mailbot.transport.seams import FAILED

log = logging.getLogger("mailbot")

PURE_LAYERS = ("mailbot.read", "mailbot.decide", "mailbot.answer")
# Transient whatever raised them: the machine, the network, another run.
TRANSIENT = (StoreError, OSError, MemoryError, claims.ClaimLost)
# TemplateError lines (mailbot.answer.render, .sandbox) about the templates themselves, not
# the data; and the render time limit, which a busy machine can reach where a quiet one does
# not (the step and size limits are the same on every attempt).
_NOT_THE_DATA = ("template not found", "templates directory not found",
                 "is not a template name", "syntax error:", "takes too long")


def will_fail_again(app: App, exc: BaseException) -> str | None:
    """Why `exc` will happen again on the next attempt at the same mail; None when it may not
    (a transient fault, or one we cannot place)."""
    if isinstance(exc, TRANSIENT):
        return None
    if isinstance(exc, TemplateError):
        text = str(exc)
        if any(marker in text for marker in _NOT_THE_DATA) or not templates_work(app):
            return None  # the templates' fault: every mail fails until an admin fixes them
        return f"the answer cannot be rendered from this mail's data: {text}"
    layer = _innermost_layer(exc.__traceback__)
    if layer is None:
        return None
    return f"{layer} fails on this mail's data: {type(exc).__name__}: {exc}"


_checked: dict[tuple[Any, ...], bool] = {}


def templates_work(app: App) -> bool:
    """Whether every template renders its sample contexts (`Renderer.check`): then a render
    failure is this mail's data, not templates an admin broke (which fail every mail until
    fixed, and keep their retries). Remembered while no template file changes."""
    renderer = app.renderer
    directory = Path(renderer.templates_dir)
    try:
        files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.iterdir()))
    except OSError:
        return False
    key = (id(renderer), renderer.render, renderer.max_output, renderer.max_steps,
           id(app.rules), files)
    if key not in _checked:
        if len(_checked) > 16:
            _checked.clear()
        _checked[key] = not renderer.check(app.rules)
    return _checked[key]


def _innermost_layer(tb: types.TracebackType | None) -> str | None:
    """The pure layer of the innermost mailbot frame of `tb`, None when it is another one."""
    module = None
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name == "mailbot" or name.startswith("mailbot."):
            module = name
        tb = tb.tb_next
    if module is None:
        return None
    return next((layer for layer in PURE_LAYERS
                 if module == layer or module.startswith(layer + ".")), None)


def quarantine_now(app: App, rec: MailRecord, exc: BaseException,
                   reason: str) -> MailRecord | None:
    """Quarantine the mail at once (one commit: status, folder, the error, the operators'
    alert); the pass files it in `failed` with the other handled mails. None when the mail is
    no longer this run's to decide (then its holder decides what becomes of it)."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with app.store.transaction() as conn:
        if not app.store.update_mail(
                conn, rec.id, claimed_by=app.run_id, status="quarantined", folder=FAILED,
                outcome="quarantined", error=error,
                notes=[f"quarantined at once, not retried: {reason}"[:2000]]):
            return None
        app.store.log_event(conn, "alert", mail=rec.id, title="Correo en cuarentena",
                            detail=f"{rec.reference} falló por un motivo que se repetiría en "
                                   f"cada intento; no se reintenta: {reason}"[:2000])
    log.error("event=quarantined reference=%s attempts=%d reason=%s", rec.reference,
              rec.attempts, reason)
    return dataclasses.replace(rec, status="quarantined", folder=FAILED)
