"""The IMAP source: the vendor's real `claves@` mailbox, read without marking anything read.

This module and mailbot.transport.imap_connection (reaching and logging in to the mailbox,
reconnecting) are the only ones that import imapclient. What they guarantee to the pipeline:
- mails come oldest first with ids `UIDVALIDITY:UID`; bodies are fetched with BODY.PEEK[], so a
  person looking at the mailbox still sees them unread; oversized mails are reported by size
  and never downloaded;
- `file()` never deletes a mail without a successful copy, is idempotent, and refuses to act on
  an id from an older UIDVALIDITY (the UID may now name another mail; the pipeline
  de-duplicates the re-listed mails by content); `file_many()` does the same for many mails
  with one UID MOVE (or one COPY + STORE + EXPUNGE); `append_sent_many()` copies many replies
  to Sent with one MULTIAPPEND; `restore()` brings a filed mail back (`mailbot retry`), the
  folder's copy deleted only once the inbox's is there;
- dropped connections (network, `doveadm kick`, server restart, read timeout) are reconnected
  with exponential backoff; a mailbox that stays unreachable raises `MailboxUnreachable` once,
  for the caller to alert operators, instead of looping.

Two connections: one for commands, one that only IDLEs, so a service can wait for mail in one
thread while a pass fetches and files in another. Each is used by one thread at a time (a lock
per connection); a pass's operations never interleave mid-command with another's.
"""

from __future__ import annotations

import imaplib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from mailbot.config import ImapConfig, check_transport
from mailbot.errors import ConfigError
from mailbot.model import RawMail
from mailbot.transport import seams
from mailbot.transport.imap_connection import (
    TRANSIENT,
    Connector,
    MailboxError,
    MailboxUnreachable,
    Session,
    describe,
)
from mailbot.transport.oauth import TokenProvider

