"""A serial (`/series/{serial}`, `GET /api/v1/serials/{serial}`): its licence registry entry,
the key bound to it, and every mail and unlock that named it.

The key is a licence: an operator sees its last four characters (enough to read it back to a
customer on the phone), an admin sees it whole.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from mailbot.ops.web.auth import current_user
from mailbot.ops.web.context import context
from mailbot.ops.web.mail_view import mask_key
from mailbot.ops.web.pages import N_, page
from mailbot.ops.web.views.mails import iso
from mailbot.read.fields import normalise_serial
from mailbot.store import serials

router = APIRouter()


def _day(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@page(router, html="/series/{serial}", api="/api/v1/serials/{serial}",
      template="serial.html", title=N_("Serial"),
      summary="A serial: its registry entry, its key, every mail and unlock for it")
def serial_page(request: Request,
                serial: Annotated[str, Path(max_length=60)]) -> dict[str, Any]:
    web = context(request)
    user = current_user(request)
    wanted = normalise_serial(serial)
    if wanted is None:
        raise HTTPException(404, f"{serial!r} is not a serial")
    with web.store.transaction() as conn:
        licence = serials.licence(conn, wanted)
        key = serials.bound_key(conn, wanted)
        mails = serials.mails_for(conn, wanted)
        unlocks = serials.unlocks_for(conn, wanted)
    if licence is None and key is None and not mails and not unlocks:
        raise HTTPException(404, f"nothing is known about {wanted}")
    return {
        "serial": wanted,
        "licence": None if licence is None else {
            "system": licence.system, "company": licence.company,
            "contact_email": licence.contact_email,
            "purchase_date": _day(licence.purchase_date), "modality": licence.modality,
            "support_until": _day(licence.support_until), "users": licence.users,
            "updated_at": iso(licence.updated_at)},
        "key": None if key is None else {
            "system": key.system, "key": key.key if user.is_admin else mask_key(key.key),
            "masked": not user.is_admin, "assigned_at": iso(key.assigned_at)},
        "mails": [{
            "reference": m.reference, "received_at": iso(m.received_at), "sender": m.sender,
            "subject": m.subject, "kind": m.kind, "mail_outcome": m.mail_outcome,
            "folder": m.folder, "outcome": m.outcome, "source": m.source, "system": m.system,
            "recipient": m.recipient} for m in mails],
        "mails_capped": len(mails) >= serials.MAX_MAILS,
        "unlocks": [{
            "id": u.id, "reference": u.reference, "number": u.number, "modality": u.modality,
            "status": u.status, "reason": u.reason, "approved_by": u.approved_by,
            "created_at": iso(u.created_at), "decided_at": iso(u.decided_at),
            "due_at": iso(u.due_at)} for u in unlocks],
    }
