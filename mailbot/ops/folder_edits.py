"""Writing a versioned folder (the rules, the templates) from the console or the CLI: one place
for what every such write must do, whatever the folder holds.

The folder on disk stays the source of truth an admin may also edit by hand; the store keeps
the history (mailbot.store.versions, hashed by mailbot.run.versions). A write:
- names the content it was made from (`base`, the folder's hash when the page was shown): when
  the folder changed meanwhile (another admin, a hand edit), it is refused as a conflict rather
  than silently undoing the other change;
- takes turns with any other write on an exclusive lock of the folder itself;
- is checked first, on a temporary copy of the folder, by the kind's own check (the rules
  loader, the templates renderer): nothing is written unless the whole new content passes;
- writes each changed file through a temporary file renamed over the old one in the same
  folder, so the running bot never reads half a file;
- records the content it replaces when no pass recorded it yet (a hand edit), so a revert can
  always go back to it, and the new content as the next version.
The shipped folders (the package's own, this checkout's) are never written: an upgrade would
undo the edit.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbot.errors import MailbotError
from mailbot.ops.cli_versions import write_diff
from mailbot.run.versions import SUFFIXES, content_hash, folder_files
from mailbot.shipped import shipped
from mailbot.store import Store
from mailbot.store import versions as stored

# What `[mailbot]` key points a kind's folder elsewhere (the shipped folder's refusal says it).
SETTING = {"rules": "rules_dir", "templates": "templates_dir"}

Check = Callable[[Mapping[str, bytes]], list[str]]


class EditRefused(MailbotError):
    """A save or revert that was not written: why, and the check's lines (file, line, reason).
    `code`: invalid (the check refused it), conflict (the folder changed since `base`),
    shipped (the folder is mailbot's own), unknown (no such template or version)."""

    def __init__(self, message: str, problems: list[str] | None = None,
                 code: str = "invalid") -> None:
        super().__init__(message)
        self.problems = problems or []
        self.code = code


@dataclass(frozen=True)
class Current:
    """A folder as it is now: its versioned files, their hash, and the version number of this
    content (None: never recorded, e.g. a hand edit no pass has used yet)."""

    directory: Path
    files: dict[str, bytes]
    digest: str
    number: int | None


@dataclass(frozen=True)
class Saved:
    number: int
    digest: str
    changed: list[str]
    previous: int | None


def current(store: Store, kind: str, directory: Path) -> Current:
    files = folder_files(directory, SUFFIXES[kind])
    digest = content_hash(files)
    with store.transaction() as conn:
        number = stored.number_of(conn, kind, digest)
    return Current(directory, files, digest, number)


def is_shipped(kind: str, directory: Path) -> bool:
    """Whether `directory` is the `kind` folder shipped with mailbot (the package's own files,
    or this checkout's): an admin copies it into a folder of the installation first."""
    with contextlib.suppress(OSError):
        return directory.resolve() == shipped(kind).resolve()
    return False


@contextlib.contextmanager
def staged(files: Mapping[str, bytes], kind: str) -> Iterator[Path]:
    """A temporary folder holding `files`, removed afterwards: where an edit is checked."""
    with tempfile.TemporaryDirectory(prefix=f"mailbot-{kind}-edit-") as name:
        root = Path(name)
        for relative, content in files.items():
            target = root.joinpath(*relative.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        yield root


def write_atomically(directory: Path, files: Mapping[str, bytes],
                     old: Mapping[str, bytes]) -> list[str]:
    """Write the files that differ from `old`, each by a temporary file in the same folder
    renamed over the old one (a reader sees the old file or the new, never half of one), and
    remove the ones `files` no longer has. Which paths changed."""
    changed = []
    for relative, content in sorted(files.items()):
        if old.get(relative) == content:
            continue
        target = directory.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            if target.exists():
                shutil.copymode(target, temporary)
            else:
                os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        changed.append(relative)
    for relative in sorted(set(old) - set(files)):
        with contextlib.suppress(FileNotFoundError):
            directory.joinpath(*relative.split("/")).unlink()
        changed.append(relative)
    with contextlib.suppress(OSError):  # the renames themselves survive a power cut
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return changed


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (no lock file among the versioned files)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def save(store: Store, kind: str, directory: Path, files: Mapping[str, bytes], *,
         check: Check, base: str | None, now: Any = None) -> Saved:
    """Check `files` as the folder's new content, then write them and record the version.

    Refused (nothing written) when the folder is mailbot's own, when it is no longer the
    content `base` the edit was made from, or when `check` finds problems. Two saves (two
    admins, two console processes, the CLI) take turns on a lock of the folder: the second
    sees the first's content and is refused as a conflict, never written over it."""
    if is_shipped(kind, directory):
        raise EditRefused(f"{directory}: these are the {kind} shipped with mailbot; copy them "
                          f"into a folder of your own and set [mailbot] {SETTING[kind]} to it",
                          code="shipped")
    with locked(directory):
        now_folder = current(store, kind, directory)
        if base is not None and base != now_folder.digest:
            raise EditRefused(f"the {kind} folder changed since this page was shown",
                              code="conflict")
        problems = check(files)
        if problems:
            raise EditRefused(f"the {kind} do not pass the check", problems)
        previous = now_folder.number
        if previous is None:
            previous = stored.record(store, kind, now_folder.digest, now_folder.files, now)
        changed = write_atomically(directory, files, now_folder.files)
        digest = content_hash(dict(files))
        number = stored.record(store, kind, digest, files, now)
    return Saved(number, digest, changed, previous)


def versions(store: Store, kind: str) -> list[dict[str, Any]]:
    with store.transaction() as conn:
        return stored.listing(conn, kind)


def files_of(store: Store, kind: str, number: int) -> dict[str, bytes]:
    with store.transaction() as conn:
        files = stored.files_of(conn, kind, number)
    if files is None:
        raise EditRefused(f"{kind} v{number}: no such version", code="unknown")
    return files


def revert(store: Store, kind: str, directory: Path, number: int, *, check: Check,
           base: str | None = None, now: Any = None) -> tuple[Saved, str]:
    """Write version `number` back (checked and recorded as a save is); and the diff it made
    to the folder, as `mailbot diff` prints one."""
    files = files_of(store, kind, number)
    before = current(store, kind, directory).files
    saved = save(store, kind, directory, files, check=check, base=base, now=now)
    return saved, diff(before, files, f"{kind} (folder before)", f"{kind} v{number}")


def diff(old: Mapping[str, bytes], new: Mapping[str, bytes], old_name: str,
         new_name: str) -> str:
    """The unified diff of `mailbot rules|templates diff`, as one text."""
    out = io.StringIO()
    write_diff(old, new, old_name, new_name, out)
    return out.getvalue()
