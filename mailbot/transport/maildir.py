"""A local Maildir as the inbox: the embedded default, no server needed.

Handled mails are moved, byte for byte, into Maildir++ sub-folders (`.processed`, `.review`,
`.ignored`, `.failed`) so the inbox only ever holds what is still to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mailbot.model import RawMail
from mailbot.transport.seams import FOLDERS


class MaildirSource:
    def __init__(self, root: Path, *, max_message_bytes: int) -> None:
        self.root = root.resolve()
        self.name = f"maildir:{self.root}"
        self.max_message_bytes = max_message_bytes
        for sub in ("cur", "new", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _entries(self) -> dict[str, Path]:
        """Mail key (file name without the `:2,flags` info) -> path, for new/ and cur/."""
        out = {}
        for sub in ("new", "cur"):
            for entry in os.scandir(self.root / sub):
                if entry.is_file() and not entry.name.startswith("."):
                    out[entry.name.split(":", 1)[0]] = Path(entry.path)
        return out

    def fetch_new(self) -> Iterator[RawMail]:
        listed = []
        for key, path in self._entries().items():
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
        if folder not in FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        path = self._entries().get(mail_id)
        if path is None:
            return  # already filed: filing is idempotent
        target = self.root / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        (target / "maildirfolder").touch()
        os.replace(path, target / "cur" / path.name)

    def close(self) -> None:
        pass