__all__ = ["ImapSource", "MailboxError", "MailboxUnreachable"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SEEN = b"\\Seen"
DELETED = b"\\Deleted"
BATCH_BYTES = 64 * 1024 * 1024  # fetch bodies in groups of at most this many bytes (memory)
MAX_RELISTS = 3  # UIDVALIDITY changes tolerated within one fetch_new() before giving up
APPEND_GROUP = 100  # copies per MULTIAPPEND (and at most BATCH_BYTES)


_EXPUNGED_RETRIES = 3  # MOVE again after NO [EXPUNGEISSUED]: another session took some

class _ValidityChanged(Exception):
    """The inbox's UIDVALIDITY changed under a listing: its UIDs mean nothing any more."""


class ImapSource:
    """`seams.Source` over IMAP (imapclient), plus IDLE, a Sent copy and a doctor check."""

    def __init__(self, config: ImapConfig, base_dir: Path | str, max_message_bytes: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 token_provider: TokenProvider | None = None,
                 max_attempts: int = 6, backoff_base: float = 2.0, backoff_max: float = 60.0,
                 ignore_capabilities: Iterable[str] = ()) -> None:
        """Validate the settings now (ConfigError), connect on first use.

        `max_attempts` connection attempts per operation, the first retry at once, then after
        `backoff_base` seconds doubling up to `backoff_max` (defaults: about 30 s in all).
        `token_provider` lets IMAP and SMTP share one token cache. `ignore_capabilities` treats
        advertised extensions as absent (for servers that implement one badly, and for tests).
        """
        self.config = config
        self.base_dir = Path(base_dir)
        self.max_message_bytes = max_message_bytes
        self.name = f"imap:{config.username}@{config.host}/{config.inbox}"
        self._clock = clock
        self._validate()
        self._folders = {
            seams.PROCESSED: config.folder_processed,
            seams.REVIEW: config.folder_review,
            seams.IGNORED: config.folder_ignored,
            seams.FAILED: config.folder_failed,
        }
        self._connector = Connector(config, self.name, self.base_dir, sleep=sleep,
                                    token_provider=token_provider, max_attempts=max_attempts,
                                    backoff_base=backoff_base, backoff_max=backoff_max,
                                    ignore_capabilities=ignore_capabilities)
        self._main = Session("commands")
        self._watch = Session("idle")
        # (UIDVALIDITY, highest UID) of the last complete listing: wait_for_mail() compares
        # the inbox against it. Written by fetch_new(), read by the IDLE thread.
        self._high_uid: tuple[int, int] | None = None
        # The highest UID wait_for_mail() already announced as new since that listing: told
        # once is enough, or a caller whose pass is still running would be woken in a loop.
        self._announced: tuple[int, int] | None = None

    # -- the Source protocol --------------------------------------------------------------

    def fetch_new(self) -> Iterator[RawMail]:
        """Every undeleted mail in the inbox, oldest first, without setting \\Seen.

        Sizes (RFC822.SIZE) are read first, in batches of `batch_size`; bodies follow with
        BODY.PEEK[] in groups of at most `batch_size` mails and BATCH_BYTES. If UIDVALIDITY
        changes mid-way (seen after a reconnect), the listing starts over under the new ids.
        """
        for _ in range(MAX_RELISTS + 1):
            validity, high, uids = self._run("list the inbox", self._list_inbox)
            try:
                yield from self._fetch_listed(validity, uids)
            except _ValidityChanged:
                log.warning("imap uidvalidity_changed source=%s old=%s new=%s: listing again; "
                            "mails already read come again under new ids",
                            self.name, validity, self._main.uidvalidity)
                continue
            self._high_uid = (validity, high)
            self._announced = None
            return
        raise MailboxError(f"{self.name}: the inbox's UIDVALIDITY keeps changing; "
                           "check what else is modifying the mailbox")

    def file(self, mail_id: str, folder: str) -> None:
        """Move a handled mail into the configured folder for `folder` (one of seams.FOLDERS).

        UID MOVE where the server has it; else COPY, then \\Deleted and UID EXPUNGE (plain
        EXPUNGE without UIDPLUS), so the mail is only ever deleted after a successful copy.
        A mail already gone is fine; an id from an older UIDVALIDITY is left alone.
        """
        if folder not in self._folders:
            raise ValueError(f"unknown folder {folder!r}; expected one of {seams.FOLDERS}")
        validity, uid = _parse_mail_id(mail_id)
        target = self._folders[folder]
        self._run(f"file {mail_id} into {target}",
                  lambda s: self._file(s, validity, [uid], target))

    def file_many(self, mail_ids: Sequence[str], folder: str) -> None:
        """file() for many mails at once: one UID MOVE (or one COPY + \\Deleted + UID EXPUNGE)
        for all of them, with the same guarantees: never a deletion without a copy, mails
        already gone are fine, ids from an older UIDVALIDITY are left alone."""
        if folder not in self._folders:
            raise ValueError(f"unknown folder {folder!r}; expected one of {seams.FOLDERS}")
        by_validity: dict[int, list[int]] = {}
        for mail_id in mail_ids:
            validity, uid = _parse_mail_id(mail_id)
            by_validity.setdefault(validity, []).append(uid)
        target = self._folders[folder]
        for validity, uids in by_validity.items():
            self._run(f"file {len(uids)} mails into {target}",
                      lambda s, v=validity, u=uids: self._file(s, v, u, target))

    def restore(self, mail_id: str, folder: str, *, size: int, matches: Callable[[bytes], bool],
                record: Callable[[str], None]) -> str:
        """`seams.Source.restore`. UIDs name mails of one folder, so the mail is found by size
        and content. It is APPENDed to the inbox flagged \\Deleted, which `fetch_new` skips,
        so no pass sees it before `record` has the store know its UID; then the flag comes
        off, and only then is the folder's copy deleted (a crash leaves a copy, never none).
        `mail_id` is not used: it named the mail in the inbox before it was filed."""
        if folder not in self._folders:
            raise ValueError(f"unknown folder {folder!r}; expected one of {seams.FOLDERS}")
        target = self._folders[folder]
        return self._run(f"restore a mail from {target}",
                         lambda s: self._restore(s, target, size, matches, record))

    def original(self, mail_id: str, folder: str | None, *, size: int,
                 matches: Callable[[bytes], bool]) -> bytes:
        """`seams.Source.original`: found by size and content (a filed mail's UID in its
        folder is not known), fetched with BODY.PEEK so its flags stay as they were."""
        if folder is not None and folder not in self._folders:
            raise ValueError(f"unknown folder {folder!r}; expected one of {seams.FOLDERS}")
        target = self.config.inbox if folder is None else self._folders[folder]
        return self._run(f"read a mail in {target}",
                         lambda s: self._original(s, target, size, matches))

    def _original(self, s: Session, target: str, size: int,
                  matches: Callable[[bytes], bool]) -> bytes:
        self._open(s, target)
        try:
            found = _find(s, size, matches, deleted=False)
        finally:
            self._select(s)
        if found is None:
            raise seams.MailNotFound(f"{self.name}: no mail of {size} bytes with that content "
                                     f"in {target!r}")
        return found[1]

    def close(self) -> None:
        for session in (self._main, self._watch):
            self._connector.close(session)

    # -- beyond the protocol: Sent copies, IDLE, doctor -------------------------------------

    def append_sent(self, message: bytes) -> None:
        """Keep a copy of a reply in the Sent folder, already read (skipped when it is "")."""
        folder = self.config.sent_folder
        if not folder:
            return

        def append(s: Session) -> None:
            name = self._ensure_folder(s, folder)
            s.client.append(name, message, flags=(SEEN,))

        self._run(f"append a reply to {folder}", append)

    def append_sent_many(self, messages: Sequence[bytes]) -> None:
        """append_sent() for many replies: one MULTIAPPEND (RFC 3502) per group where the
        server has it, else one APPEND each. If the server refuses a group (NO: a message too
        large, quota...), each of its messages is tried alone and one it refuses is logged and
        skipped, as a refused single copy would be. An unreachable mailbox raises."""
        folder = self.config.sent_folder
        if not folder or not messages:
            return
        for group in _groups(messages, APPEND_GROUP, BATCH_BYTES):
            def append(s: Session, group: Sequence[bytes] = group) -> None:
                name = self._ensure_folder(s, folder)
                if "MULTIAPPEND" in s.caps and len(group) > 1:
                    s.client.multiappend(name, [{"msg": m, "flags": (SEEN,)} for m in group])
                else:
                    for message in group:
                        s.client.append(name, message, flags=(SEEN,))

            try:
                self._run(f"append {len(group)} replies to {folder}", append)
            except MailboxError:
                if len(group) == 1:
                    raise
                for message in group:
                    try:
                        self.append_sent(message)
                    except MailboxError as exc:
                        log.warning("imap sent_copy_refused source=%s error=%s", self.name, exc)

    def wait_for_mail(self, timeout: float) -> bool:
        """Block until new mail may be in the inbox (True) or `timeout` seconds pass (False).

        Uses IDLE on a connection of its own, re-issued every `idle_renew_seconds` (servers
        end IDLE after 30 minutes). Returns False at once when IDLE is off or unsupported: the
        caller then polls. True means "fetch now": mail came after the last complete listing.
        """
        if not self.config.idle:
            return False
        deadline = self._clock() + timeout
        return self._run("wait for new mail", lambda s: self._idle(s, deadline),
                         session=self._watch)

    def idle_supported(self) -> bool:
        """Whether wait_for_mail() waits at all; if not, the caller sleeps between polls.

        Connects when not connected yet (capabilities are only known after login).
        """
        if not self.config.idle:
            return False
        return "IDLE" in self._run("connect", lambda s: s.caps)

    def check(self) -> list[str]:
        """Faults for `mailbot doctor`, one line each with its fix; [] when all is well.

        Connects once (no retries), logs in, selects the inbox, reads capabilities, and makes
        sure every configured folder exists, creating missing ones as filing would.
        """
        s = self._main
        with s.lock:
            return self._check(s)

    def _check(self, s: Session) -> list[str]:
        faults: list[str] = []
        try:
            self._connector.ensure_connected(s)
        except (MailboxUnreachable, ConfigError) as exc:
            return [str(exc)]
        except TRANSIENT as exc:
            self._connector.drop(s)
            return [f"{self.name}: cannot reach the server: {describe(exc)}; fix: check "
                    f"[imap] host, port ({self.config.port}) and security "
                    f"(\"{self.config.security}\"), and that the server is up"]
        try:
            faults += self._check_capabilities(s.caps)
            try:
                info = self._select(s)
                if not info.get(b"READ-WRITE"):
                    faults.append(f"[imap] inbox {self.config.inbox!r} opens read-only, so mails "
                                  "cannot be filed; fix: give the user write access to it")
            except MailboxError as exc:
                faults.append(f"[imap] inbox {self.config.inbox!r} cannot be opened ({exc}); "
                              f"fix: set [imap] inbox to an existing folder, e.g. INBOX")
            settings = [(f"folder_{key}", name) for key, name in self._folders.items()]
            if self.config.sent_folder:
                settings.append(("sent_folder", self.config.sent_folder))
            for setting, name in settings:
                try:
                    self._ensure_folder(s, name)
                except MailboxError as exc:
                    faults.append(f"[imap] {setting} {name!r} is missing and cannot be created "
                                  f"({exc}); fix: create it on the server or set [imap] "
                                  f"{setting} to a folder that exists")
        except TRANSIENT as exc:
            self._connector.drop(s)
            faults.append(f"{self.name}: the connection dropped during the check: "
                          f"{describe(exc)}; fix: run the check again, check the server's logs")
        return faults

    # -- connections (mailbot.transport.imap_connection) and the inbox ---------------------

    def _run(self, what: str, op: Callable[[Session], T], session: Session | None = None) -> T:
        """Run `op` on a live connection (the commands one unless `session`), reconnecting
        after a dropped one: `Connector.run`."""
        return self._connector.run(session or self._main, what, op)

    def _select(self, s: Session) -> dict:
        """SELECT the inbox, always afresh: it re-reads UIDVALIDITY and clears stale state.

        The IDLE connection only watches, so it opens the inbox read-only (EXAMINE).
        """
        s.selected = False
        try:
            info = s.client.select_folder(self._server_name(s, self.config.inbox),
                                          readonly=s is self._watch)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"cannot select {self.config.inbox!r}: {exc}") from exc
        s.uidvalidity = int(info[b"UIDVALIDITY"])
        s.selected = True
        return info

    def _ensure_selected(self, s: Session) -> int:
        if not s.selected:
            self._select(s)
        assert s.uidvalidity is not None
        return s.uidvalidity

    # -- the operations ---------------------------------------------------------------------

    def _list_inbox(self, s: Session) -> tuple[int, int, list[int]]:
        """(UIDVALIDITY, highest UID the listing covers, UIDs of undeleted mails)."""
        info = self._select(s)
        uids = sorted(int(u) for u in s.client.search(["UNDELETED"]))
        assert s.uidvalidity is not None
        # UIDNEXT at SELECT, not the last UID found: a mail that came and went must not look
        # new forever to wait_for_mail()
        high = max(int(info.get(b"UIDNEXT", 1)) - 1, uids[-1] if uids else 0)
        return s.uidvalidity, high, uids

    def _fetch_listed(self, validity: int, uids: Sequence[int]) -> Iterator[RawMail]:
        batch = max(1, self.config.batch_size)
        for start in range(0, len(uids), batch):
            chunk = list(uids[start:start + batch])
            sizes = self._run("read mail sizes",
                              lambda s, chunk=chunk: self._sizes(s, validity, chunk))
            group: list[int] = []
            group_bytes = 0
            for uid in chunk:
                size = sizes.get(uid)
                if size is None:
                    continue  # expunged by someone else since the SEARCH
                if size > self.max_message_bytes:
                    yield from self._bodies_of(validity, group, sizes)
                    group, group_bytes = [], 0
                    log.warning("imap oversized source=%s uid=%d size=%d limit=%d",
                                self.name, uid, size, self.max_message_bytes)
                    yield RawMail(source=self.name, mail_id=f"{validity}:{uid}", data=b"",
                                  size=size, oversized=True)
                    continue
                if group and group_bytes + size > BATCH_BYTES:
                    yield from self._bodies_of(validity, group, sizes)
                    group, group_bytes = [], 0
                group.append(uid)
                group_bytes += size
            yield from self._bodies_of(validity, group, sizes)

    def _sizes(self, s: Session, validity: int, uids: list[int]) -> dict[int, int]:
        self._require_validity(s, validity)
        response = s.client.fetch(uids, ["RFC822.SIZE"])
        return {uid: int(data[b"RFC822.SIZE"]) for uid, data in response.items()
                if b"RFC822.SIZE" in data}

    def _bodies_of(self, validity: int, uids: list[int],
                   sizes: dict[int, int]) -> Iterator[RawMail]:
        if not uids:
            return
        bodies = self._run("fetch mails", lambda s: self._bodies(s, validity, uids))
        for uid in uids:
            data = bodies.get(uid)
            if data is None:
                continue  # expunged meanwhile
            yield RawMail(source=self.name, mail_id=f"{validity}:{uid}", data=data,
                          size=sizes.get(uid, len(data)))

    def _bodies(self, s: Session, validity: int, uids: list[int]) -> dict[int, bytes]:
        self._require_validity(s, validity)
        response = s.client.fetch(uids, ["BODY.PEEK[]"])  # PEEK: \Seen stays as it was
        return {uid: bytes(data[b"BODY[]"]) for uid, data in response.items()
                if data.get(b"BODY[]") is not None}

    def _require_validity(self, s: Session, validity: int) -> None:
        if self._ensure_selected(s) != validity:
            raise _ValidityChanged()

    def _file(self, s: Session, validity: int, uids: list[int], target: str) -> None:
        current = self._ensure_selected(s)
        if current != validity:
            for uid in uids:
                log.warning("imap file_skipped source=%s mail_id=%d:%d "
                            "reason=uidvalidity_changed current=%d", self.name, validity, uid,
                            current)
            return
        name = self._ensure_folder(s, target)
        try:
            self._move(s, uids, name)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            if "TRYCREATE" not in str(exc).upper():
                raise
            # someone deleted the folder since we last looked: create it and try once more
            s.known_folders.discard(target)
            name = self._ensure_folder(s, target)
            self._move(s, uids, name)

    def _move(self, s: Session, uids: list[int], name: str) -> None:
        """Move `uids`; when another session expunged some meanwhile (Dovecot answers NO
        [EXPUNGEISSUED] for the whole command), move the ones still there again."""
        for _ in range(_EXPUNGED_RETRIES):
            try:
                return self._move_once(s, uids, name)
            except imaplib.IMAP4.error as exc:  # abort (a lost connection) is not caught here
                if isinstance(exc, imaplib.IMAP4.abort) or "EXPUNGEISSUED" not in str(exc):
                    raise
                uids = [uid for uid in uids if uid in s.client.fetch(uids, ["FLAGS"])]
                if not uids:
                    return None  # all filed (or deleted) by someone else
        return self._move_once(s, uids, name)

    def _move_once(self, s: Session, uids: list[int], name: str) -> None:
        client = s.client
        if "MOVE" in s.caps:
            client.move(uids, name)  # UIDs no longer there: OK, nothing moved
            return
        present = client.fetch(uids, ["FLAGS"])
        uids = [uid for uid in uids if uid in present]
        if not uids:
            return  # already filed (or deleted by someone else)
        client.copy(uids, name)  # raises on NO: then nothing below runs
        client.add_flags(uids, [DELETED], silent=True)
        if "UIDPLUS" in s.caps:
            client.uid_expunge(uids)
        else:
            client.expunge()  # also removes mails others flagged \Deleted: they meant that

    def _restore(self, s: Session, target: str, size: int, matches: Callable[[bytes], bool],
                 record: Callable[[str], None]) -> str:
        self._select(s)
        back = _find(s, size, matches, deleted=False)  # moved back by hand already?
        if back is None:
            self._open(s, target)
            original = _find(s, size, matches, deleted=False)
            if original is None:
                self._select(s)
                raise seams.MailNotFound(f"{self.name}: no mail of {size} bytes with that "
                                         f"content in {target!r} nor in the inbox")
            _, data, when = original
            s.client.append(self._server_name(s, self.config.inbox), data, flags=(DELETED,),
                            msg_time=when)
            self._select(s)
            back = _find(s, size, matches, deleted=True)
            if back is None:
                raise MailboxError(f"{self.name}: the copy appended to the inbox is not there "
                                   "with the same content")
            try:
                record(f"{s.uidvalidity}:{back[0]}")
            except BaseException:
                if "UIDPLUS" in s.caps:  # else it stays flagged \Deleted: invisible
                    s.client.uid_expunge([back[0]])
                raise
            s.client.remove_flags([back[0]], [DELETED], silent=True)
        else:
            record(f"{s.uidvalidity}:{back[0]}")
        new_id = f"{s.uidvalidity}:{back[0]}"
        self._open(s, target)
        original = _find(s, size, matches, deleted=False)
        if original is not None:
            s.client.add_flags([original[0]], [DELETED], silent=True)
            if "UIDPLUS" in s.caps:
                s.client.uid_expunge([original[0]])
            else:
                s.client.expunge()
        self._select(s)
        return new_id

    def _open(self, s: Session, folder: str) -> None:
        """Select another folder than the inbox (the next inbox operation selects it again)."""
        s.selected = False
        try:
            s.client.select_folder(self._server_name(s, folder))
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"cannot select {folder!r}: {exc}") from exc

    def _idle(self, s: Session, deadline: float) -> bool:
        if "IDLE" not in s.caps:
            return False
        if self._has_unlisted_mail(s):
            return True
        client = s.client
        renew = float(self.config.idle_renew_seconds)
        client.idle()
        started = self._clock()
        while True:
            now = self._clock()
            if now >= deadline:
                client.idle_done()
                return False
            if now - started >= renew:
                client.idle_done()
                client.idle()
                started = now
                continue
            wait = max(0.0, min(deadline - now, started + renew - now))
            began = time.monotonic()
            responses = client.idle_check(timeout=wait)
            for response in responses:
                if len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT"):
                    client.idle_done()
                    return True
                if response and response[0] == b"BYE":
                    raise imaplib.IMAP4.abort(f"server said BYE: {_text(response)}")
            if not responses and time.monotonic() - began < wait / 2:
                # idle_check swallows EOF and returns nothing, early: end IDLE, which raises on a
                # dead connection (-> reconnect) and is harmless on a live one
                client.idle_done()
                client.idle()

    def _has_unlisted_mail(self, s: Session) -> bool:
        """Whether mail came after the last listing, while we were not idling.

        A fresh SELECT gives the current UIDNEXT, and since no command runs between it and
        IDLE, the server reports anything later during IDLE. (Comparing events instead would
        miss an EXISTS that a MOVE or APPEND response swallowed.)
        """
        info = self._select(s)
        validity = s.uidvalidity
        listed, announced = self._high_uid, self._announced
        if listed is None or listed[0] != validity:
            return True
        high = max(listed[1], announced[1] if announced and announced[0] == validity else 0)
        if b"UIDNEXT" in info:
            newest = int(info[b"UIDNEXT"]) - 1
        else:  # old servers: sync the view, then ask
            s.client.noop()
            newest = max((int(u) for u in s.client.search(["UID", f"{high + 1}:*"])), default=0)
        if newest > high:
            self._announced = (validity, newest)
            return True
        return False

    # -- folders ------------------------------------------------------------------------------

    def _ensure_folder(self, s: Session, folder: str) -> str:
        """The server's name for `folder`, created (and subscribed) when missing."""
        name = self._server_name(s, folder)
        if folder in s.known_folders:
            return name
        client = s.client
        try:
            if not client.folder_exists(name):
                try:
                    client.create_folder(name)
                    log.info("imap folder_created source=%s folder=%s", self.name, name)
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as exc:
                    if "ALREADYEXISTS" not in str(exc).upper():  # created by someone else: fine
                        raise
                try:
                    client.subscribe_folder(name)  # so mail clients show it
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error:
                    pass
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"cannot create folder {folder!r}: {exc}") from exc
        s.known_folders.add(folder)
        return name

    def _server_name(self, s: Session, folder: str) -> str:
        """Config names use "/" between levels; servers using "." get theirs."""
        if folder.upper() == "INBOX" or "/" not in folder:
            return folder
        if s.delimiter is None:
            delimiter = "/"
            try:
                listing = s.client.list_folders("", "")
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                listing = []
            for _flags, delim, _name in listing:
                if delim:
                    delimiter = delim.decode() if isinstance(delim, bytes) else str(delim)
                    break
            s.delimiter = delimiter
        return folder if s.delimiter == "/" else folder.replace("/", s.delimiter)

    # -- settings -------------------------------------------------------------------------------

    def _validate(self) -> None:
        cfg = self.config
        if not cfg.host:
            raise ConfigError("[imap] host is not set")
        if not cfg.username:
            raise ConfigError("[imap] username is not set")
        check_transport("imap", cfg)
        settings = {"folder_processed": cfg.folder_processed, "folder_review": cfg.folder_review,
                    "folder_ignored": cfg.folder_ignored, "folder_failed": cfg.folder_failed}
        for setting, name in settings.items():
            if not name:
                raise ConfigError(f"[imap] {setting} must name a folder")
            if _same_folder(name, cfg.inbox):
                raise ConfigError(f"[imap] {setting} is the inbox itself; filed mails would be "
                                  "read again: name another folder")
        if cfg.batch_size <= 0:
            raise ConfigError("[imap] batch_size must be greater than zero")
        if cfg.idle_renew_seconds <= 0:
            raise ConfigError("[imap] idle_renew_seconds must be greater than zero")

    def _check_capabilities(self, caps: frozenset[str]) -> list[str]:
        faults = []
        if self.config.idle and "IDLE" not in caps:
            faults.append(f"the server lacks IDLE, so new mail waits for the next poll "
                          f"(every {self.config.poll_interval_seconds} s); fix: set [imap] "
                          "idle = false to say so, or lower poll_interval_seconds")
        if "MOVE" not in caps:
            faults.append("the server lacks MOVE, so mails are filed by COPY + \\Deleted + "
                          "EXPUNGE; fix: none needed (ask for MOVE if filing is slow)")
        if "UIDPLUS" not in caps:
            faults.append("the server lacks UIDPLUS"
                          + (", and without MOVE filing a mail runs a plain EXPUNGE that also "
                             "removes any other mail flagged \\Deleted in the inbox"
                             if "MOVE" not in caps else "")
                          + "; fix: do not flag mails \\Deleted in the inbox by hand, or use a "
                            "server with UIDPLUS")
        return faults


