"""The seams with two implementations each: where mail comes from and where replies go.

Sources: Maildir (`mailbot.transport.maildir`) and IMAP (`mailbot.transport.imap`).
Sinks: reply files (`mailbot.transport.files`) and SMTP (`mailbot.transport.smtp`).
The store (`mailbot.store.database`) is one SQLAlchemy implementation over SQLite or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from mailbot.errors import MailbotError
from mailbot.model import FAILED, FOLDERS, IGNORED, PROCESSED, RawMail
from mailbot.model import REVIEW_FOLDER as REVIEW

__all__ = ["FAILED", "FOLDERS", "IGNORED", "PROCESSED", "REVIEW"]  # the folders, for the sources


class Source(Protocol):
    """A mailbox mailbot reads from."""

    name: str  # stable identity of the mailbox, e.g. "maildir:/srv/claves" or "imap:bot@host/INBOX"

    def fetch_new(self) -> Iterator[RawMail]:
        """Mails still waiting in the inbox, oldest first, without marking them read."""
        ...

    def file(self, mail_id: str, folder: str) -> None:
        """Move a handled mail out of the inbox into `folder` (one of FOLDERS).

        Must be idempotent: filing a mail that is already gone from the inbox is not an error.
        """
        ...

    def restore(self, mail_id: str, folder: str, *, size: int, matches: Callable[[bytes], bool],
                record: Callable[[str], None]) -> str:
        """Move a filed mail from `folder` back into the inbox, so a pass reads it again
        (`mailbot retry`); returns its id in the inbox, which may differ from `mail_id` (IMAP
        gives it a new UID).

        The mail is found by `mail_id` where the id still names it, else by its `size` and
        content (`matches`); one already back in the inbox (moved there by hand) is found
        there. `record(new_id)` is called before the mail becomes visible to `fetch_new`, so
        the store knows it under its new id before any pass can see it. Raises MailNotFound.
        """
        ...

    def original(self, mail_id: str, folder: str | None, *, size: int,
                 matches: Callable[[bytes], bool]) -> bytes:
        """The bytes of a mail, left where it is (the console shows them): in `folder`, or in
        the inbox when `folder` is None, found as `restore` finds it. Raises MailNotFound."""
        ...

    def close(self) -> None: ...


class MailNotFound(MailbotError):
    """The mail to restore is neither in its folder nor in the inbox."""


class DeliveryError(Exception):
    """A reply could not be delivered."""


class TemporaryDeliveryError(DeliveryError):
    """Try again later with the same bytes (4xx, timeout, dropped connection)."""


class PermanentDeliveryError(DeliveryError):
    """Never try again (5xx); operators are told."""


class SinkUnavailable(TemporaryDeliveryError):
    """The sink cannot be used as configured (TLS, login): stop the batch, keep every message
    queued without spending its attempts, and tell operators."""


class PartiallyDelivered(PermanentDeliveryError):
    """Some recipients accepted the message: it must never be sent again."""


class Sink(Protocol):
    """Where replies go. The envelope is explicit and never taken from the message headers."""

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes,
             message_id: str) -> None:
        """Deliver `message`; raise TemporaryDeliveryError or PermanentDeliveryError."""
        ...

    def close(self) -> None: ...
