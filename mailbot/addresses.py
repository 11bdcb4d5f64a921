"""How mailbot compares e-mail addresses: one normalisation (UTS 46 for the domain, NFC and
lower case for the local part) for every check, so a rule, a reply and a recipient never
disagree about whether two addresses are the same mailbox.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna


@lru_cache(maxsize=4096)  # pure, and idna is slow: the same few domains come again and again
def normalise_domain(domain: str) -> str | None:
    """A domain in its ASCII (punycode) form after UTS 46 mapping, or None when invalid.

    UTS 46 lower-cases and maps look-alike compatibility forms (full-width letters) the way
    mail and web clients do, so "Añorada.MX" and "xn--aorada-wwa.mx" compare equal.
    """
    domain = domain.strip().rstrip(".")
    if not domain:
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


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
