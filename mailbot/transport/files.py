"""The embedded sink: each reply becomes a file, so mailbot runs (and `make demo` shows its
answers) with no mail server at all.

Layout of the outbox folder, one pair per reply:

    <safe message-id>.json   {"from": ..., "to": [...], "message_id": ..., "written": ...}
    <safe message-id>.eml    exactly the message bytes, nothing added

The name is derived from the Message-ID alone, so "was this reply written already?" is one
look at one file, however full the outbox (which is never pruned) grows (issue 10, §1). Outboxes
written before carry a time stamp in front (`20250114T093000Z-<safe message-id>.*`): a sink
lists the folder once, at its first reply, to recognise those, so a restart after an upgrade
never writes a second file for a reply already there. `sent()` reads replies oldest first, by
the time recorded in the sidecar (or in an old name).

The envelope goes in the sidecar because it is not part of the message (a Bcc recipient is in
the envelope only) and the .eml must open unchanged in any mail client. The sidecar is written
first and the .eml last, each atomically (temporary file in the same folder, fsync, rename), so
an .eml on disk always has its envelope and a half-written file is never visible under a final
name. Files are readable by mailbot's user only: replies carry licence keys.

Delivery is idempotent by Message-ID: the outbox may retry after a crash between "sent" and
"marked sent", and must not produce a second reply file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailbot.transport.seams import SinkUnavailable, TemporaryDeliveryError

Clock = Callable[[], datetime]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
# Faults of the folder itself, not of one reply: no retry fixes them, an operator does.
_FOLDER_FAULTS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                  errno.EROFS: "the file system is read-only",
                  errno.EACCES: "this user may not write there",
                  errno.EPERM: "this user may not write there"}
_MAX_ID_CHARS = 120
# A reply written before the names were derived from the Message-ID alone: stamp-safe id.
_LEGACY_NAME = re.compile(r"^(\d{8}T\d{6}Z)-(.+)\.json$")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def safe_message_id(message_id: str) -> str:
    """A file-name-safe form of a Message-ID that still reads like it.

    Lossy changes (odd characters, excess length) add a short hash of the exact id, so two
    ids that differ only in those characters still get different names.
    """
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    safe = _UNSAFE.sub("_", bare).lstrip(".")[:_MAX_ID_CHARS]
    if safe != bare or not safe:
        digest = _digest(message_id)
        safe = f"{safe}-{digest}" if safe else digest
    return safe


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _stems(message_id: str) -> tuple[str, str]:
    """The two names a reply to `message_id` may have: its safe form, and that form with the
    exact id's hash for the rare id whose safe form another id already holds (`<a@b>` and
    `a@b`)."""
    safe = safe_message_id(message_id)
    return safe, f"{safe}-{_digest(message_id)}"


def _recorded_id(sidecar: Path) -> str | None:
    """The Message-ID a sidecar records; None when there is none (or it cannot be read)."""
    try:
        recorded = json.loads(sidecar.read_bytes()).get("message_id")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


@dataclass(frozen=True)
class FiledReply:
    """A reply as the file sink left it: what a demo or a test reads back."""

    path: Path  # the .eml
    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str
    message: bytes


class FileSink:
    """Sink that writes replies into a folder instead of sending them."""

    def __init__(self, path: Path, *, clock: Clock = _utc_now) -> None:
        self.path = Path(path)
        self._clock = clock
        self._legacy_stems: dict[str, tuple[str, ...]] | None = None

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes,
             message_id: str) -> None:
        """Write the reply and its envelope; a second call with the same message_id is a no-op."""
        if not recipients:
            raise ValueError("a reply needs at least one recipient")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            stem = self._existing_stem(message_id)
            if stem is not None and (self.path / f"{stem}.eml").exists():
                return  # already delivered
            if stem is None:
                stem = self._free_stem(message_id)
                written = self._clock().astimezone(UTC).isoformat(timespec="microseconds")
                envelope = {"from": envelope_from, "to": list(recipients),
                            "message_id": message_id, "written": written}
                _write_atomically(self.path / f"{stem}.json",
                                  json.dumps(envelope, ensure_ascii=False, indent=1).encode())
            # A sidecar left alone by a crash is reused: its .eml is written under its name.
            _write_atomically(self.path / f"{stem}.eml", message)
            _fsync_directory(self.path)
        except OSError as exc:
            problem = _FOLDER_FAULTS.get(exc.errno or 0)
            if problem is not None:
                # Every reply would fail alike: stop the batch, keep each reply queued with its
                # attempts unspent (a half-written file was removed), and say what to fix.
                raise SinkUnavailable(
                    f"cannot write replies into {self.path}: {problem} ({exc.strerror}); fix: "
                    "free space there or make it writable (or set [sink] path); the replies "
                    "stay queued and go out on the next run") from exc
            raise TemporaryDeliveryError(
                f"cannot write reply {message_id} into {self.path}: {exc.strerror or exc}") from exc

    def _existing_stem(self, message_id: str) -> str | None:
        """The name already used for this Message-ID, found through its sidecar: one of the
        two names derived from it, else an old time-stamped name (listed once per sink)."""
        candidates = [*_stems(message_id), *self._legacy().get(safe_message_id(message_id), ())]
        for stem in candidates:
            if _recorded_id(self.path / f"{stem}.json") == message_id:
                return stem
        return None

    def _free_stem(self, message_id: str) -> str:
        """The derived name for a new reply: the readable one, or (when another Message-ID of
        the same safe form holds it) the one with the exact id's hash."""
        plain, hashed = _stems(message_id)
        return plain if not (self.path / f"{plain}.json").exists() else hashed

    def _legacy(self) -> dict[str, tuple[str, ...]]:
        """Safe Message-ID -> the time-stamped names of an outbox written before the derived
        names; the folder is listed once (those names are never written again)."""
        if self._legacy_stems is None:
            found: dict[str, list[str]] = {}
            try:
                names = [entry.name for entry in os.scandir(self.path)]
            except FileNotFoundError:
                names = []
            for name in sorted(names):
                old = _LEGACY_NAME.match(name)
                if old is not None:
                    found.setdefault(old.group(2), []).append(name.removesuffix(".json"))
            self._legacy_stems = {safe: tuple(stems) for safe, stems in found.items()}
        return self._legacy_stems

    def sent(self) -> list[FiledReply]:
        """Every complete reply in the folder, oldest first."""
        replies = []
        for eml in self.path.glob("*.eml"):
            sidecar = eml.with_suffix(".json")
            try:
                envelope = json.loads(sidecar.read_bytes())
                message = eml.read_bytes()
                mtime = eml.stat().st_mtime_ns
            except (OSError, ValueError):
                continue
            old = _LEGACY_NAME.match(sidecar.name)
            written = str(envelope.get("written") or "")
            if not written and old is not None:
                written = datetime.strptime(old.group(1), "%Y%m%dT%H%M%SZ").replace(
                    tzinfo=UTC).isoformat(timespec="microseconds")
            replies.append(((written, mtime, eml.name),
                            FiledReply(path=eml, envelope_from=envelope["from"],
                                       recipients=tuple(envelope["to"]),
                                       message_id=envelope["message_id"], message=message)))
        return [reply for _, reply in sorted(replies, key=lambda pair: pair[0])]

    def check(self) -> list[str]:
        """Faults for `mailbot doctor`, each with its fix; empty when the folder is writable."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".doctor-", delete=True)
            probe.close()
        except OSError as exc:
            return [f"reply folder {self.path} is not writable ({exc.strerror or exc}); "
                    f"fix: create it with write permission for this user, or set [sink] path"]
        return []

    def close(self) -> None:
        """Nothing is held open between replies."""


def _write_atomically(target: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part, even after a power cut."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
