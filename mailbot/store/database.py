"""The store: every mail, what was read from it, every decision and every reply.

SQLAlchemy Core over SQLite (the default) or PostgreSQL (by URL). The schema is created and
upgraded by Alembic (`mailbot/store/migrations`). Everything a run decides is written here before it
acts, so a crash at any point resumes from the last committed state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mailbot.addresses import ascii_address
from mailbot.errors import ConfigError
from mailbot.store.faults import storage_fault, store_faults
from mailbot.store.prepared import Prepared
from mailbot.store.schema import events, keys, licences, mails, outbox, outbox_recipients, requests
from mailbot.store.schema_version import is_current as schema_is_current
from mailbot.store.throttle_counts import BOTH_COUNTS as _BOTH_COUNTS
from mailbot.store.throttle_counts import COMPANY_COUNTS as _COMPANY_COUNTS
from mailbot.store.throttle_counts import ONE_EACH_COUNTS as _ONE_EACH_COUNTS
from mailbot.store.throttle_counts import SERIAL_COUNTS as _SERIAL_COUNTS
from mailbot.store.wal import fsync_wal, synced_later, wal_path

MIGRATIONS = Path(__file__).parent / "migrations"


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The random part of a reference: no 0/O, 1/I/L, so a customer copies it from a reply unharmed.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERENCE_CODE_LENGTH = 6  # 31**6, about 9e8: not guessed by mail, and one mail is one guess


def new_reference(prefix: str, mail_id: int) -> str:
    """"CLV-000042-K7M2QX": the number operators read, and a random code, because a reference
    is what a customer quotes to continue a request and the numbers alone are sequential."""
    # One draw from the system's random source, not one per character (a read of
    # /dev/urandom each); 64 bits spread over 31**6 codes leave no measurable bias.
    number = int.from_bytes(secrets.token_bytes(8), "big")
    code = []
    for _ in range(REFERENCE_CODE_LENGTH):
        number, digit = divmod(number, len(REFERENCE_ALPHABET))
        code.append(REFERENCE_ALPHABET[digit])
    return f"{prefix}-{mail_id:06d}-{''.join(code)}"


def utcnow() -> dt.datetime:
    """Naive UTC: the same on SQLite and PostgreSQL `timestamp without time zone`."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class MailRecord:
    id: int
    source: str
    mail_id: str
    fingerprint: str
    status: str
    folder: str | None
    filed: bool
    attempts: int
    reference: str | None

    @classmethod
    def from_row(cls, row: Any) -> MailRecord:
        return cls(row.id, row.source, row.mail_id, row.fingerprint, row.status, row.folder,
                   bool(row.filed), row.attempts, row.reference)


@dataclass(frozen=True)
class BoundKey:
    """A keys row, as `licence_and_key` reads it beside the licence (the columns of `keys`)."""

    id: int
    system: str
    key: str
    serial: str
    request: int | None
    imported_at: dt.datetime | None
    assigned_at: dt.datetime | None


# The columns a MailRecord needs (not the stored extraction and notes, which can be large).
_RECORD_COLUMNS = (mails.c.id, mails.c.source, mails.c.mail_id, mails.c.fingerprint,
                   mails.c.status, mails.c.folder, mails.c.filed, mails.c.attempts,
                   mails.c.reference)
_IN_CHUNK = 500  # values per IN (...) list: far below every back-end's parameter limit


