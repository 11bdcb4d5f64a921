"""What the mail page shows of bytes that are not ours to trust: a customer's mail (its HTML
sanitised for a sandboxed frame, its attachments under safe names) and our own replies from the
outbox (read back with the email package). Also the CSV export's guard and the key mask.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import nh3

from mailbot.answer import cells

# The sanitised HTML goes into <iframe sandbox srcdoc>, which inherits the page's CSP; the
# policy is also the frame's first element, so it holds wherever the fragment ends up.
FRAME_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# The mail page's own policy: nothing remote, no script, images only inline (data:).
PAGE_POLICY = ("default-src 'none'; img-src data:; style-src 'self'; form-action 'self'; "
               "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'")
_URL_ATTRIBUTES = frozenset({"src", "srcset", "background", "poster", "href", "action",
                             "cite", "longdesc", "usemap", "formaction", "xlink:href"})


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Only inline images may point anywhere: a remote image is a read receipt, a link
    followed inside the frame would load a stranger's page."""
    if attribute in _URL_ATTRIBUTES:
        if tag == "img" and attribute == "src" and value.strip().lower().startswith("data:image/"):
            return value
        return None
    return value


def sanitised_html(html: str) -> str:
    """The mail's HTML for the frame: no script, style, form or remote reference survives."""
    if not html.strip():
        return ""
    clean = nh3.clean(html, attribute_filter=_keep_attribute, url_schemes={"data"},
                      link_rel=None)
    return (f'<meta http-equiv="Content-Security-Policy" content="{FRAME_POLICY}">'
            f"<meta charset=\"utf-8\">{clean}")


def framed(html: str | None) -> str | None:
    """A rendered reply's HTML (ours: a template's) for `<iframe sandbox="" srcdoc>`, its own
    policy first: the templates and dry-run pages show previews in such frames."""
    if html is None:
        return None
    return f'<meta http-equiv="Content-Security-Policy" content="{FRAME_POLICY}">{html}'


# --- attachments ------------------------------------------------------------------------------

_BIDI_AND_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u206f\u061c\ufeff]")
_UNSAFE_IN_NAME = re.compile(r'[\\/:*?"<>|;%\'`]')
MAX_NAME = 120
FALLBACK_NAME = "adjunto"


def safe_filename(name: str | None) -> str:
    """A name that cannot leave its header or its folder: no control character (CR LF), no
    direction override, no path separator, quote or dot prefix; at most MAX_NAME characters."""
    text = unicodedata.normalize("NFC", name or "")
    text = "".join(" " if unicodedata.category(c).startswith("C") else c
                   for c in _BIDI_AND_INVISIBLE.sub("", text))
    text = _UNSAFE_IN_NAME.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    if len(text) > MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        text = text[:MAX_NAME - len(ext) - 1].rstrip(" .") + (f".{ext}" if ext else "")
    return text or FALLBACK_NAME


def content_disposition(name: str) -> str:
    """`attachment` with the safe name twice: RFC 5987 UTF-8 for every client that reads it,
    and a plain ASCII fallback for those that do not."""
    safe = safe_filename(name)
    ascii_name = "".join(c if c.isascii() and c.isprintable() else "_" for c in safe)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(safe, safe='')}"


DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
                    "Cache-Control": "private, no-store"}


# --- our replies, read back from the outbox -------------------------------------------------

def reply_display(data: bytes) -> dict[str, Any]:
    """Subject, To, Date and the text part of an outbox message, for people to read."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = ""
    try:
        part = message.get_body(preferencelist=("plain",))
        if part is not None:
            text = part.get_content()
    except (LookupError, ValueError):  # a charset or encoding we cannot read: say nothing
        text = ""
    return {"subject": str(message.get("Subject", "")), "to": str(message.get("To", "")),
            "date": str(message.get("Date", "")), "text": text}


def mask_key(key: str | None) -> str | None:
    """All but the last four characters hidden: enough to tell keys apart on the phone."""
    if key is None:
        return None
    return "•" * max(len(key) - 4, 4) + key[-4:] if len(key) > 4 else "•" * 4


# --- the CSV export ---------------------------------------------------------------------------

def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run: text that starts like a formula gets a leading '
    (the rule every file we write follows: mailbot.answer.cells)."""
    return cells.csv_cell(value)
