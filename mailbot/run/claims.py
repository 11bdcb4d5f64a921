"""One run at a time per mail, however many instances share a mailbox and a store.

A run claims a mail (mailbot.store.claims) before it records its attempt and decides it, and
keeps the claim while it sends the mail's replies and files it; the pass lets go at the end of
the batch. Another run that meets a claimed mail leaves it alone. The claim is a lease: a run
that dies holds nothing after CLAIM_LEASE, and sooner on the same machine, where a claim whose
process is gone is taken over at once (so a restart after a crash goes on where it stopped).

The lease is what keeps runs from doing the same work; what makes a second answer impossible is
that the decision commits only while the mail is still `received` and claimed by this run
(`Store.update_mail(claimed_by=...)`): a run whose lease ran out rolls its whole decision back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailbot.store import Connection
from mailbot.store import claims as stored

if TYPE_CHECKING:
    from mailbot.run.app import App

# How long a claim lasts without renewal. It must outlast what a run does with a mail between
# two renewals (record and decide one mail; then decide the rest of its batch of 100 before the
# sends renew it), with a wide margin; it is also how long the mails of a run that died on
# another machine wait.
CLAIM_LEASE = dt.timedelta(minutes=10)

log = logging.getLogger("mailbot")


class ClaimLost(Exception):
    """The mail was not this run's when its decision was to be committed."""


def new_run_id() -> str:
    """A run's name in claims: unique (uuid4), and where it runs (pid@host), so a run on the
    same machine can tell that the claimant's process is gone."""
    return f"{uuid.uuid4().hex} {os.getpid()}@{socket.gethostname()[:50]}"


def claimant_gone(claimant: str) -> bool:
    """True when `claimant` ran on this machine and its process no longer exists. A process of
    another machine, or one that cannot be checked, counts as alive (its lease will expire)."""
    _, _, where = claimant.partition(" ")
    pid_text, _, host = where.partition("@")
    if host != socket.gethostname()[:50] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        # Another App in this process (tests), or a dead process whose pid we got: alive is
        # the safe guess.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # killed, not yet reaped by its parent
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def claim(app: App, conn: Connection, mail_ids: Sequence[int]) -> set[int]:
    """Claim (or renew) `mail_ids` for this run, taking over those whose claimant is gone;
    returns the ids this run holds."""
    if not mail_ids:
        return set()
    now = app.now()
    until = now + CLAIM_LEASE
    if len(mail_ids) == 1 and stored.claim_one(conn, mail_ids[0], run=app.run_id, now=now,
                                               until=until):
        return {mail_ids[0]}
    held = (set() if len(mail_ids) == 1
            else stored.claim(conn, mail_ids, run=app.run_id, now=now, until=until))
    if len(held) == len(set(mail_ids)):
        return held
    others = stored.holders(conn, [m for m in mail_ids if m not in held], now=now)
    gone = {c for c in set(others.values()) if claimant_gone(c)}
    if gone:
        held |= stored.claim(conn, [m for m, c in others.items() if c in gone],
                             run=app.run_id, now=now, until=until, steal_from=gone)
    return held


def held_elsewhere(app: App, conn: Connection, mail_ids: Sequence[int]) -> set[int]:
    """Those of `mail_ids` another live run holds now (a look, not a claim: cheap to ask
    before trying)."""
    others = {m: c for m, c in stored.holders(conn, mail_ids, now=app.now()).items()
              if c != app.run_id}
    gone = {c for c in set(others.values()) if claimant_gone(c)}
    return {m for m, c in others.items() if c not in gone}


def claim_alert(app: App, conn: Connection, message: int) -> bool:
    """Claim a queued operator alert (a message of no mail) for as long as a lease: True when
    this run took it and is to send it."""
    return stored.claim_message(conn, message, now=app.now(), until=lease_end(app))


def let_go(app: App, mail_ids: Sequence[int]) -> None:
    """Let go of this run's claims on `mail_ids`, in a commit of its own. It runs on the way
    out of a step, whatever happened in it, so it never raises: a claim it could not clear
    lapses with its lease (at once for a restart on this machine)."""
    if not mail_ids:
        return
    try:
        with app.store.transaction() as conn:
            stored.release(conn, mail_ids, run=app.run_id)
    except Exception as exc:
        log.warning("event=claims_kept mails=%d error=%r: they lapse with their lease",
                    len(mail_ids), str(exc))


def lease_end(app: App) -> dt.datetime:
    return app.now() + CLAIM_LEASE