class Store:
    """One database. `transaction()` is the only way to write, so every write is atomic."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            self.engine: Engine = sa.create_engine(url, echo=echo, future=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"[store] url {url!r} is not usable: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._wal = wal_path(self.engine)  # what `sync()` syncs; None: nothing by hand

    # -- schema ---------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema to `revision` (the newest Alembic revision by default)."""
        try:
            if self.engine.dialect.name == "sqlite":
                db = self.engine.url.database
                if db and db != ":memory:":
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
            if revision == "head" and schema_is_current(self.engine, MIGRATIONS / "versions"):
                return  # nothing to upgrade: Alembic is not even imported (issue 10, §4)
            self._alembic("upgrade", revision)
        except (sa.exc.DatabaseError, OSError) as exc:
            fault = storage_fault(self.engine.url, exc)
            if fault is not None:
                raise fault from None
            if isinstance(exc, OSError):
                raise
            raise ConfigError(f"[store] cannot open {self.engine.url!r}: {exc.orig}") from None

    def downgrade(self, revision: str) -> None:
        """Take the schema back to `revision` (tests and benchmarks of the migrations)."""
        self._alembic("downgrade", revision)

    def _alembic(self, verb: str, revision: str) -> None:
        """Run one Alembic command on this store, in one transaction, with our migrations."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, verb)(cfg, revision)

    @contextmanager
    def transaction(self, *, sync_later: bool = False) -> Iterator[Connection]:
        """One atomic unit of work; a damaged or full store raises StoreError (store.faults)
        naming the file and the fix, and the unit is rolled back whole.

        `sync_later` (SQLite files only; elsewhere ignored): the commit returns before it is
        on the disk (WAL with synchronous=NORMAL for this one commit). A killed process keeps
        it (it is in the WAL the moment the commit returns); a power cut may undo it, and with
        it every later commit, never an earlier one: the same state as a crash just before it.
        So whoever acts outside the store on what such a commit says (sends a reply, moves a
        mail) calls `sync()` first. The pipeline's decisions commit this way, one per mail,
        and the batch's first send syncs them all with one fsync instead of one each."""
        if not sync_later or self._wal is None:
            with store_faults(self.engine.url), self.engine.begin() as conn:
                yield conn
            return
        with store_faults(self.engine.url), self.engine.connect() as conn, synced_later(conn):
            with conn.begin():
                yield conn

    @property
    def wal_file(self) -> str | None:
        """The WAL `sync()` syncs (None: every commit is synced when it returns), for a helper
        process that syncs it itself (mailbot.run.courier)."""
        return self._wal

    def sync(self) -> None:
        """Every commit so far on the disk, also those made with `sync_later` (by this or any
        other process): one fsync of the WAL."""
        if self._wal is not None:
            with store_faults(self.engine.url):
                fsync_wal(self._wal)

    def close(self) -> None:
        self.engine.dispose()

    # -- mails ----------------------------------------------------------------------------

    def find_mail(self, conn: Connection, source: str, mail_id: str) -> MailRecord | None:
        row = conn.execute(sa.select(mails).where(mails.c.source == source,
                                                  mails.c.mail_id == mail_id)).first()
        return MailRecord.from_row(row) if row else None

    def mail_by_fingerprint(self, conn: Connection, fp: str) -> MailRecord | None:
        row = conn.execute(sa.select(mails).where(mails.c.fingerprint == fp,
                                                  mails.c.duplicate_of.is_(None))
                           .order_by(mails.c.id).limit(1)).first()
        return MailRecord.from_row(row) if row else None

    def get_mail(self, conn: Connection, mail: int) -> MailRecord:
        return MailRecord.from_row(conn.execute(_GET_MAIL, {"_id": mail}).one())

    def records(self, conn: Connection, mail_ids: Sequence[int]) -> list[MailRecord]:
        """The records of `mail_ids` (those that exist), in no particular order."""
        out: list[MailRecord] = []
        for start in range(0, len(mail_ids), _IN_CHUNK):
            out.extend(MailRecord.from_row(r) for r in conn.execute(
                sa.select(*_RECORD_COLUMNS).where(
                    mails.c.id.in_(list(mail_ids[start:start + _IN_CHUNK])))))
        return out

    def find_mails(self, conn: Connection, source: str,
                   mail_ids: Sequence[str]) -> dict[str, MailRecord]:
        """The records of those of `mail_ids` (of `source`) already stored, by mail id."""
        found: dict[str, MailRecord] = {}
        for start in range(0, len(mail_ids), _IN_CHUNK):
            rows = conn.execute(sa.select(*_RECORD_COLUMNS).where(
                mails.c.source == source,
                mails.c.mail_id.in_(list(mail_ids[start:start + _IN_CHUNK])))).all()
            found.update((r.mail_id, MailRecord.from_row(r)) for r in rows)
        return found

    def originals_by_fingerprint(self, conn: Connection,
                                 fps: Sequence[str]) -> dict[str, MailRecord]:
        """For each fingerprint stored, its first (non-duplicate) mail; as mail_by_fingerprint."""
        found: dict[str, MailRecord] = {}
        unique = list(dict.fromkeys(fps))
        for start in range(0, len(unique), _IN_CHUNK):
            rows = conn.execute(sa.select(*_RECORD_COLUMNS).where(
                mails.c.fingerprint.in_(unique[start:start + _IN_CHUNK]),
                mails.c.duplicate_of.is_(None)).order_by(mails.c.id)).all()
            for r in rows:
                found.setdefault(r.fingerprint, MailRecord.from_row(r))
        return found

    def add_mail(self, conn: Connection, *, source: str, mail_id: str, fp: str, size: int,
                 status: str = "received", duplicate_of: int | None = None,
                 folder: str | None = None, prefix: str = "CLV", attempts: int = 0,
                 outcome: str | None = None, notes: Sequence[str] | None = None,
                 claimed_by: str | None = None, claim_expires_at: dt.datetime | None = None,
                 deferred_references: list[dict[str, Any]] | None = None) -> MailRecord:
        """Record a mail: an INSERT and the UPDATE that sets its reference (`new_reference`).
        With `claimed_by`, the new row is claimed by that run in the same INSERT (nobody else
        can see it before the commit, so no conditional claim is needed). With
        `deferred_references`, the UPDATE is appended there instead, for `set_references` to
        run for a group of mails as one executemany in the same transaction."""
        new_id = _INSERT_MAIL.scalar(conn, dict(
            source=source, mail_id=mail_id, fingerprint=fp, size=size, status=status,
            duplicate_of=duplicate_of, folder=folder, filed=False, attempts=attempts,
            outcome=outcome,
            notes=json.dumps(list(notes), ensure_ascii=False) if notes is not None else None,
            received_at=utcnow(), claimed_by=claimed_by, claim_expires_at=claim_expires_at))
        reference = new_reference(prefix, new_id)
        if deferred_references is not None:
            deferred_references.append({"_id": new_id, "reference": reference})
        else:
            _SET_REFERENCE.run(conn, {"_id": new_id, "reference": reference})
        return MailRecord(new_id, source, mail_id, fp, status, folder, False, attempts, reference)

    def set_references(self, conn: Connection, deferred: Sequence[dict[str, Any]]) -> None:
        """The references `add_mail` deferred, in one executemany."""
        if deferred:
            _SET_REFERENCE.run_many(conn, deferred)

    def update_mail(self, conn: Connection, mail: int, *, claimed_by: str | None = None,
                    **values: Any) -> bool:
        """SET the columns given. With `claimed_by`, only while the mail is still `received`
        and claimed by that run (mailbot.run.claims): False when it was not, nothing changed."""
        for key in ("extraction", "notes"):
            if key in values and not isinstance(values[key], (str, type(None))):
                values[key] = json.dumps(values[key], ensure_ascii=False, default=str)
        if claimed_by is None:
            _UPDATE_MAIL.run(conn, {"_id": mail, **values})
            return True
        return _UPDATE_CLAIMED_MAIL.rowcount(conn, {"_id": mail, "_run": claimed_by,
                                                    **values}) == 1

    def count_attempt(self, conn: Connection, mail: int, *, claimed_by: str) -> bool:
        """One more attempt for a mail still waiting for its decision and held by `claimed_by`
        (the pipeline counts it before the mail is read); False when it was not."""
        return _COUNT_ATTEMPT.rowcount(conn, {"_id": mail, "_run": claimed_by}) == 1

    def mark_filed(self, conn: Connection, mail_ids: Sequence[int], when: dt.datetime) -> None:
        """Filed, and "decided" becomes "done" (duplicates and quarantined mails keep theirs)."""
        for start in range(0, len(mail_ids), _IN_CHUNK):
            chunk = list(mail_ids[start:start + _IN_CHUNK])
            conn.execute(mails.update().where(mails.c.id.in_(chunk))
                         .values(filed=True, filed_at=when,
                                 status=sa.case((mails.c.status == "decided", "done"),
                                                else_=mails.c.status)))

    def mails_to_finish(self, conn: Connection, source: str) -> list[MailRecord]:
        """Mails of `source` that were decided but are not yet filed (a crash, or a retry)."""
        rows = conn.execute(sa.select(*_RECORD_COLUMNS).where(
            mails.c.source == source, mails.c.filed.is_(False),
            mails.c.status.in_(("decided", "duplicate", "quarantined")))
            .order_by(mails.c.id)).all()
        return [MailRecord.from_row(r) for r in rows]

    def mail_extraction(self, conn: Connection, mail: int) -> str | None:
        return conn.execute(sa.select(mails.c.extraction).where(mails.c.id == mail)).scalar()

    def unalerted(self, conn: Connection) -> list[dict[str, Any]]:
        """Alert events newer than the last grouped alert, oldest first."""
        last = conn.execute(sa.select(sa.func.max(events.c.id)).where(
            events.c.event == "alerts_sent")).scalar()
        last_id = 0
        if last is not None:
            detail = conn.execute(sa.select(events.c.detail).where(events.c.id == last)).scalar()
            last_id = json.loads(detail or "{}").get("up_to", 0)
        rows = conn.execute(sa.select(events, mails.c.reference)
                            .select_from(events.outerjoin(mails, events.c.mail == mails.c.id))
                            .where(events.c.event == "alert", events.c.id > last_id)
                            .order_by(events.c.id)).all()
        out = []
        for r in rows:
            detail = json.loads(r.detail or "{}")
            out.append({"id": r.id, "reference": r.reference, "title": detail.get("title", ""),
                        "detail": detail.get("detail", "")})
        return out

    def mark_alerted(self, conn: Connection, up_to: int) -> None:
        self.log_event(conn, "alerts_sent", up_to=up_to)

    def log_event(self, conn: Connection, event: str, *, mail: int | None = None,
                  **detail: Any) -> None:
        _INSERT_EVENT.run(conn, dict(
            at=utcnow(), mail=mail, event=event,
            detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None))

    # -- requests -------------------------------------------------------------------------

    def add_request(self, conn: Connection, *, mail: int, position: int, kind: str,
                    request: Any, outcome: str, hits: Sequence[Any], recipient: str | None,
                    key_id: int | None) -> int:
        now = utcnow()
        return _INSERT_REQUEST.scalar(conn, dict(
            mail=mail, position=position, kind=kind, company=request.company,
            contact_name=request.contact_name, contact_email=request.contact_email,
            system=request.system, serial=request.serial, source=request.source,
            outcome=outcome, hits=_hits_json(hits), recipient=recipient, key=key_id,
            created_at=now, updated_at=now))

    def update_request(self, conn: Connection, request_id: int, *, outcome: str,
                       hits: Sequence[Any], key_id: int | None) -> None:
        conn.execute(requests.update().where(requests.c.id == request_id).values(
            outcome=outcome, hits=_hits_json(hits), key=key_id, updated_at=utcnow()))

    def correct_request(self, conn: Connection, request_id: int, request: Any, *, outcome: str,
                        hits: Sequence[Any], key_id: int | None,
                        recipient: str | None) -> None:
        """An operator's action decided a stored request again, maybe on corrected fields."""
        conn.execute(requests.update().where(requests.c.id == request_id).values(
            company=request.company, contact_name=request.contact_name,
            contact_email=request.contact_email, system=request.system, serial=request.serial,
            outcome=outcome, key=key_id, recipient=recipient, hits=_hits_json(hits),
            updated_at=utcnow()))

    def count_requests(self, conn: Connection, mail: int) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(requests)
                            .where(requests.c.mail == mail)).scalar_one()

    def mail_notes(self, conn: Connection, mail: int) -> list[str]:
        return json.loads(conn.execute(sa.select(mails.c.notes).where(mails.c.id == mail))
                          .scalar() or "[]")

    def pending_requests(self, conn: Connection) -> list[Any]:
        return conn.execute(sa.select(requests).where(requests.c.outcome == "pending")
                            .order_by(requests.c.id)).all()

    # -- licence registry -----------------------------------------------------------------

    def licence(self, conn: Connection, serial: str) -> Any | None:
        return _LICENCE.first(conn, {"_serial": serial})

    def licences_for(self, conn: Connection, serials: Sequence[str]) -> dict[str, Any]:
        """The registry rows of those of `serials` that are registered, by serial."""
        wanted = list(dict.fromkeys(serials))
        if len(wanted) == 1:
            row = self.licence(conn, wanted[0])
            return {row.serial: row} if row is not None else {}
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            found.update((r.serial, r) for r in conn.execute(sa.select(licences).where(
                licences.c.serial.in_(wanted[start:start + _IN_CHUNK]))))
        return found

    def licence_and_key(self, conn: Connection, serial: str) -> tuple[Any | None,
                                                                   dict[str, Any] | None]:
        """The registry row of `serial` and, when it is registered, the key already bound to
        it, in one statement: (row, {serial: key row} or {}); (None, None) when it is not
        registered (its key, if any, is looked up when asked: `key_for_serial`). One look-up
        instead of two for the usual one-request mail."""
        row = _LICENCE_AND_KEY.first(conn, {"_serial": serial})
        if row is None:
            return None, None
        if row.bound_key_id is None:
            return row, {}
        return row, {serial: BoundKey(row.bound_key_id, row.bound_key_system, row.bound_key,
                                      serial, row.bound_key_request, row.bound_key_imported_at,
                                      row.bound_key_assigned_at)}

    def upsert_licences(self, conn: Connection, records: Sequence[Any]) -> tuple[int, int]:
        """Insert or update by serial; returns (added, updated)."""
        added = updated = 0
        now = utcnow()
        for r in records:
            values = dict(system=r.system, company=r.company, contact_email=r.contact_email,
                          purchase_date=r.purchase_date, modality=r.modality,
                          support_until=r.support_until, users=r.users, updated_at=now)
            exists = conn.execute(sa.select(licences.c.serial)
                                  .where(licences.c.serial == r.serial)).first()
            if exists:
                conn.execute(licences.update().where(licences.c.serial == r.serial)
                             .values(**values))
                updated += 1
            else:
                conn.execute(licences.insert().values(serial=r.serial, **values))
                added += 1
        return added, updated

    # -- keys -----------------------------------------------------------------------------

    def add_keys(self, conn: Connection, records: Sequence[Any]) -> list[str]:
        """Add keys to the pool; returns the keys refused because they are already stored."""
        wanted = [r.key for r in records]
        known: set[str] = set()
        for chunk in range(0, len(wanted), 500):
            known.update(conn.execute(sa.select(keys.c.key).where(
                keys.c.key.in_(wanted[chunk:chunk + 500]))).scalars())
        now = utcnow()
        fresh = [dict(system=r.system, key=r.key, imported_at=now)
                 for r in records if r.key not in known]
        if fresh:
            conn.execute(keys.insert(), fresh)
        return sorted(known)

    def key_for_serial(self, conn: Connection, serial: str) -> Any | None:
        return _KEY_FOR_SERIAL.first(conn, {"_serial": serial})

    def keys_for_serials(self, conn: Connection, serials: Sequence[str]) -> dict[str, Any]:
        """The keys already bound to those of `serials` that have one, by serial."""
        wanted = list(dict.fromkeys(serials))
        if len(wanted) == 1:
            row = self.key_for_serial(conn, wanted[0])
            return {row.serial: row} if row is not None else {}
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            found.update((r.serial, r) for r in conn.execute(sa.select(keys).where(
                keys.c.serial.in_(wanted[start:start + _IN_CHUNK]))))
        return found

    def assign_key(self, conn: Connection, *, system: str, serial: str) -> Any | None:
        """Bind a free key of `system` to `serial`, atomically; None when the pool is empty.

        The conditional UPDATE plus the unique constraint on keys.serial make a double
        assignment impossible even with two runs at once; on PostgreSQL the candidate row is
        also locked (SKIP LOCKED) so concurrent runs take different keys.
        """
        postgresql = conn.dialect.name == "postgresql"
        if conn.dialect.update_returning:
            # One statement: UPDATE ... WHERE id = (the first free key) AND serial IS NULL
            # RETURNING the row. None back means the pool is empty, or (a race) another run
            # took that key first: look again.
            statement = _ASSIGN_KEY_PG if postgresql else _ASSIGN_KEY
            for _ in range(5):
                row = statement.first(conn, {"_system": system, "_serial": serial,
                                             "_now": utcnow()})
                if row is not None:
                    return row
                if _FREE_KEY.first(conn, {"_system": system}) is None:
                    return None
            return None
        for _ in range(5):
            query = (sa.select(keys.c.id).where(keys.c.system == system, keys.c.serial.is_(None))
                     .order_by(keys.c.id).limit(1))
            if postgresql:
                query = query.with_for_update(skip_locked=True)
            candidate = conn.execute(query).scalar()
            if candidate is None:
                return None
            done = conn.execute(keys.update().where(keys.c.id == candidate,
                                                    keys.c.serial.is_(None))
                                .values(serial=serial, assigned_at=utcnow()))
            if done.rowcount == 1:
                return conn.execute(sa.select(keys).where(keys.c.id == candidate)).one()
        return None

    def bind_key_to_request(self, conn: Connection, key_id: int, request_id: int) -> None:
        _BIND_KEY.run(conn, {"_id": key_id, "_request": request_id})

    def bind_keys_to_requests(self, conn: Connection, binds: Sequence[tuple[int, int]]) -> None:
        """`bind_key_to_request` for the (key id, request id) pairs of one mail, in one
        executemany: a spreadsheet's rows cost one statement, not one each."""
        if binds:
            _BIND_KEY.run_many(conn, [{"_id": key, "_request": request}
                                      for key, request in binds])

    def pool_counts(self, conn: Connection) -> dict[str, tuple[int, int]]:
        """system -> (free, assigned)."""
        rows = conn.execute(sa.select(keys.c.system, keys.c.serial.is_(None).label("free"),
                                      sa.func.count()).group_by(keys.c.system, "free")).all()
        out: dict[str, list[int]] = {}
        for system, free, count in rows:
            out.setdefault(system, [0, 0])[0 if free else 1] += count
        return {k: (v[0], v[1]) for k, v in out.items()}

    # -- outbox ---------------------------------------------------------------------------

    def enqueue(self, conn: Connection, *, mail: int | None, purpose: str, template: str,
                message_id: str, envelope_from: str, recipients: Sequence[str],
                data: bytes, versions: Mapping[str, int | None] | None = None) -> int:
        """Queue a message; `versions`: the rules_version and templates_version columns, the
        versions it was rendered with (mailbot.run.versions)."""
        now = utcnow()
        message = _INSERT_OUTBOX.scalar(conn, dict(
            mail=mail, purpose=purpose, template=template, message_id=message_id,
            envelope_from=envelope_from, recipients=json.dumps(list(recipients)), data=data,
            status="queued", attempts=0, created_at=now, **(versions or {})))
        rows = [{"message": message, "address": address, "purpose": purpose, "created_at": now}
                for address in dict.fromkeys(recipient_key(r) for r in recipients if r)]
        if rows:
            _INSERT_RECIPIENT.run_many(conn, rows)
        return message

    def due_messages(self, conn: Connection, *, now: dt.datetime,
                     mail: int | None = None,
                     mail_ids: Sequence[int] | None = None) -> list[Any]:
        """Queued messages whose time has come, oldest first; of one mail, or of `mail_ids`."""
        query = sa.select(outbox).where(outbox.c.status == "queued", sa.or_(
            outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
        if mail is not None:
            query = query.where(outbox.c.mail == mail)
        if mail_ids is None:
            return conn.execute(query.order_by(outbox.c.id)).all()
        rows: list[Any] = []
        for start in range(0, len(mail_ids), _IN_CHUNK):
            rows.extend(conn.execute(query.where(outbox.c.mail.in_(
                list(mail_ids[start:start + _IN_CHUNK])))).all())
        return sorted(rows, key=lambda r: r.id)

    def mails_with_due(self, conn: Connection, mail_ids: Sequence[int], *,
                       now: dt.datetime) -> set[int]:
        """Those of `mail_ids` with a message whose time has come (`due_messages`' choice, but
        only the mails: not the messages' bytes)."""
        found: set[int] = set()
        for start in range(0, len(mail_ids), _IN_CHUNK):
            found.update(conn.execute(sa.select(outbox.c.mail).distinct().where(
                outbox.c.mail.in_(list(mail_ids[start:start + _IN_CHUNK])),
                outbox.c.status == "queued", sa.or_(outbox.c.next_attempt_at.is_(None),
                                                    outbox.c.next_attempt_at <= now))).scalars())
        return found

    def unsent_for_mail(self, conn: Connection, mail: int) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.mail == mail, outbox.c.status == "queued")).scalar_one()

    def mails_with_unsent(self, conn: Connection, mail_ids: Sequence[int]) -> set[int]:
        """Those of `mail_ids` with a message still queued."""
        found: set[int] = set()
        for start in range(0, len(mail_ids), _IN_CHUNK):
            found.update(conn.execute(sa.select(outbox.c.mail).distinct().where(
                outbox.c.mail.in_(list(mail_ids[start:start + _IN_CHUNK])),
                outbox.c.status == "queued")).scalars())
        return found

    def mark_sent(self, conn: Connection, message: int, *, error: str | None = None,
                  copy_pending: bool = False) -> None:
        """Sent; `copy_pending`: a copy for the Sent folder is still to be made."""
        _MARK_SENT.run(conn, {"_id": message, "_now": utcnow(), "_error": error,
                              "_copy": copy_pending})

    def pending_copies(self, conn: Connection) -> list[Any]:
        """Sent messages whose copy for the Sent folder is still to be made (id, mail, data)."""
        return conn.execute(sa.select(outbox.c.id, outbox.c.mail, outbox.c.data)
                            .where(outbox.c.copy_pending.is_(True))
                            .order_by(outbox.c.id)).all()

    def copies_made(self, conn: Connection, messages: Sequence[int]) -> None:
        for start in range(0, len(messages), _IN_CHUNK):
            conn.execute(outbox.update().where(
                outbox.c.id.in_(list(messages[start:start + _IN_CHUNK])))
                .values(copy_pending=False))

    def mark_retry(self, conn: Connection, message: int, *, error: str,
                   next_attempt_at: dt.datetime, count_attempt: bool = True) -> None:
        conn.execute(outbox.update().where(outbox.c.id == message).values(
            attempts=outbox.c.attempts + (1 if count_attempt else 0), last_error=error,
            next_attempt_at=next_attempt_at))

    def mark_failed(self, conn: Connection, message: int, *, error: str) -> None:
        conn.execute(outbox.update().where(outbox.c.id == message).values(
            status="failed", attempts=outbox.c.attempts + 1, last_error=error))

    def request_counts(self, conn: Connection, *, serials: Sequence[str],
                       companies: Sequence[str], since: dt.datetime,
                       mail: int | None) -> tuple[dict[str, int], dict[str, int]]:
        """For the request throttle, once per mail: how many other mails, decided since
        `since`, asked for each of `serials`, and for a licence of each of `companies`.

        `mail` (the mail being decided) is left out: the limits are about earlier mails, and
        its own rows never count against it. Grouped queries over chunks of the values, so a
        10,000-row mail costs a few index look-ups, not one query per row; a value no other
        mail asked for is absent from the result (read it as 0).
        """
        params = {"_since": since, "_mail": -1 if mail is None else mail}
        by_serial: dict[str, int] = {}
        by_company: dict[str, int] = {}
        wanted_serials, wanted_companies = list(dict.fromkeys(serials)), list(
            dict.fromkeys(companies))
        if len(wanted_serials) == 1 and len(wanted_companies) == 1:  # the usual mail
            for value, count, kind in _ONE_EACH_COUNTS.all(conn, {
                    **params, "_serial": wanted_serials[0], "_company": wanted_companies[0]}):
                (by_serial if kind == "s" else by_company)[value] = count
            return by_serial, by_company
        if len(wanted_serials) <= _IN_CHUNK and len(wanted_companies) <= _IN_CHUNK:
            # The usual mail: both counts in one statement (a UNION ALL tagged by kind).
            for value, count, kind in conn.execute(_BOTH_COUNTS, {
                    **params, "_serials": wanted_serials, "_companies": wanted_companies}):
                (by_serial if kind == "s" else by_company)[value] = count
            return by_serial, by_company
        for found, statement, values in ((by_serial, _SERIAL_COUNTS, serials),
                                         (by_company, _COMPANY_COUNTS, companies)):
            wanted = list(dict.fromkeys(values))
            for start in range(0, len(wanted), _IN_CHUNK):
                found.update(conn.execute(statement, {
                    **params, "_values": wanted[start:start + _IN_CHUNK]}).all())
        return by_serial, by_company

    def request(self, conn: Connection, request_id: int) -> Any:
        return conn.execute(sa.select(requests).where(requests.c.id == request_id)).one()

    def replies_to_since(self, conn: Connection, address: str, since: dt.datetime) -> int:
        """Customer answers queued for `address` since `since` (the per-sender throttle).

        Addresses compare in lower case; an index range scan on outbox_recipients, so the cost
        does not grow with the history.
        """
        return _REPLIES_TO_SINCE.scalar(conn, {"address": recipient_key(address),
                                              "since": since})


