"""Issue 11 §1-§3 end to end on a Maildir: a forwarded request and a request whose From is one
encoded-word are answered, with the key to the registered contact only; a request with no
usable sender goes to an operator instead of silence."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from test_unlock_flow import FREE, RAUL, Harness

CORPUS = Path(__file__).parent / "data" / "mail"
ASSISTANT = "pgomez@empresamuestra.com.mx"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_a_request_whose_whole_from_is_one_encoded_word_is_answered_to_its_sender(tmp_path):
    bot = Harness(tmp_path)
    bot.run(corpus("from_compat32_encoded_whole_value.eml"))
    [reply] = bot.replies()
    assert (reply.template, reply.to) == ("keys_issued", RAUL)
    assert "2012-" in reply.text
    [mail] = bot.mails()
    assert mail.sender == RAUL
    assert bot.tasks() == []


def test_a_forwarded_request_gives_the_key_to_the_registered_contact_only(tmp_path):
    bot = Harness(tmp_path)
    bot.run(corpus("forward_gmail_es_signature_tel_correo.eml"))
    [request] = bot.requests(FREE)
    assert request.contact_email == RAUL  # the forwarded request's, not the signature's
    keyed = [r for r in bot.replies() if r.template == "keys_issued"]
    assert [r.to for r in keyed] == [RAUL]
    assert "2012-" in keyed[0].text
    # The forwarder (the sender) is answered too, never with the key.
    to_assistant = bot.replies(ASSISTANT)
    assert to_assistant and all("2012-FCTR" not in r.text and "2012-" not in r.text
                                for r in to_assistant)
    [mail] = bot.mails()
    assert mail.sender == ASSISTANT
    assert "reenvío (Gmail): se leyó la solicitud reenviada" in json.loads(mail.notes)


def test_a_request_without_a_usable_sender_goes_to_review_not_silence(tmp_path):
    bot = Harness(tmp_path)
    bot.run(corpus("no_from_header.eml"))
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("sender", "sender_from_headers")
    assert task.reason_text
    assert bot.replies() == []


def test_an_encoded_from_that_holds_two_mailboxes_goes_to_review(tmp_path):
    """Decoding the encoded-word never makes one sender out of two: an operator decides."""
    data = corpus("from_compat32_encoded_whole_value.eml")
    head, body = data.split(b"\n\n", 1)
    word = base64.b64encode(b"Raul <rgonzalez@empresamuestra.com.mx>, otro@example.net").decode()
    lines = [f"From: =?utf-8?b?{word}?=".encode() if line.startswith(b"From:") else line
             for line in head.split(b"\n")]
    bot = Harness(tmp_path)
    bot.run(b"\n".join(lines) + b"\n\n" + body)
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("sender", "sender_from_mailboxes")
    assert bot.replies() == []
