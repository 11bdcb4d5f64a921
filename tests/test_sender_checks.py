"""Who may receive keys: sender checks on headers as real receiving servers write them."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailbot.decide.sender import (
    ADDRESS_INVALID,
    AUTHENTICATED,
    DOMAIN_SUSPICIOUS,
    FROM_HEADERS,
    FROM_MAILBOXES,
    NOT_AUTHENTICATED,
    REPLY_TO_DIFFERS,
    TOPMOST_WITHOUT_AUTHSERV_ID,
    AuthResults,
    DkimResult,
    DmarcResult,
    addresses_match,
    check_sender,
    normalise_address,
    normalise_domain,
    organisational_domain,
    parse_authentication_results,
    reply_to_differs,
    suspicious_domain,
)
from mailbot.model import ParsedMail

AUTH = Path(__file__).parent / "data" / "auth"
OUR_POSTFIX = "mail.softwaremx.com.mx"


def parsed(data: bytes) -> ParsedMail:
    """What the MIME layer hands over: decoded header values in message order, topmost first."""
    # Headers may carry raw UTF-8 (RFC 6532), as in an internationalised From address.
    msg = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    headers: dict[str, list[str]] = {}
    for name, value in msg.items():
        headers.setdefault(name.lower(), []).append(str(value))
    from_addresses = tuple(a.addr_spec.lower() for value in msg.get_all("from", [])
                           for a in value.addresses)
    return ParsedMail(
        subject=str(msg.get("subject", "")),
        sender=from_addresses[0] if len(from_addresses) == 1 else None,
        from_addresses=from_addresses,
        message_id=msg.get("message-id"),
        references=(),
        headers={k: tuple(v) for k, v in headers.items()},
        text="",
        html="",
        attachments=(),
        defects=tuple(str(d) for d in msg.defects),
        size=len(data),
    )


def sample(name: str) -> ParsedMail:
    return parsed((AUTH / name).read_bytes())


def raw_values(name: str, header: str) -> list[str]:
    """Header values exactly as folded in the file (compat32 keeps line breaks)."""
    msg = email.message_from_bytes((AUTH / name).read_bytes(), policy=email.policy.compat32)
    return [str(v) for v in msg.get_all(header, [])]


def mail(*header_lines: str) -> ParsedMail:
    text = "\r\n".join(header_lines) + "\r\nSubject: Solicitud de desbloqueo\r\n\r\nHola\r\n"
    return parsed(text.encode("utf-8"))


# --- parsing Authentication-Results ---------------------------------------------------------

def test_gmail_header_with_comments_and_header_i_only() -> None:
    auth = parse_authentication_results(raw_values("gmail.txt", "Authentication-Results"),
                                        ["mx.google.com"])
    assert auth.trusted == ("mx.google.com",)
    assert auth.dmarc == (DmarcResult("pass", "gmail.com", "mx.google.com"),)
    # Gmail names the signer with header.i only; the domain comes from it.
    assert auth.dkim == (DkimResult("pass", "gmail.com", "@gmail.com", "mx.google.com"),)


def test_postfix_opendkim_opendmarc_split_across_headers() -> None:
    values = raw_values("postfix_opendmarc.txt", "Authentication-Results")
    assert len(values) == 3 and "\n" in values[1]  # folded, as Postfix's milters write it
    auth = parse_authentication_results(values, [OUR_POSTFIX])
    assert auth.trusted == (OUR_POSTFIX,) * 3
    assert auth.dmarc == (DmarcResult("pass", "papeleriaruiz.com.mx", OUR_POSTFIX),)
    assert auth.dkim == (DkimResult("pass", "papeleriaruiz.com.mx", "@papeleriaruiz.com.mx",
                                    OUR_POSTFIX),)


def test_microsoft_365_header_without_authserv_id() -> None:
    values = raw_values("microsoft365.txt", "Authentication-Results")
    auth = parse_authentication_results(values, [TOPMOST_WITHOUT_AUTHSERV_ID])
    assert auth.dmarc == (DmarcResult("pass", "constructoradelvalle.com.mx", ""),)
    assert auth.dkim == (DkimResult("pass", "constructoradelvalle.com.mx", None, ""),)
    # Without the explicit opt-in, a header with no authserv-id is never trusted.
    assert parse_authentication_results(values, ["mx.microsoft.com"]) == AuthResults(
        ignored=("(none)",))


def test_microsoft_forwarder_quirks_stray_domains_and_empty_value() -> None:
    value = ("mx.microsoft.com 1; spf=temperror (sender IP is 192.0.2.1) "
             "smtp.helo=tes.test.mx; empresa.com.mx; dkim=none (message not signed) "
             "header.d=none;empresa.com.mx; dmarc=none action=none header.from=;")
    auth = parse_authentication_results([value], ["mx.microsoft.com"])
    assert auth.dmarc == (DmarcResult("none", None, "mx.microsoft.com"),)
    assert auth.dkim == (DkimResult("none", "none", None, "mx.microsoft.com"),)


def test_quoted_values_nested_comments_spaces_and_base64() -> None:
    value = ('"mail.example.mx" 1;\r\n\tdkim = pass (2048-bit key; (nested; comment) ok)'
             ' header.d="ventas.cliente.com.mx" header.i="@ventas.cliente.com.mx"'
             ' header.b=AbC+/dE= header.s=s1;\r\n dmarc=pass header.from=cliente.com.mx')
    auth = parse_authentication_results([value], ["MAIL.example.mx"])
    assert auth.dkim == (DkimResult("pass", "ventas.cliente.com.mx", "@ventas.cliente.com.mx",
                                    "mail.example.mx"),)
    assert auth.dmarc == (DmarcResult("pass", "cliente.com.mx", "mail.example.mx"),)


def test_unknown_version_and_none_results() -> None:
    auth = parse_authentication_results(
        ["mail.example.mx 2; dmarc=pass header.from=cliente.com.mx"], ["mail.example.mx"])
    assert auth.dmarc == () and auth.ignored == ("(unreadable)",)
    auth = parse_authentication_results(["mail.example.mx; none"], ["mail.example.mx"])
    assert auth == AuthResults(trusted=("mail.example.mx",))


def test_untrusted_headers_are_ignored_and_reported() -> None:
    values = raw_values("postfix_forged_untrusted.txt", "Authentication-Results")
    auth = parse_authentication_results(values, [OUR_POSTFIX])
    assert auth.dmarc == (DmarcResult("fail", "grupoaltamira.com.mx", OUR_POSTFIX),)
    # The sender's fake "mx.google.com" pass is ignored, and so is the copy below it that
    # claims our own authserv-id: it was in the mail before our server saw it.
    assert auth.ignored == ("mx.google.com", OUR_POSTFIX)


def test_forged_header_below_exchange_online_is_ignored() -> None:
    values = raw_values("microsoft365_forged.txt", "Authentication-Results")
    auth = parse_authentication_results(values, [TOPMOST_WITHOUT_AUTHSERV_ID])
    assert [d.result for d in auth.dmarc] == ["fail"]
    assert auth.ignored == ("(none)",)


# --- the verdict ----------------------------------------------------------------------------

def test_gmail_sender_with_dmarc_pass_is_ok() -> None:
    verdict = check_sender(sample("gmail.txt"), require_authentication=True,
                           trusted_authserv_ids=["mx.google.com"])
    assert verdict.ok
    assert verdict.address == "maria.lopez.contab@gmail.com"
    assert verdict.hits[0].rule == AUTHENTICATED
    assert "DMARC pass for gmail.com (mx.google.com)" in verdict.hits[0].reason


def test_gmail_header_is_not_trusted_unless_configured() -> None:
    verdict = check_sender(sample("gmail.txt"), require_authentication=True,
                           trusted_authserv_ids=[OUR_POSTFIX])
    assert not verdict.ok
    assert verdict.hits[0].rule == NOT_AUTHENTICATED
    assert "no Authentication-Results header from a trusted server" in verdict.hits[0].reason
    assert "ignored headers from mx.google.com" in verdict.hits[0].reason


def test_microsoft_365_sender_is_ok_and_address_is_lower_cased() -> None:
    verdict = check_sender(sample("microsoft365.txt"), require_authentication=True,
                           trusted_authserv_ids=[TOPMOST_WITHOUT_AUTHSERV_ID])
    assert verdict.ok, verdict.hits
    assert verdict.address == "jperez@constructoradelvalle.com.mx"


def test_microsoft_365_forged_pass_below_a_real_fail_is_not_ok() -> None:
    verdict = check_sender(sample("microsoft365_forged.txt"), require_authentication=True,
                           trusted_authserv_ids=[TOPMOST_WITHOUT_AUTHSERV_ID])
    assert not verdict.ok
    assert "DMARC fail for constructoradelvalle.com.mx" in verdict.hits[0].reason


def test_postfix_opendmarc_sender_is_ok() -> None:
    verdict = check_sender(sample("postfix_opendmarc.txt"), require_authentication=True,
                           trusted_authserv_ids=[OUR_POSTFIX])
    assert verdict.ok
    assert verdict.address == "ventas@papeleriaruiz.com.mx"


def test_forged_pass_from_untrusted_server_does_not_count() -> None:
    verdict = check_sender(sample("postfix_forged_untrusted.txt"), require_authentication=True,
                           trusted_authserv_ids=[OUR_POSTFIX])
    assert not verdict.ok
    assert verdict.hits[0].rule == NOT_AUTHENTICATED
    assert "DMARC fail for grupoaltamira.com.mx" in verdict.hits[0].reason
    assert "DKIM none" in verdict.hits[0].reason


def test_dkim_pass_aligned_on_organisational_domain_is_enough() -> None:
    verdict = check_sender(mail(
        "Authentication-Results: mail.softwaremx.com.mx; dmarc=none (p=none dis=none)"
        " header.from=facturacion.grupoaltamira.com.mx",
        "Authentication-Results: mail.softwaremx.com.mx; dkim=pass (2048-bit key; unprotected)"
        " header.d=grupoaltamira.com.mx header.i=@grupoaltamira.com.mx header.s=default"
        " header.b=Qw3rTy12",
        "From: Ana Ruiz <ana.ruiz@facturacion.grupoaltamira.com.mx>",
    ), require_authentication=True, trusted_authserv_ids=[OUR_POSTFIX])
    assert verdict.ok
    assert "DKIM pass for d=grupoaltamira.com.mx, aligned" in verdict.hits[0].reason


@pytest.mark.parametrize("signer", ["amazonses.com", "otraempresa.com.mx"])
def test_dkim_pass_for_another_organisation_is_not_enough(signer: str) -> None:
    # "otraempresa.com.mx" shares only the public suffix "com.mx" with the From domain.
    verdict = check_sender(mail(
        "Authentication-Results: mail.softwaremx.com.mx; dkim=pass header.d=" + signer,
        "Authentication-Results: mail.softwaremx.com.mx; dmarc=fail header.from=empresa.com.mx",
        "From: compras@empresa.com.mx",
    ), require_authentication=True, trusted_authserv_ids=[OUR_POSTFIX])
    assert not verdict.ok
    assert f"DKIM pass for d={signer}" in verdict.hits[0].reason


def test_microsoft_bestguesspass_is_not_a_pass() -> None:
    verdict = check_sender(mail(
        "Authentication-Results: spf=pass (sender IP is 40.107.93.72)"
        " smtp.mailfrom=empresa.com.mx; dkim=none (message not signed) header.d=none;"
        "dmarc=bestguesspass action=none header.from=empresa.com.mx;compauth=pass reason=109",
        "From: compras@empresa.com.mx",
    ), require_authentication=True, trusted_authserv_ids=[TOPMOST_WITHOUT_AUTHSERV_ID])
    assert not verdict.ok
    assert "DMARC bestguesspass" in verdict.hits[0].reason


def test_dmarc_for_another_domain_does_not_count() -> None:
    verdict = check_sender(mail(
        "Authentication-Results: mail.softwaremx.com.mx; dmarc=pass header.from=gmail.com",
        "From: compras@empresa.com.mx",
    ), require_authentication=True, trusted_authserv_ids=[OUR_POSTFIX])
    assert not verdict.ok


@pytest.mark.parametrize(("from_domain", "header_from"), [
    ("añorada.mx", "xn--aorada-wwa.mx"),
    ("xn--aorada-wwa.mx", "añorada.mx"),
])
def test_idn_from_domain_matches_either_form(from_domain: str, header_from: str) -> None:
    verdict = check_sender(mail(
        f"Authentication-Results: mail.softwaremx.com.mx; dmarc=pass header.from={header_from}",
        f"From: Ventas <ventas@{from_domain}>",
    ), require_authentication=True, trusted_authserv_ids=[OUR_POSTFIX])
    assert verdict.ok, verdict.hits
    assert verdict.address == "ventas@xn--aorada-wwa.mx"


def test_decision_uses_the_address_never_the_display_name() -> None:
    verdict = check_sender(mail(
        "Authentication-Results: mail.softwaremx.com.mx; dmarc=pass header.from=gmail.com",
        'From: "ventas@papeleriaruiz.com.mx" <alguien.mas@gmail.com>',
    ), require_authentication=True, trusted_authserv_ids=[OUR_POSTFIX])
    assert verdict.ok
    assert verdict.address == "alguien.mas@gmail.com"


def test_two_from_headers_are_refused() -> None:
    verdict = check_sender(mail("From: a@empresa.com.mx", "From: b@empresa.com.mx"),
                           require_authentication=False, trusted_authserv_ids=[])
    assert not verdict.ok and verdict.address is None
    assert verdict.hits[0].rule == FROM_HEADERS


def test_from_with_two_mailboxes_is_refused() -> None:
    verdict = check_sender(mail("From: a@empresa.com.mx, b@empresa.com.mx"),
                           require_authentication=False, trusted_authserv_ids=[])
    assert not verdict.ok
    assert verdict.hits[0].rule == FROM_MAILBOXES


def test_missing_from_is_refused() -> None:
    verdict = check_sender(mail("To: claves@softwaremx.com.mx"),
                           require_authentication=False, trusted_authserv_ids=[])
    assert not verdict.ok
    assert verdict.hits[0].rule == FROM_HEADERS


def test_address_literal_is_refused() -> None:
    verdict = check_sender(mail("From: root@[192.0.2.1]"),
                           require_authentication=False, trusted_authserv_ids=[])
    assert not verdict.ok
    assert verdict.hits[0].rule == ADDRESS_INVALID


def test_look_alike_domain_goes_to_review_even_without_authentication() -> None:
    verdict = check_sender(mail("From: ventas@pаpeleriaruiz.com.mx"),  # Cyrillic а
                           require_authentication=False, trusted_authserv_ids=[])
    assert not verdict.ok
    assert verdict.hits[0].rule == DOMAIN_SUSPICIOUS
    assert "Cyrillic and Latin" in verdict.hits[0].reason


def test_without_required_authentication_a_plain_sender_is_ok() -> None:
    verdict = check_sender(mail("From: Compras <Compras@Empresa.com.mx>"),
                           require_authentication=False, trusted_authserv_ids=[])
    assert verdict == verdict.__class__(True, (), "compras@empresa.com.mx")


# --- Reply-To -------------------------------------------------------------------------------

def test_reply_to_differing_is_reported() -> None:
    hit = reply_to_differs(sample("postfix_opendmarc.txt"))
    assert hit is not None and hit.rule == REPLY_TO_DIFFERS
    assert "compras.externas@gmail.com" in hit.reason
    assert "never to Reply-To" in hit.reason


def test_reply_to_same_mailbox_or_absent_is_not_reported() -> None:
    assert reply_to_differs(mail("From: ventas@empresa.com.mx",
                                 "Reply-To: Ventas <VENTAS@Empresa.com.mx>")) is None
    assert reply_to_differs(sample("gmail.txt")) is None


# --- addresses and domains ------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("Juan.Perez@Empresa.COM.MX", "juan.perez@empresa.com.mx"),
    ("<ventas@añorada.mx>", "ventas@xn--aorada-wwa.mx"),
    ("ventas@AÑORADA.mx", "ventas@xn--aorada-wwa.mx"),
    ("contacto@electrónica.mx", "contacto@xn--electrnica-lbb.mx"),
    ("ventas@empresa.com.mx.", "ventas@empresa.com.mx"),
    ("ventas@ｅmpresa.com.mx", "ventas@empresa.com.mx"),  # full-width letter, UTS 46 maps it
    ("sin-arroba.empresa.com.mx", None),
    ("@empresa.com.mx", None),
    ("ventas@", None),
    ("ventas @empresa.com.mx", None),
    ("Ventas <ventas@empresa.com.mx>", None),
    ("ventas@empresa..com.mx", None),
    ("ventas@[192.0.2.1]", None),
])
def test_normalise_address(raw: str, expected: str | None) -> None:
    assert normalise_address(raw) == expected


def test_addresses_match_across_case_and_idna_forms() -> None:
    assert addresses_match("Ventas@Añorada.MX", "ventas@xn--aorada-wwa.mx")
    assert not addresses_match("ventas@añorada.mx", "ventas@anorada.mx")
    assert not addresses_match("no es correo", "no es correo")


def test_normalise_domain() -> None:
    assert normalise_domain("Añorada.MX") == "xn--aorada-wwa.mx"
    assert normalise_domain("xn--zz.com") is None  # not valid punycode


@pytest.mark.parametrize(("domain", "org"), [
    ("mail.ventas.empresa.com.mx", "empresa.com.mx"),
    ("empresa.com.mx", "empresa.com.mx"),
    ("sat.gob.mx", "sat.gob.mx"),
    ("correo.unam.edu.mx", "unam.edu.mx"),
    ("mx.mail.example.co.uk", "example.co.uk"),
    ("ventas.empresa.com.br", "empresa.com.br"),
    ("com.mx", None),
])
def test_organisational_domain_knows_multi_label_suffixes(domain: str, org: str | None) -> None:
    assert organisational_domain(domain) == org


@pytest.mark.parametrize("domain", [
    "añorada.mx", "electrónica.mx", "xn--electrnica-lbb.mx", "papeleriaruiz.com.mx",
    "münchen.de", "例え.jp", "яндекс.рф",
])
def test_ordinary_domains_are_not_suspicious(domain: str) -> None:
    assert suspicious_domain(domain) is None


@pytest.mark.parametrize(("domain", "words"), [
    ("pаypal.com", "mixes Cyrillic and Latin"),              # Cyrillic а
    ("xn--pypal-4ve.com", "mixes Cyrillic and Latin"),       # the same, as punycode
    ("papeleriaruiz.cоm.mx", "mixes Cyrillic and Latin"),    # Cyrillic о in "com"
    ("ρaypal.com", "mixes Greek and Latin"),
    ("аррӏе.com", "written in Cyrillic but reads as the Latin"),
    ("ɑpple.com", "'ɑ' U+0251 LATIN SMALL LETTER ALPHA looks like 'a'"),
    ("ıbm.com", "DOTLESS I"),
    ("mal..formado", "not a valid domain name"),
])
def test_look_alike_domains_are_suspicious(domain: str, words: str) -> None:
    reason = suspicious_domain(domain)
    assert reason is not None and words in reason


# --- through the project's own MIME layer ---------------------------------------------------

@pytest.mark.parametrize(("name", "trusted", "ok"), [
    ("gmail.txt", ["mx.google.com"], True),
    ("microsoft365.txt", [TOPMOST_WITHOUT_AUTHSERV_ID], True),
    ("microsoft365_forged.txt", [TOPMOST_WITHOUT_AUTHSERV_ID], False),
    ("postfix_opendmarc.txt", [OUR_POSTFIX], True),
    ("postfix_forged_untrusted.txt", [OUR_POSTFIX], False),
])
def test_samples_parsed_by_mailbot_mime(name: str, trusted: list[str], ok: bool) -> None:
    from mailbot.read.mime import parse_mail

    verdict = check_sender(parse_mail((AUTH / name).read_bytes()), require_authentication=True,
                           trusted_authserv_ids=trusted)
    assert verdict.ok is ok, verdict.hits
