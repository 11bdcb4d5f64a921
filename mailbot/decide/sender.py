"""Who may receive keys: checks on the From address of a request (issue 4, section 3).

Keys and unlocks are valuable, so a request is honoured only for a sender the receiving server
vouched for. Every check returns `RuleHit`s so an operator sees exactly why a mail went to review.
Decisions look at the address only: the display name is whatever the sender typed, and
`Reply-To` never receives keys (`reply_to_differs` only reports it for the log).

The only trustworthy evidence in a mail is what our own receiving server wrote. Any sender can
add an `Authentication-Results` header saying "pass"; RFC 8601 section 5 has the border server
remove headers that claim its authserv-id, so we read only headers whose authserv-id is in the
configured trusted list, and only above any untrusted one (a header below it was in the mail
before our server saw it). Exchange Online writes its header without an
authserv-id; for it, `TOPMOST_WITHOUT_AUTHSERV_ID` trusts only the topmost header, the one
Exchange prepended above everything the sender could write.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from functools import cache, lru_cache

import idna
from confusable_homoglyphs import categories, confusables
from publicsuffixlist import PublicSuffixList

from mailbot.addresses import (
    addresses_match,
    normalise_address,
    normalise_domain,
    undeliverable_reason,
)
from mailbot.model import ParsedMail, RuleHit
from mailbot.wording import N_, Words

# Put this in the trusted authserv-ids to trust the topmost Authentication-Results header when
# it has no authserv-id (Microsoft 365 / Exchange Online). Only for mailboxes hosted there.
TOPMOST_WITHOUT_AUTHSERV_ID = "(topmost-without-authserv-id)"

# Rule names, so the review queue and tests can refer to them.
FROM_HEADERS = "sender_from_headers"
FROM_MAILBOXES = "sender_from_mailboxes"
ADDRESS_INVALID = "sender_address_invalid"
UNDELIVERABLE = "sender_undeliverable"
DOMAIN_SUSPICIOUS = "sender_domain_suspicious"
AUTHENTICATED = "sender_authenticated"
NOT_AUTHENTICATED = "sender_not_authenticated"
REPLY_TO_DIFFERS = "reply_to_differs"


# --- Authentication-Results (RFC 8601) ------------------------------------------------------

@dataclass(frozen=True)
class DmarcResult:
    result: str  # "pass", "fail", "none", "bestguesspass" (Microsoft), ... in lower case
    header_from: str | None  # the From domain the server evaluated
    authserv_id: str  # "" for a header without one (Exchange Online)


@dataclass(frozen=True)
class DkimResult:
    result: str
    domain: str | None  # header.d, or the domain of header.i when only that is given (Gmail)
    identity: str | None  # header.i
    authserv_id: str


@dataclass(frozen=True)
class AuthResults:
    """The DMARC and DKIM verdicts of trusted servers, and which headers were ignored."""

    dmarc: tuple[DmarcResult, ...] = ()
    dkim: tuple[DkimResult, ...] = ()
    trusted: tuple[str, ...] = ()  # authserv-ids of the headers read, in order
    ignored: tuple[str, ...] = ()  # authserv-ids of headers not trusted (could be forged)


def parse_authentication_results(values: Sequence[str],
                                 trusted_authserv_ids: Sequence[str]) -> AuthResults:
    """Read the trusted ones of a mail's Authentication-Results header values.

    `values` are in the order they appear in the mail, topmost (most recent) first. Our servers
    prepend their headers above anything the sender wrote, so only the topmost run of trusted
    headers is read: a header below an untrusted one was in the mail before our server saw it,
    whatever authserv-id it claims.

    Parsing is tolerant of what real servers write: comments (nested too), quoted values,
    folding, spaces around "=", properties without a ptype (Microsoft's "action=none"), stray
    segments, empty values. A header with an unknown version is ignored, as RFC 8601 asks.
    (The `authres` package was tried: it rejects Exchange Online's headers.)
    """
    trusted_ids = {t.strip().lower() for t in trusted_authserv_ids}
    dmarc: list[DmarcResult] = []
    dkim: list[DkimResult] = []
    trusted: list[str] = []
    ignored: list[str] = []
    below_untrusted = False
    for position, value in enumerate(values):
        parsed = _parse_header(value)
        if parsed is None:
            ignored.append("(unreadable)")
            below_untrusted = True
            continue
        authserv_id, results = parsed
        if authserv_id:
            is_trusted = authserv_id.lower() in trusted_ids
        else:
            is_trusted = position == 0 and TOPMOST_WITHOUT_AUTHSERV_ID in trusted_ids
        if below_untrusted or not is_trusted:
            ignored.append(authserv_id or "(none)")
            below_untrusted = True
            continue
        trusted.append(authserv_id or "(none)")
        for method, result, props in results:
            if method == "dmarc":
                dmarc.append(DmarcResult(result, props.get("header.from") or None, authserv_id))
            elif method == "dkim":
                identity = props.get("header.i") or None
                domain = props.get("header.d") or None
                if domain is None and identity and "@" in identity:
                    domain = identity.rpartition("@")[2] or None
                dkim.append(DkimResult(result, domain, identity, authserv_id))
    return AuthResults(tuple(dmarc), tuple(dkim), tuple(trusted), tuple(ignored))


_Result = tuple[str, str, dict[str, str]]  # method, result, properties


def _parse_header(value: str) -> tuple[str, list[_Result]] | None:
    segments = _split_outside_quotes(_strip_comments(value), ";")
    if not segments:
        return None
    head = _words(segments[0])
    authserv_id = ""
    if head and "=" not in head[0]:
        authserv_id = _unquote(head[0])
        version = head[1] if len(head) > 1 and head[1].isdigit() else "1"
        if version != "1":
            return None  # RFC 8601 section 2.2: unknown versions are ignored
        segments = segments[1:]
    # else: no authserv-id (Exchange Online); the first segment is already a result.
    results = []
    for segment in segments:
        words = _words(segment)
        if not words or "=" not in words[0]:
            continue  # "none", or a stray domain Microsoft writes between results
        method, _, result = words[0].partition("=")
        props: dict[str, str] = {}
        for word in words[1:]:
            name, equals, pvalue = word.partition("=")
            if equals:
                props.setdefault(name.lower(), _unquote(pvalue).strip())
        results.append((method.split("/")[0].strip().lower(), _unquote(result).lower(), props))
    return authserv_id, results


def _strip_comments(text: str) -> str:
    """Replace (comments), nested or with escapes, by a space; leave quoted strings alone."""
    out: list[str] = []
    depth = 0
    quoted = False
    chars = iter(text)
    for ch in chars:
        if ch == "\\" and (depth or quoted):
            escaped = next(chars, "")
            if not depth:
                out.append(ch + escaped)
        elif quoted:
            out.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")
        elif not depth:
            out.append(ch)
            quoted = ch == '"'
    return "".join(out)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _words(segment: str) -> list[str]:
    """Whitespace-separated words, with CFWS around "=" (as in "dkim = pass") removed."""
    words: list[str] = []
    for part in _split_outside_quotes(" ".join(segment.split()), " "):
        part = part.strip()
        # "key=" is a word only when its sole "=" ends it; base64 values may end in "=" too.
        if words and (part.startswith("=") or words[-1].find("=") == len(words[-1]) - 1):
            words[-1] += part
        else:
            words.append(part)
    return words


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
        result, escaped = [], False
        for ch in text:
            if ch == "\\" and not escaped:
                escaped = True
                continue
            escaped = False
            result.append(ch)
        return "".join(result)
    return text


# --- addresses and domains ------------------------------------------------------------------

def organisational_domain(domain: str) -> str | None:
    """The registrable domain (DMARC's organisational domain) per the Public Suffix List.

    "ventas.empresa.com.mx" -> "empresa.com.mx"; None for a public suffix such as "com.mx".
    """
    ascii_domain = normalise_domain(domain)
    if ascii_domain is None:
        return None
    org: str | None = _public_suffixes().privatesuffix(ascii_domain)
    return org


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list bundled with the package: no network access


# Scripts that legitimately mix in one label (UTS 39 "highly restrictive").
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NO_SCRIPT = {"COMMON", "INHERITED"}  # digits, hyphen, combining marks: go with any script


# Answers by domain: a function of the name alone, asked once per mail, and most mail comes from
# a few customers' domains (idna's decoding costs about 0.1 ms a time).
@lru_cache(maxsize=4096)
def suspicious_domain(domain: str) -> str | None:
    """Why a domain could impersonate another one, or None for an ordinary domain.

    Flags a label that mixes scripts ("pаypal" with a Cyrillic "а"), a label in another script
    whose every letter has an ASCII look-alike ("аррӏе" in Cyrillic), and Latin letters that are
    not ASCII but look like ASCII ("ı", "ɑ"). Spanish accents and "ñ" are not look-alikes, so
    "añorada.mx" and "electrónica.mx" pass.
    """
    ascii_domain = normalise_domain(domain)
    if ascii_domain is None:
        return f"{domain!r} is not a valid domain name"
    try:
        unicode_domain = idna.decode(ascii_domain)
    except (idna.IDNAError, UnicodeError):
        return f"{domain!r} is not a valid internationalised domain name"
    if unicode_domain == ascii_domain:
        return None  # plain ASCII: nothing to confuse
    for label in unicode_domain.split("."):
        reason = _suspicious_label(label)
        if reason:
            return f"{unicode_domain} ({ascii_domain}): {reason}"
    return None


def _suspicious_label(label: str) -> str | None:
    scripts: dict[str, list[str]] = {}
    for ch in label:
        script = categories.alias(ch)
        if script not in _NO_SCRIPT:
            scripts.setdefault(script, []).append(ch)
    if len(scripts) > 1 and not any(set(scripts) <= allowed for allowed in _ALLOWED_MIXES):
        names = " and ".join(s.title() for s in sorted(scripts))
        odd = [ch for s, chars in scripts.items() if s != "LATIN" for ch in chars]
        return (f"label {label!r} mixes {names} letters ({_describe(odd)}), "
                "the mark of a look-alike domain")
    if set(scripts) == {"LATIN"}:
        lookalikes = [ch for ch in label if not ch.isascii() and _ascii_lookalike(ch)]
        if lookalikes:
            shown = ", ".join(f"{_describe([ch])} looks like {_ascii_lookalike(ch)!r}"
                              for ch in dict.fromkeys(lookalikes))
            return f"label {label!r} uses letters made to look like ASCII: {shown}"
        return None
    if len(scripts) == 1:
        script = next(iter(scripts))
        letters = [ch for ch in label if categories.alias(ch) not in _NO_SCRIPT]
        if letters and all(_ascii_lookalike(ch) for ch in letters):
            spelled = "".join(_ascii_lookalike(ch) or ch for ch in label)
            return (f"label {label!r} is written in {script.title()} but reads as the Latin "
                    f"{spelled!r}")
    return None


def _ascii_lookalike(ch: str) -> str | None:
    for glyph in confusables.confusables_data.get(ch, ()):
        candidate = str(glyph["c"])
        if candidate.isascii() and candidate.isalnum():
            return candidate.lower()
    return None


def _describe(chars: Sequence[str]) -> str:
    return ", ".join(f"{ch!r} U+{ord(ch):04X} {unicodedata.name(ch, '?')}"
                     for ch in dict.fromkeys(chars))


# --- the verdict on a mail's sender ---------------------------------------------------------

@dataclass(frozen=True)
class SenderVerdict:
    """Whether keys may go to this mail's sender; `hits` say why, for the operator."""

    ok: bool
    hits: tuple[RuleHit, ...]
    address: str | None  # the normalised From address, when there is exactly one


def check_sender(mail: ParsedMail, *, require_authentication: bool,
                 trusted_authserv_ids: Sequence[str]) -> SenderVerdict:
    """Decide whether the From address of `mail` is one keys may be sent to.

    Needs exactly one From header holding exactly one mailbox that a reply can be sent to
    (`mailbot.addresses.deliverable_parts`, the rule the reply builder applies, checked here
    once so that no answer is found unbuildable after the decision), an unsuspicious domain,
    and, when `require_authentication`, a trusted DMARC pass for the From domain or a trusted
    DKIM pass whose d= shares the From domain's organisational domain (DMARC relaxed
    alignment). Anything else is not ok, with the reason.
    """
    from_headers = mail.headers.get("from", ())
    if len(from_headers) != 1:
        return _refuse(None, FROM_HEADERS, Words.of(
            N_("the mail has %(count)s From headers; exactly one is needed to know who sent it"),
            count=len(from_headers)))
    if len(mail.from_addresses) != 1:
        if not mail.from_addresses:
            return _refuse(None, FROM_MAILBOXES, Words.of(
                N_("From must hold exactly one mailbox, found 0 (no address)")))
        return _refuse(None, FROM_MAILBOXES, Words.of(
            N_("From must hold exactly one mailbox, found %(count)s (%(found)s)"),
            count=len(mail.from_addresses), found=", ".join(mail.from_addresses)))
    raw = mail.from_addresses[0]
    address = normalise_address(raw)
    if address is None:
        return _refuse(None, ADDRESS_INVALID, Words.of(
            N_("From address %(address)s is not a usable address"), address=repr(raw)))
    undeliverable = undeliverable_reason(raw)
    if undeliverable:
        return _refuse(address, UNDELIVERABLE, Words.of(
            N_("no reply can be sent to the From address: %(why)s"), why=undeliverable))
    domain = address.rpartition("@")[2]
    suspicion = suspicious_domain(domain)
    if suspicion:
        return _refuse(address, DOMAIN_SUSPICIOUS, Words.of(
            N_("From domain looks deceptive: %(why)s"), why=suspicion))
    if not require_authentication:
        return SenderVerdict(True, (), address)

    auth = parse_authentication_results(mail.headers.get("authentication-results", ()),
                                        trusted_authserv_ids)
    passed = _authentication_pass(auth, domain)
    if passed:
        return SenderVerdict(True, (RuleHit(AUTHENTICATED, passed.say(), passed),), address)
    return _refuse(address, NOT_AUTHENTICATED,
                   _authentication_failure(auth, domain, trusted_authserv_ids))


def reply_to_differs(mail: ParsedMail) -> RuleHit | None:
    """A note for the log when Reply-To names another mailbox: it never receives keys."""
    values = mail.headers.get("reply-to", ())
    addresses = [a for _, a in getaddresses(list(values)) if "@" in a]
    sender = mail.from_addresses[0] if len(mail.from_addresses) == 1 else None
    others = [a for a in addresses if sender is None or not addresses_match(a, sender)]
    if not others:
        return None
    if sender is None:
        return RuleHit.said(REPLY_TO_DIFFERS, N_(
            "Reply-To (%(reply_to)s) differs from From (unknown); answers and keys go only to "
            "the registered address, never to Reply-To"), reply_to=", ".join(others))
    return RuleHit.said(REPLY_TO_DIFFERS, N_(
        "Reply-To (%(reply_to)s) differs from From (%(sender)s); answers and keys go only to "
        "the registered address, never to Reply-To"), reply_to=", ".join(others), sender=sender)


def _refuse(address: str | None, rule: str, reason: Words) -> SenderVerdict:
    return SenderVerdict(False, (RuleHit(rule, reason.say(), reason),), address)


def _authentication_pass(auth: AuthResults, domain: str) -> Words | None:
    for d in auth.dmarc:
        if d.result == "pass" and d.header_from and normalise_domain(d.header_from) == domain:
            if d.authserv_id:
                return Words.of(N_("DMARC pass for %(domain)s (%(server)s)"), domain=domain,
                                server=d.authserv_id)
            return Words.of(N_("DMARC pass for %(domain)s (topmost header)"), domain=domain)
    from_org = organisational_domain(domain)
    for k in auth.dkim:
        if (k.result == "pass" and k.domain and from_org is not None
                and organisational_domain(k.domain) == from_org):
            if k.authserv_id:
                return Words.of(N_("DKIM pass for d=%(signer)s, aligned with %(domain)s "
                                   "(%(server)s)"),
                                signer=k.domain, domain=domain, server=k.authserv_id)
            return Words.of(N_("DKIM pass for d=%(signer)s, aligned with %(domain)s (topmost "
                               "header)"), signer=k.domain, domain=domain)
    return None


def _authentication_failure(auth: AuthResults, domain: str,
                            trusted_authserv_ids: Sequence[str]) -> Words:
    if not auth.trusted:
        trusted = ", ".join(trusted_authserv_ids)
        ignored = ", ".join(auth.ignored)
        if not trusted:
            template = (N_("no Authentication-Results header from a trusted server (none "
                           "configured); ignored headers from %(ignored)s") if ignored else
                        N_("no Authentication-Results header from a trusted server (none "
                           "configured)"))
        else:
            template = (N_("no Authentication-Results header from a trusted server "
                           "(%(trusted)s); ignored headers from %(ignored)s") if ignored else
                        N_("no Authentication-Results header from a trusted server "
                           "(%(trusted)s)"))
        values = {**({"trusted": trusted} if trusted else {}),
                  **({"ignored": ignored} if ignored else {})}
        return Words.of(template, **values)
    seen = [f"DMARC {d.result} for {d.header_from or 'an unnamed domain'}" for d in auth.dmarc]
    seen += [f"DKIM {k.result} for d={k.domain or '?'}" for k in auth.dkim]
    if not seen:
        return Words.of(N_("the receiving server did not authenticate %(domain)s: needs DMARC "
                           "pass, or DKIM pass aligned with %(domain)s; found no DMARC or DKIM "
                           "result"), domain=domain)
    return Words.of(N_("the receiving server did not authenticate %(domain)s: needs DMARC pass, "
                       "or DKIM pass aligned with %(domain)s; found %(found)s"),
                    domain=domain, found="; ".join(seen))