def _groups(messages: Sequence[bytes], count: int, size: int) -> Iterator[Sequence[bytes]]:
    """Consecutive groups of at most `count` messages and `size` bytes (one bigger message
    makes a group of its own)."""
    group: list[bytes] = []
    total = 0
    for message in messages:
        if group and (len(group) >= count or total + len(message) > size):
            yield group
            group, total = [], 0
        group.append(message)
        total += len(message)
    if group:
        yield group


def _find(s: Session, size: int, matches: Callable[[bytes], bool], *,
          deleted: bool) -> tuple[int, bytes, object] | None:
    """(UID, bytes, INTERNALDATE) of the newest mail of the selected folder of `size` bytes
    whose content `matches`, flagged \\Deleted or not."""
    uids = s.client.search(["DELETED" if deleted else "UNDELETED", "LARGER", str(size - 1),
                            "SMALLER", str(size + 1)])
    if not uids:
        return None
    found = s.client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
    for uid in sorted(found, reverse=True):
        data = found[uid].get(b"BODY[]")
        if data is not None and matches(bytes(data)):
            return uid, bytes(data), found[uid].get(b"INTERNALDATE")
    return None


def _parse_mail_id(mail_id: str) -> tuple[int, int]:
    validity, sep, uid = mail_id.partition(":")
    if not sep or not validity.isdigit() or not uid.isdigit():
        raise ValueError(f"not an IMAP mail id (UIDVALIDITY:UID): {mail_id!r}")
    return int(validity), int(uid)


def _same_folder(a: str, b: str) -> bool:
    # INBOX is case-insensitive in IMAP; every other name is not
    return a.upper() == b.upper() == "INBOX" or a == b


def _text(response: tuple) -> str:
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)
                    for p in response[1:])
