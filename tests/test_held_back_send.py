"""A reply's "." waits for the previous reply's mark: the commit overlaps the round trips, and
the window in which a crash sends a reply twice stays one reply wide.

`SmtpSink.send(..., before_accept=...)` sends the envelope and the bytes, runs the hook, and
only then the "." that lets the server take the message (mailbot.run.deliver.MarkingSent runs
the previous reply's mark-sent commit meanwhile). A real aiosmtpd server on loopback
(tests/smtp_server.py) says what it accepted and when.
"""

from __future__ import annotations

import pytest
from smtp_server import SmtpTestServer
from test_smtp import CUSTOMER, MESSAGE_ID, REPLY, MakeSink

from mailbot.errors import StoreError


def test_the_server_takes_the_message_only_after_the_hook_returned(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    seen_by_hook: list[int] = []

    def hook() -> None:  # the envelope and bytes are over, the "." is not
        seen_by_hook.append(len(smtp_server.messages))

    make_smtp_sink("none").send("claves@example.com", [CUSTOMER], REPLY, MESSAGE_ID,
                                before_accept=hook)
    assert seen_by_hook == [0]
    [received] = smtp_server.messages
    assert received.data == REPLY  # byte for byte, as without the hook


def test_a_failing_hook_leaves_the_message_untaken_and_is_raised_as_it_is(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink("none")

    def hook() -> None:
        raise StoreError("the mark of the previous reply could not be committed")

    with pytest.raises(StoreError, match="could not be committed"):
        sink.send("claves@example.com", [CUSTOMER], REPLY, MESSAGE_ID, before_accept=hook)
    assert smtp_server.messages == []
    sink.send("claves@example.com", [CUSTOMER], REPLY, MESSAGE_ID)  # a fresh connection
    assert len(smtp_server.messages) == 1


def test_each_reply_is_marked_sent_before_the_server_takes_the_next(
        tmp_path, smtp_server: SmtpTestServer, monkeypatch) -> None:
    """A pass with three replies over real SMTP: when the server takes reply k+1, the commit
    marking reply k sent has returned (and reply k+1's own mark comes after it was taken)."""
    from botconfig import write_config
    from test_durability import FREE_UPDATE, inbox
    from test_unlock_flow import FACTURA, FREE, RAUL, request_mail

    from mailbot import config as config_module
    from mailbot.run import deliver
    from mailbot.run.pipeline import run_once
    from mailbot.run.wiring import open_app

    smtp = smtp_server.config("none")
    config = write_config(tmp_path, f"""
[source]
path = "inbox"
[sink]
type = "smtp"
[store]
url = "sqlite:///mailbot.db"
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
allow_plaintext = true
timeout_seconds = 5
""")
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "inbox" / sub).mkdir(parents=True, exist_ok=True)
    for number in range(3):
        (tmp_path / "inbox" / "new" / f"m{number}").write_bytes(request_mail(
            sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE,
            message_id=f"<m{number}@example.com>"))
    app = open_app(config_module.load(config))
    events: list[tuple[str, int]] = []
    real_mark = deliver.MarkingSent._mark

    def mark(self, message, copy_pending):
        real_mark(self, message, copy_pending)
        events.append(("marked", len(smtp_server.messages)))

    monkeypatch.setattr(deliver.MarkingSent, "_mark", mark)
    try:
        assert app.sink.takes_before_accept
        report = run_once(app)
    finally:
        app.store.close()
    taken = len(smtp_server.messages)
    assert report.sent == taken >= 3 and inbox(tmp_path) == []
    # The k-th mark happened when the server had taken exactly k messages: never k + 1.
    assert [seen for _, seen in events] == list(range(1, taken + 1))