def recipient_key(address: str) -> str:
    """How outbox_recipients keeps an address (and the throttle looks it up): lower case, the
    domain in the ASCII form the outbox sends to, so a sender counts the same either way."""
    return ascii_address(address).lower()[:500]


# Statements of the per-mail path, built once: building a Core statement costs more than
# SQLite takes to run it, and each is run on the driver's cursor (mailbot.store.prepared).
# (Bind names start with "_": SQLAlchemy reserves column names.)
_GET_MAIL = sa.select(*_RECORD_COLUMNS).where(mails.c.id == sa.bindparam("_id"))
_UPDATE_MAIL = Prepared(mails.update().where(mails.c.id == sa.bindparam("_id")))
_UPDATE_CLAIMED_MAIL = Prepared(mails.update().where(
    mails.c.id == sa.bindparam("_id"), mails.c.status == "received",
    mails.c.claimed_by == sa.bindparam("_run")))
_INSERT_MAIL = Prepared(mails.insert().returning(mails.c.id))
_COUNT_ATTEMPT = Prepared(mails.update().where(
    mails.c.id == sa.bindparam("_id"), mails.c.status == "received",
    mails.c.claimed_by == sa.bindparam("_run")).values(attempts=mails.c.attempts + 1))
_INSERT_REQUEST = Prepared(requests.insert().returning(requests.c.id))
_INSERT_OUTBOX = Prepared(outbox.insert().returning(outbox.c.id))
_INSERT_EVENT = Prepared(events.insert())
_SET_REFERENCE = Prepared(mails.update().where(mails.c.id == sa.bindparam("_id")).values(
    reference=sa.bindparam("reference")))
