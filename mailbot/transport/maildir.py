"""A local Maildir as the inbox: the embedded default, no server needed.

Handled mails are moved, byte for byte, into Maildir++ sub-folders (`.processed`, `.review`,
`.ignored`, `.failed`) so the inbox only ever holds what is still to do.

The inbox is listed once per pass (`fetch_new`), and the paths it saw are remembered, so filing
a mail is one rename, not another listing of new/ and cur/: a pass stays linear in its backlog
(issue 10, §1). A remembered path that is gone (a mail client moved the file from new/ to
cur/, or renamed it for its flags) costs one fresh listing. Ids the pass's listing did not
have (mails an earlier run decided but did not file) cost one more listing for the whole pass,
not one per batch: an id still not found then was filed already, or is found by the next
pass's listing, and the store, which knows it was filed, files it again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mailbot.model import RawMail
from mailbot.transport.seams import FOLDERS, MailNotFound


class MaildirSource:
    def __init__(self, root: Path, *, max_message_bytes: int) -> None:
        self.root = root.resolve()
        self.name = f"maildir:{self.root}"
        self.max_message_bytes = max_message_bytes
        for sub in ("cur", "new", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, Path] = {}  # mail key -> its path, as the last listing saw it
        self._relisted = False  # listed again for ids the pass's listing did not have
        self._folders_ready: set[str] = set()
        self._listings: dict[Path, dict[str, Path]] = {}  # folder -> entries, for original()

    def _entries(self, box: Path | None = None) -> dict[str, Path]:
        """Mail key (file name without the `:2,flags` info) -> path, for new/ and cur/ of the
        inbox (or of the folder `box`)."""
        out = {}
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir((box or self.root) / sub))
            except FileNotFoundError:  # a folder nothing was filed into yet
                continue
            for entry in entries:
                if entry.is_file() and not entry.name.startswith("."):
                    out[entry.name.split(":", 1)[0]] = Path(entry.path)
        return out

    def fetch_new(self) -> Iterator[RawMail]:
        self._seen = self._entries()
        self._relisted = False
        listed = []
        for key, path in self._seen.items():
            try:
                listed.append((path.stat().st_mtime, key, path))
            except FileNotFoundError:
                continue
        for _, key, path in sorted(listed):
            try:
                size = path.stat().st_size
                if size > self.max_message_bytes:
                    yield RawMail(self.name, key, b"", size=size, oversized=True)
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # filed by another run meanwhile
                continue
            yield RawMail(self.name, key, data, size=len(data))

    def file(self, mail_id: str, folder: str) -> None:
        self.file_many([mail_id], folder)

    def file_many(self, mail_ids: Sequence[str], folder: str) -> None:
        """Move each mail into `folder` by the path the last listing saw; the inbox is listed
        again (once for the whole batch) only for a mail not found there (see the module's
        docstring for how often). A mail that is in the inbox no more was filed already:
        filing is idempotent."""
        if folder not in FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        missed = [m for m in mail_ids if not self._move(self._seen.get(m), folder)]
        moved_away = any(m in self._seen for m in missed)  # listed, not at that path any more
        if not missed or (self._relisted and not moved_away):
            return  # ids no listing of this pass saw: filed already (a miss costs no listing)
        self._relisted = True
        self._seen.update(self._entries())
        for mail_id in missed:
            self._move(self._seen.get(mail_id), folder)

    def _move(self, path: Path | None, folder: str) -> bool:
        """Rename `path` into the folder's cur/; False when there is no such file (any more)."""
        if path is None:
            return False
        target = self._folder(folder)
        try:
            os.replace(path, target / "cur" / path.name)
        except FileNotFoundError:
            if not path.exists() or (target / "cur").is_dir():
                return False
            self._folders_ready.discard(folder)  # the folder was removed meanwhile: again
            os.replace(path, self._folder(folder) / "cur" / path.name)
        self._seen.pop(path.name.split(":", 1)[0], None)
        return True

    def _folder(self, folder: str) -> Path:
        """The Maildir++ folder, created the first time this source files into it."""
        target = self.root / f".{folder}"
        if folder not in self._folders_ready:
            for sub in ("cur", "new", "tmp"):
                (target / sub).mkdir(parents=True, exist_ok=True)
            (target / "maildirfolder").touch()
            self._folders_ready.add(folder)
        return target

    def restore(self, mail_id: str, folder: str, *, size: int, matches: Callable[[bytes], bool],
                record: Callable[[str], None]) -> str:
        """`seams.Source.restore`: the file goes back to the inbox's cur/ under its own name
        (so its key, the mail id, stays the same unless someone renamed it)."""
        if folder not in FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        in_inbox = _find(self._entries(), mail_id, size, matches)
        if in_inbox is not None:  # moved back by hand
            key = in_inbox.name.split(":", 1)[0]
            record(key)
            return key
        path = _find(self._entries(self.root / f".{folder}"), mail_id, size, matches)
        if path is None:
            raise MailNotFound(f"{self.name}: mail {mail_id} is neither in .{folder} nor in "
                               "the inbox")
        key = path.name.split(":", 1)[0]
        record(key)
        os.replace(path, self.root / "cur" / path.name)
        return key

    def original(self, mail_id: str, folder: str | None, *, size: int,
                 matches: Callable[[bytes], bool]) -> bytes:
        """`seams.Source.original`: read, never moved; looked for in the inbox too, where a
        mail waits until it is filed."""
        if folder is not None and folder not in FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        boxes = [self.root] if folder is None else [self.root / f".{folder}", self.root]
        for box in boxes:
            # The folder's listing is kept from the last call (`mailbot dry-run` reads a
            # thousand originals of one folder): listed again whenever it does not find it.
            for fresh in ((False, True) if box in self._listings else (True,)):
                if fresh:
                    self._listings[box] = self._entries(box)
                path = _find(self._listings[box], mail_id, size, matches)
                try:
                    data = path.read_bytes() if path is not None else None
                except FileNotFoundError:  # filed or restored meanwhile
                    data = None
                if data is not None and matches(data):
                    return data
        raise MailNotFound(f"{self.name}: mail {mail_id} is neither in "
                           f"{'.' + folder if folder else 'the inbox'} nor in the inbox")

    def close(self) -> None:
        pass


def _find(entries: dict[str, Path], mail_id: str, size: int,
          matches: Callable[[bytes], bool]) -> Path | None:
    """The entry named `mail_id`, else one of `size` bytes whose content `matches`."""
    if mail_id in entries:
        return entries[mail_id]
    for path in entries.values():
        try:
            if path.stat().st_size == size and matches(path.read_bytes()):
                return path
        except FileNotFoundError:
            continue
    return None
