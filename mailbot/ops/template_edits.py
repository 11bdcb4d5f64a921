"""Editing the reply templates from the console (`/admin/plantillas`): list, check, save, preview,
diff and revert, over the same folder an admin may also edit by hand.

The folder on disk stays the source of truth: a save writes its files (each through a temporary
file renamed over the old one in the same folder, so the bot never reads half a file) and the
store keeps the history (mailbot.store.versions). Nothing is written unless the whole folder,
with the edit, passes `Renderer.check` with the rules in use: the edit is first written into a
temporary copy of the folder and checked there. The running `mailbot run` picks the new content
up at its next pass (mailbot.run.versions.refresh), as it would a hand edit.

A save names the content it was made from (`base`, the folder's hash when the page was shown):
when the folder changed meanwhile (another admin, a hand edit), the save is refused rather
than silently undoing the other change.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.answer.parts import HTML_SUFFIX, TEXT_SUFFIX
from mailbot.answer.render import Renderer
from mailbot.answer.samples import sample_contexts
from mailbot.errors import MailbotError
from mailbot.ops.cli_versions import write_diff
from mailbot.ruleset import Ruleset
from mailbot.run.versions import SUFFIXES, content_hash, folder_files
from mailbot.shipped import shipped
from mailbot.store import Store
from mailbot.store import versions as stored

KIND = "templates"
PARTS = {"text": TEXT_SUFFIX, "html": HTML_SUFFIX}


class EditRefused(MailbotError):
    """A save or revert that was not written: why, and the check's lines (file, line, reason)."""

    def __init__(self, message: str, problems: list[str] | None = None,
                 code: str = "invalid") -> None:
        super().__init__(message)
        self.problems = problems or []
        self.code = code


@dataclass(frozen=True)
class Template:
    """One template of the folder: its name and the text of each part (None: no such file)."""

    name: str
    text: str | None
    html: str | None

    @property
    def public(self) -> bool:
        """A reply template (rendered by name); `_name` files are partials others include."""
        return not self.name.startswith("_")


@dataclass
class Folder:
    """The templates folder as it is now: its files, its hash and its version number."""

    directory: Path
    files: dict[str, bytes]
    digest: str
    number: int | None  # None: this content was never recorded (a hand edit not used yet)
    templates: list[Template] = field(default_factory=list)

    def template(self, name: str) -> Template | None:
        return next((t for t in self.templates if t.name == name), None)


def _decode(content: bytes | None) -> str | None:
    return None if content is None else content.decode("utf-8", errors="replace")


def look(store: Store, directory: Path) -> Folder:
    """The folder now, each template with its parts, and the version number of this content."""
    files = folder_files(directory, SUFFIXES[KIND])
    digest = content_hash(files)
    with store.transaction() as conn:
        number = stored.number_of(conn, KIND, digest)
    names = sorted({path[: -len(suffix)] for path in files for suffix in PARTS.values()
                    if path.endswith(suffix) and "/" not in path})
    templates = [Template(name, _decode(files.get(name + TEXT_SUFFIX)),
                          _decode(files.get(name + HTML_SUFFIX))) for name in names]
    return Folder(directory, files, digest, number, templates)


def is_shipped(directory: Path) -> bool:
    """Whether `directory` is the templates shipped with mailbot (the package's own files, or
    this checkout's): an upgrade would overwrite an edit there, so the console does not write
    them; an admin copies them into a folder of the installation first (`mailbot init`)."""
    with contextlib.suppress(OSError):
        return directory.resolve() == shipped(KIND).resolve()
    return False


