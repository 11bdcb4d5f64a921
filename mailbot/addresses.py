"""How mailbot compares e-mail addresses: one normalisation (UTS 46 for the domain, NFC and
lower case for the local part) for every check, so a rule, a reply and a recipient never
disagree about whether two addresses are the same mailbox.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import idna

# Lower-case LDH labels of 1-63 characters, neither starting nor ending with "-" and with no
# "--" in the third and fourth places (those are IDNA's, "xn--": left to idna to check).
_PLAIN_DOMAIN = re.compile(r"(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                           r"(?:\.(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z")


@lru_cache(maxsize=4096)  # pure, and idna is slow: the same few domains come again and again
def normalise_domain(domain: str) -> str | None:
    """A domain in its ASCII (punycode) form after UTS 46 mapping, or None when invalid.

    UTS 46 lower-cases and maps look-alike compatibility forms (full-width letters) the way
    mail and web clients do, so "Añorada.MX" and "xn--aorada-wwa.mx" compare equal.
    """
    domain = domain.strip().rstrip(".")
    if not domain:
        return None
    plain = domain.lower()
    if _PLAIN_DOMAIN.match(plain) and len(plain) <= 253:
        # Letters, digits and hyphens in the right places: UTS 46 only lower-cases them and
        # IDNA accepts them as they are, so idna (slow, and every customer has another
        # domain) is asked only about the others (non-ASCII, "xn--" labels, "_", ...).
        return plain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


@lru_cache(maxsize=4096)  # pure; a 10,000-row mail compares the same sender 40,000 times
def normalise_address(addr: str) -> str | None:
    """An addr-spec as mailbot compares it, or None when it is not a usable address.

    The local part is case-sensitive by RFC 5321, but no real mailbox depends on it and
    customers type their address however they like, so mailbot compares it in lower case.
    The domain is IDNA-normalised (`normalise_domain`). Address literals ("[192.0.2.1]") and
    anything with spaces or a display name are refused: keys go to plain addresses only.
    """
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() or c in "<>" for c in addr):
        return None
    if domain.startswith("[") or ("@" in local and not local.startswith('"')):
        return None
    ascii_domain = normalise_domain(domain)
    if ascii_domain is None:
        return None
    return f"{unicodedata.normalize('NFC', local).lower()}@{ascii_domain}"


def addresses_match(a: str, b: str) -> bool:
    """Whether two addresses name the same mailbox (see `normalise_address`)."""
    na, nb = normalise_address(a), normalise_address(b)
    return na is not None and na == nb


def ascii_address(addr_spec: str) -> str:
    """`addr_spec` with its domain in the ASCII form of `normalise_domain`, the local part as
    written: what the SMTP envelope and the To header both carry, so that they never name two
    domains ("straße.de" is xn--strae-oqa.de under UTS 46, but strasse.de under IDNA 2003).
    Unchanged when the domain is no valid domain: the message builder refuses it."""
    local, at, domain = str(addr_spec).strip().rpartition("@")
    ascii_domain = normalise_domain(domain) if at else None
    return f"{local}@{ascii_domain}" if ascii_domain else str(addr_spec).strip()


# What a reply can be addressed to: RFC 5322 dot-atom in ASCII (the builder writes no quoted
# strings and no SMTPUTF8 local parts); hostname labels of letters, digits and hyphens.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_LOCAL_PART = 64  # octets, RFC 5321 section 4.5.3.1.1
MAX_DOMAIN = 253  # octets of the ASCII form, as DNS allows
MAX_ADDRESS = 254  # a forward path of 256 octets, less its angle brackets


class UndeliverableAddress(ValueError):
    """An address no reply can be sent to; the message says why, for the operator."""


def deliverable_parts(addr_spec: str) -> tuple[str, str]:
    """(local part, ASCII domain) of an address a reply can be sent to, else
    UndeliverableAddress with the reason.

    The one rule for both sides: the sender checks hold a mail whose From fails it for review
    up front, and the reply builder writes only what passes it, so the two cannot disagree and
    a reply is never found unbuildable after the mail was decided. The local part is an ASCII
    dot-atom of at most 64 octets (no quoted strings: the builder writes none, and many servers
    refuse them); the domain, after UTS 46 (`normalise_domain`), is a host name of at least two
    labels of letters, digits and hyphens (no "_", no bare "localhost"), whose last label is not
    all digits (an address literal in disguise).
    """
    text = str(addr_spec).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise UndeliverableAddress(f"{text!r} is not an address (local-part@domain)")
    if not _DOT_ATOM.match(local):
        raise UndeliverableAddress(
            f"{text!r}: the local part {local!r} is not an ASCII dot-atom (mailbot writes no "
            "internationalised or quoted local parts)")
    if len(local) > MAX_LOCAL_PART:
        raise UndeliverableAddress(
            f"{text!r}: the local part is longer than {MAX_LOCAL_PART} characters")
    ascii_domain = normalise_domain(domain)
    if ascii_domain is None:
        raise UndeliverableAddress(f"{text!r}: {domain!r} is not a valid domain name")
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise UndeliverableAddress(
            f"{text!r}: {domain!r} is a single name, not a domain of the Internet")
    bad = next((label for label in labels if not _LDH_LABEL.match(label)), None)
    if bad is not None:
        raise UndeliverableAddress(
            f"{text!r}: the domain label {bad!r} may hold only letters, digits and hyphens")
    if labels[-1].isdigit():
        raise UndeliverableAddress(f"{text!r}: {domain!r} is a number, not a domain name")
    if len(ascii_domain) > MAX_DOMAIN or len(local) + 1 + len(ascii_domain) > MAX_ADDRESS:
        raise UndeliverableAddress(f"{text!r} is longer than SMTP allows")
    return local, ascii_domain


def undeliverable_reason(addr_spec: str) -> str | None:
    """Why no reply can be sent to `addr_spec` (see `deliverable_parts`), or None."""
    try:
        deliverable_parts(addr_spec)
    except UndeliverableAddress as exc:
        return str(exc)
    return None
