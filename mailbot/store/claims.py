"""Claims in the store: which run is working on a mail, until when.

Several instances may run on one mailbox and one store. Before a run decides a mail, sends its
replies or files it, it claims the mail with one conditional UPDATE: only a mail nobody holds
(no claim, an expired lease, or a claimant the caller knows is dead) changes hands, so exactly
one run wins, on SQLite (one writer at a time) and on PostgreSQL (the row is re-checked after a
concurrent commit; SKIP LOCKED passes over rows another run is claiming right now, so
concurrent claims never wait on each other nor deadlock). The decisions over claims (who is
dead, how long a lease lasts) live in `mailbot.run.claims`; this module only reads and writes
rows.

Operator alerts belong to no mail: a message without one is claimed by pushing its
`next_attempt_at` past the lease, so no other run finds it due meanwhile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import mails, outbox

_CHUNK = 500  # ids per IN (...) list


def claim(conn: Connection, mail_ids: Sequence[int], *, run: str, now: dt.datetime,
          until: dt.datetime, steal_from: Collection[str] = ()) -> set[int]:
    """Claim those of `mail_ids` that are free (or already this run's, or held by one of
    `steal_from`) for `run` until `until`; returns the ids `run` now holds."""
    held: set[int] = set()
    unique = list(dict.fromkeys(mail_ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start:start + _CHUNK]
        free = sa.or_(mails.c.claimed_by.is_(None), mails.c.claim_expires_at < now,
                      mails.c.claimed_by == run,
                      *([mails.c.claimed_by.in_(list(steal_from))] if steal_from else []))
        wanted = (mails.c.id.in_(chunk), free)
        candidates = sa.select(mails.c.id).where(*wanted)
        if conn.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        conn.execute(mails.update().where(mails.c.id.in_(candidates.scalar_subquery()), *wanted)
                     .values(claimed_by=run, claim_expires_at=until))
        held.update(conn.execute(sa.select(mails.c.id).where(
            mails.c.id.in_(chunk), mails.c.claimed_by == run)).scalars())
    return held


def claim_one(conn: Connection, mail: int, *, run: str, now: dt.datetime,
              until: dt.datetime) -> bool:
    """`claim` for one mail, in one prepared statement (the per-mail path): True when `run`
    holds it now (rowcount 1: this UPDATE won it, or renewed this run's own claim)."""
    statement = _CLAIM_ONE_PG if conn.dialect.name == "postgresql" else _CLAIM_ONE
    done = conn.execute(statement, {"_id": mail, "_run": run, "_now": now, "_until": until})
    return done.rowcount == 1


def _claim_one_statement(skip_locked: bool) -> Any:
    free = (mails.c.id == sa.bindparam("_id"),
            sa.or_(mails.c.claimed_by.is_(None), mails.c.claim_expires_at < sa.bindparam("_now"),
                   mails.c.claimed_by == sa.bindparam("_run")))
    where: tuple[Any, ...] = free
    if skip_locked:  # PostgreSQL: a row another run is claiming right now is passed over
        where = (mails.c.id.in_(sa.select(mails.c.id).where(*free)
                                .with_for_update(skip_locked=True).scalar_subquery()), *free)
    return mails.update().where(*where).values(claimed_by=sa.bindparam("_run"),
                                               claim_expires_at=sa.bindparam("_until"))


_CLAIM_ONE = _claim_one_statement(False)
_CLAIM_ONE_PG = _claim_one_statement(True)


def holders(conn: Connection, mail_ids: Sequence[int], *, now: dt.datetime) -> dict[int, str]:
    """Mail id -> the run holding an unexpired claim on it, for those of `mail_ids` held."""
    found: dict[int, str] = {}
    unique = list(dict.fromkeys(mail_ids))
    for start in range(0, len(unique), _CHUNK):
        found.update((row.id, row.claimed_by) for row in conn.execute(
            sa.select(mails.c.id, mails.c.claimed_by).where(
                mails.c.id.in_(unique[start:start + _CHUNK]), mails.c.claimed_by.is_not(None),
                mails.c.claim_expires_at >= now)))
    return found


def release(conn: Connection, mail_ids: Sequence[int], *, run: str) -> None:
    """Let go of the claims `run` holds on `mail_ids` (others' claims are left alone)."""
    unique = list(dict.fromkeys(mail_ids))
    for start in range(0, len(unique), _CHUNK):
        conn.execute(mails.update().where(mails.c.id.in_(unique[start:start + _CHUNK]),
                                          mails.c.claimed_by == run)
                     .values(claimed_by=None, claim_expires_at=None))


def claim_message(conn: Connection, message: int, *, now: dt.datetime,
                  until: dt.datetime) -> bool:
    """Claim a queued message that belongs to no mail (an operator alert) until `until`: True
    if this call took it, False if another run did first or it is no longer due."""
    done = conn.execute(outbox.update().where(
        outbox.c.id == message, outbox.c.status == "queued",
        sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
        .values(next_attempt_at=until))
    return done.rowcount == 1