_LICENCE = Prepared(sa.select(licences).where(licences.c.serial == sa.bindparam("_serial")))
_LICENCE_AND_KEY = Prepared(
    sa.select(licences, keys.c.id.label("bound_key_id"), keys.c.system.label("bound_key_system"),
              keys.c.key.label("bound_key"), keys.c.request.label("bound_key_request"),
              keys.c.imported_at.label("bound_key_imported_at"),
              keys.c.assigned_at.label("bound_key_assigned_at"))
    .select_from(licences.outerjoin(keys, keys.c.serial == licences.c.serial))
    .where(licences.c.serial == sa.bindparam("_serial")))
_KEY_FOR_SERIAL = Prepared(sa.select(keys).where(keys.c.serial == sa.bindparam("_serial")))
_FREE_KEY = Prepared(sa.select(keys.c.id).where(keys.c.system == sa.bindparam("_system"),
                                                keys.c.serial.is_(None)).limit(1))


def _assign_key_statement(skip_locked: bool) -> Prepared:
    candidate = (sa.select(keys.c.id).where(keys.c.system == sa.bindparam("_system"),
                                            keys.c.serial.is_(None))
                 .order_by(keys.c.id).limit(1))
    if skip_locked:  # PostgreSQL: concurrent runs take different keys
        candidate = candidate.with_for_update(skip_locked=True)
    return Prepared(keys.update()
                    .where(keys.c.id == candidate.scalar_subquery(), keys.c.serial.is_(None))
                    .values(serial=sa.bindparam("_serial"), assigned_at=sa.bindparam("_now"))
                    .returning(*keys.c))


