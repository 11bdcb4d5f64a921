"""Which request a mail is (by its subject), and which mails must never be answered.

Answering an auto-reply, a bounce or a mailing list starts mail loops and spams people, so
`ignored_reason` is checked before anything else reads the mail. The subject match is tolerant
in the ways customers differ (case, accents, reply/forward prefixes, tags, punctuation, trailing
text) and strict otherwise: a near miss is filed for operators rather than guessed at.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from mailbot.model import ParsedMail
from mailbot.read.own_mail import OwnMarks, own_mail_reason
from mailbot.ruleset import Kind

# Reply/forward prefixes of the clients our customers use (Spanish, English, and the Outlook
# and Gmail localisations that reach Mexico): RE, RV, Fwd, FW, ENC (Outlook pt/es), R (it),
# AW/WG (de), TR (fr), SV/VS (nordic), RES (pt). Counters like "Re[2]:" or "RE (3):" too.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|rv|fwd?|fw|enc|r|res|aw|wg|tr|sv|vs|antw|rif|ref)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:"
    r"|\[[^\]]{0,40}\]"  # "[External]", "[EXTERNO]", "[contadores-mx]"
    r"|\*{1,3}\s*(?:external|externo|spam)\s*\*{1,3})\s*",
    re.IGNORECASE,
)
_FORWARD_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)*(?:rv|fwd?|fw|enc|tr|wg)\s*:")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)

# How the subjects of automatic mail begin; a backup for clients that set no header. None of
# these can begin a request's subject, so a false hit costs nothing.
_AUTO_SUBJECTS = (
    "respuesta automatica", "automatic reply", "auto reply", "autoreply", "auto response",
    "out of office", "out of the office", "fuera de la oficina", "fuera de oficina",
    "reponse automatique", "abwesenheitsnotiz", "resposta automatica",
)
_RECEIPT_SUBJECTS = ("leido", "no leido", "read", "not read", "unread")  # followed by ":"
_BOUNCE_SUBJECTS = (
    "undelivered mail returned to sender", "undeliverable", "delivery status notification",
    "mail delivery failed", "returned mail", "delivery failure", "failure notice",
    "no se puede entregar", "mensaje no entregado", "no entregado", "message not delivered",
    "nondeliverable", "mail system error",
)
_AUTO_HEADERS = (
    "x-autoreply", "x-autorespond", "x-autoresponder", "x-autoreply-from", "x-mail-autoreply",
    "x-auto-response-suppress",
)
_BOUNCE_LOCALPARTS = ("mailer-daemon", "postmaster")
_LIST_HEADERS = ("x-mailing-list", "mailing-list", "x-list", "x-beenthere")  # besides List-*


def normalise_subject(subject: str) -> str:
    """A subject as words only: ``"RE: RV: [EXTERNO] Solicitud de desbloqueo."`` ->
    ``"solicitud de desbloqueo"`` (case folded, accents and any number of prefixes gone)."""
    if len(subject or "") <= _CACHED_CHARS:
        return _normalised(subject or "")  # the rules' subjects, for every mail
    return _normalise(subject)


_CACHED_CHARS = 400  # what is cached must stay small, whatever a mail's subject holds


@functools.lru_cache(maxsize=256)
def _normalised(subject: str) -> str:
    return _normalise(subject)


def _normalise(subject: str) -> str:
    text = _fold(subject or "")
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(_NON_WORD.sub(" ", text).split())


def match_kind(subject: str, kinds: Sequence[Kind]) -> str | None:
    """The id of the kind whose subject the mail's subject starts with, or None.

    Whole words only ("Desbloqueo" does not match "Desbloqueos"), and when two kinds match the
    longer subject wins, so a specific kind is never shadowed by a general one.
    """
    normalised = normalise_subject(subject)
    if not normalised:
        return None
    best: tuple[int, str] | None = None
    for kind in kinds:
        for wanted in kind.subjects:
            target = normalise_subject(wanted)
            if target and (normalised == target or normalised.startswith(target + " ")):
                if best is None or len(target) > best[0]:
                    best = (len(target), kind.id)
    return best[1] if best else None


def is_forwarded(subject: str) -> bool:
    """Whether the subject says the mail is a forward (RV:, Fwd:, FW:, ENC:, TR:, WG:)."""
    return _FORWARD_PREFIX.match(_fold(subject or "")) is not None


def ignored_reason(mail: ParsedMail, own_addresses: Sequence[str]) -> str | None:
    """Why mailbot must never answer this mail, or None when it may.

    One of ``own_mail``, ``bounce``, ``auto_reply``, ``mailing_list``, ``bulk``, ``no_sender``.
    Our own mail is checked first (a loop is the worst failure); a bounce before an auto-reply,
    because bounces carry ``Auto-Submitted`` too and "bounce" tells the operator more; a missing
    sender last, since any of the others explains it better.

    Our mail is also recognised when a forwarding rule rewrote its From: by its Message-ID
    (make_message_id's shape on our domain) or our X-Mailbot-Reference header, neither of
    which a customer's mail carries.
    """
    if own_mail_reason(mail, OwnMarks.of(own_addresses)) is not None:
        return "own_mail"
    if _is_bounce(mail):
        return "bounce"
    if _is_auto_reply(mail):
        return "auto_reply"
    if _is_list(mail):
        return "mailing_list"
    if _precedence(mail) in ("bulk", "junk"):
        return "bulk"
    if mail.sender is None:
        return "no_sender"
    return None


def _is_bounce(mail: ParsedMail) -> bool:
    return_path = mail.headers.get("return-path", ())
    if any(re.fullmatch(r"<\s*>", value.strip()) for value in return_path):
        return True  # the null sender: only delivery reports use it (RFC 5321 4.5.5)
    for address in mail.from_addresses:
        if address.split("@", 1)[0] in _BOUNCE_LOCALPARTS:
            return True
    raw_from = " ".join(mail.headers.get("from", ())).casefold()
    if not mail.from_addresses and "mailer-daemon" in raw_from:
        return True
    content_type = (mail.header("content-type") or "").casefold()
    is_report = content_type.startswith("multipart/report")
    if is_report and "disposition-notification" not in content_type:
        return True  # a read receipt is a report too, but an automatic answer, not a bounce
    if any(a.content_type in ("message/delivery-status", "message/global-delivery-status")
           for a in mail.attachments):
        return True
    if "x-failed-recipients" in mail.headers:
        return True
    return _subject_starts(mail.subject, _BOUNCE_SUBJECTS)


def _is_auto_reply(mail: ParsedMail) -> bool:
    for value in mail.headers.get("auto-submitted", ()):
        token = re.split(r"[;(\s]", value.strip(), maxsplit=1)[0].casefold()  # "no (manual)" is no
        if token and token != "no":
            return True
    if any(name in mail.headers for name in _AUTO_HEADERS):
        return True
    machine = [*mail.headers.get("x-autogenerated", ()),
               *mail.headers.get("x-fc-machinegenerated", ())]
    if any(v.strip().casefold() in ("yes", "reply", "true") for v in machine):
        return True
    if _precedence(mail) == "auto_reply":
        return True
    content_type = (mail.header("content-type") or "").casefold()
    if content_type.startswith("multipart/report") and "disposition-notification" in content_type:
        return True  # a read receipt
    return _subject_starts(mail.subject, _AUTO_SUBJECTS) or _subject_starts(
        mail.subject, _RECEIPT_SUBJECTS, colon=True
    )


def _is_list(mail: ParsedMail) -> bool:
    if any(name.startswith("list-") for name in mail.headers):
        return True
    if any(name in mail.headers for name in _LIST_HEADERS):
        return True
    return _precedence(mail) == "list"


def _precedence(mail: ParsedMail) -> str:
    value = mail.header("precedence") or mail.header("x-precedence") or ""
    return value.strip().casefold()


def _subject_starts(subject: str, phrases: Sequence[str], colon: bool = False) -> bool:
    """The subject (tags like "[EXTERNAL]" aside) begins with one of `phrases` as whole words,
    followed by a colon when `colon` is set."""
    text = re.sub(r"^\s*(?:\[[^\]]{0,40}\]\s*)+", "", _fold(subject or ""))
    return any(pattern.match(text) for pattern in _phrase_patterns(tuple(phrases), colon))


@functools.lru_cache(maxsize=16)
def _phrase_patterns(phrases: tuple[str, ...], colon: bool) -> tuple[re.Pattern[str], ...]:
    """One expression per phrase, compiled once: three lists are tried on every mail."""
    patterns = []
    for phrase in phrases:
        words = r"[\W_]+".join(re.escape(w) for w in phrase.split())
        end = r"\s*:" if colon else r"(?:[\W_]|$)"
        patterns.append(re.compile(rf"^[\W_]*{words}{end}"))
    return tuple(patterns)


def _fold(text: str) -> str:
    # A subject is folded for its kind, for a forward and for three lists of automatic
    # subjects: folded once.
    return _folded(text) if len(text) <= _CACHED_CHARS else _fold_text(text)


@functools.lru_cache(maxsize=64)
def _folded(text: str) -> str:
    return _fold_text(text)


def _fold_text(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