def normalised(text: str) -> str:
    """A textarea sends CR LF: the files keep the folder's LF, ending with one newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


def edited(folder: Folder, name: str, parts: Mapping[str, str | None]) -> dict[str, bytes]:
    """The folder's files with template `name`'s parts replaced (a part given as None is kept
    as it is). Only templates the folder holds can be edited: a name is never a path."""
    if folder.template(name) is None:
        raise EditRefused(f"{name}: no such template in {folder.directory}", code="unknown")
    files = dict(folder.files)
    for part, text in parts.items():
        if text is not None:
            files[name + PARTS[part]] = normalised(text).encode("utf-8")
    return files


@contextlib.contextmanager
def staged(files: Mapping[str, bytes]) -> Iterator[Path]:
    """A temporary templates folder holding `files`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mailbot-templates-edit-") as name:
        root = Path(name)
        for relative, content in files.items():
            target = root.joinpath(*relative.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        yield root


def check(files: Mapping[str, bytes], rules: Ruleset, directory: Path) -> list[str]:
    """`Renderer.check` on `files` (syntax, sandbox, undefined variables, every sample renders,
    both parts present), its lines naming the real folder's files rather than the copy's."""
    blank = [f"{directory / path}: empty: a reply template needs both parts with text in them "
             "(a customer's client would show a blank mail); write the part or undo the edit"
             for path, content in sorted(files.items())
             if not path.startswith("_") and not content.strip()]
    with staged(files) as root:
        problems = Renderer(root).check(rules)
        return blank + [line.replace(str(root), str(directory)) for line in problems]


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


@dataclass(frozen=True)
class Saved:
    number: int
    digest: str
    changed: list[str]
    previous: int | None


def save(store: Store, directory: Path, rules: Ruleset, files: Mapping[str, bytes], *,
         base: str | None, now: Any = None) -> Saved:
    """Check `files` as the folder's new content, then write them and record the version.

    Refused (nothing written) when the check finds problems, or when the folder is no longer
    the content `base` the edit was made from. The content being replaced is recorded too
    when it never was (a hand edit no pass used yet), so a revert can always go back to it.
    Two saves (two admins, two console processes) take turns on a lock of the folder: the
    second sees the first's content and is refused as a conflict, never written over it."""
    if is_shipped(directory):
        raise EditRefused(f"{directory}: these are the templates shipped with mailbot; copy them "
                          "into a folder of your own and set [mailbot] templates_dir to it",
                          code="shipped")
    with _locked(directory):
        return _save(store, directory, rules, files, base=base, now=now)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (no lock file among the templates)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _save(store: Store, directory: Path, rules: Ruleset, files: Mapping[str, bytes], *,
          base: str | None, now: Any) -> Saved:
    now_folder = look(store, directory)
    if base is not None and base != now_folder.digest:
        raise EditRefused("the templates folder changed since this page was shown",
                          code="conflict")
    problems = check(files, rules, directory)
    if problems:
        raise EditRefused("the templates do not pass the check", problems)
    previous = now_folder.number
    if previous is None:
        previous = stored.record(store, KIND, now_folder.digest, now_folder.files, now)
    changed = write_atomically(directory, files, now_folder.files)
    digest = content_hash(dict(files))
    number = stored.record(store, KIND, digest, files, now)
    return Saved(number, digest, changed, previous)


def versions(store: Store) -> list[dict[str, Any]]:
    with store.transaction() as conn:
        return stored.listing(conn, KIND)


def files_of(store: Store, number: int) -> dict[str, bytes]:
    with store.transaction() as conn:
        files = stored.files_of(conn, KIND, number)
    if files is None:
        raise EditRefused(f"templates v{number}: no such version", code="unknown")
    return files


def diff(old: Mapping[str, bytes], new: Mapping[str, bytes], old_name: str,
         new_name: str) -> str:
    """The unified diff of `mailbot templates diff`, as one text."""
    out = io.StringIO()
    write_diff(old, new, old_name, new_name, out)
    return out.getvalue()


def sample_previews(directory: Path, name: str, rules: Ruleset) -> list[dict[str, Any]]:
    """Template `name` of the folder `directory` rendered on every sample case: label, text,
    HTML (None without an HTML part) or the error line."""
    renderer = Renderer(directory)
    out: list[dict[str, Any]] = []
    for label, context in sample_contexts(name, rules).items():
        try:
            rendered = renderer.render(name, dict(context, bot_name="Claves de actualización"))
        except MailbotError as exc:
            out.append({"sample": label, "text": None, "html": None,
                        "error": str(exc).replace(str(directory), "plantillas")})
            continue
        out.append({"sample": label, "text": rendered.text, "html": rendered.html,
                    "error": None})
    return out


def mail_preview(config: Any, store: Store, rules: Ruleset, directory: Path,
                 reference: str) -> dict[str, Any]:
    """What the stored mail `reference` would be answered now with the templates of
    `directory`: the dry run's engine (mailbot.run.dryrun) on a snapshot of the store, nothing
    stored, bound, sent or filed; its replies carry the rendered text and HTML."""
    from mailbot.run.app import App
    from mailbot.run.dryrun import CapturingSink, dry_app, dry_run, stored_mails
    from mailbot.run.wiring import open_source

    source = open_source(config)
    try:
        app = App(config=config, rules=rules, store=store, renderer=Renderer(directory),
                  source=source, sink=CapturingSink(), read_workers=0)
        mails = stored_mails(app, references=[reference])
        problem = next((m.problem for m in mails if m.problem), None)
        if problem:
            raise EditRefused(f"{reference}: {problem}", code="mail")
        [result] = dry_run(dry_app(app), mails)
    finally:
        source.close()
    return {"reference": reference, "outcome": result.outcome, "error": result.error,
            "replies": [{"template": r.template, "to": list(r.to), "subject": r.subject,
                         "text": r.text, "html": r.html} for r in result.replies]}