_ASSIGN_KEY = _assign_key_statement(False)
_ASSIGN_KEY_PG = _assign_key_statement(True)
_BIND_KEY = Prepared(keys.update().where(keys.c.id == sa.bindparam("_id"),
                                         keys.c.request.is_(None))
                     .values(request=sa.bindparam("_request")))
_MARK_SENT = Prepared(outbox.update().where(outbox.c.id == sa.bindparam("_id")).values(
    status="sent", sent_at=sa.bindparam("_now"), attempts=outbox.c.attempts + 1,
    last_error=sa.bindparam("_error"), copy_pending=sa.bindparam("_copy")))
_INSERT_RECIPIENT = Prepared(outbox_recipients.insert())
_REPLIES_TO_SINCE = Prepared(
    sa.select(sa.func.count(sa.distinct(outbox_recipients.c.message)))
    .where(outbox_recipients.c.address == sa.bindparam("address"),
           outbox_recipients.c.created_at >= sa.bindparam("since"),
           outbox_recipients.c.purpose != "alert"))


def _hits_json(hits: Sequence[Any]) -> str:
    """Each hit as {rule, reason}, plus {template, values} when its reason was written as words
    (RuleHit.to_json), so the console can say it in Spanish; rows without them still read."""
    return json.dumps([h.to_json() if hasattr(h, "to_json") else
                       {"rule": h.rule, "reason": h.reason} for h in hits], ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL, so readers never wait for the writer; synchronous=FULL, so a commit is on the disk
    when it returns: in WAL mode NORMAL syncs only at checkpoints, and a power cut could undo a
    decision whose reply the SMTP server already took (the next run would answer again). The
    one exception, `Store.transaction(sync_later=True)`, is synced by `Store.sync()` before
    anything acts on it.

    The WAL is copied back into the database file every WAL_CHECKPOINT_PAGES pages rather than
    SQLite's 1,000: a pass rewrites the same index and table pages in commit after commit
    (every reply's status, every mail's), and each checkpoint copies each such page once, in
    the commit that triggers it. Every 1,000 pages (about 40 decisions) that was a fifth of a
    commit's time here; the WAL grows to about 32 MB at most instead of 4."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.close()


WAL_CHECKPOINT_PAGES = 8000  # of 4 KB: see _sqlite_pragmas
