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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.answer.parts import HTML_SUFFIX, TEXT_SUFFIX
from mailbot.answer.render import Renderer
from mailbot.answer.samples import sample_contexts
from mailbot.errors import MailbotError
from mailbot.ops import folder_edits
from mailbot.ops.folder_edits import EditRefused, Saved, diff
from mailbot.ruleset import Ruleset
from mailbot.store import Store

__all__ = ["EditRefused", "Saved", "diff"]

KIND = "templates"
PARTS = {"text": TEXT_SUFFIX, "html": HTML_SUFFIX}


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
    now = folder_edits.current(store, KIND, directory)
    files = now.files
    names = sorted({path[: -len(suffix)] for path in files for suffix in PARTS.values()
                    if path.endswith(suffix) and "/" not in path})
    templates = [Template(name, _decode(files.get(name + TEXT_SUFFIX)),
                          _decode(files.get(name + HTML_SUFFIX))) for name in names]
    return Folder(directory, files, now.digest, now.number, templates)


def is_shipped(directory: Path) -> bool:
    """Whether `directory` is the templates shipped with mailbot: the console does not write
    them; an admin copies them into a folder of the installation first (`mailbot init`)."""
    return folder_edits.is_shipped(KIND, directory)


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


def staged(files: Mapping[str, bytes]) -> Any:
    """A temporary templates folder holding `files`, removed afterwards."""
    return folder_edits.staged(files, KIND)


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


def save(store: Store, directory: Path, rules: Ruleset, files: Mapping[str, bytes], *,
         base: str | None, now: Any = None) -> Saved:
    """Check `files` with the rules in use, then write them and record the version
    (mailbot.ops.folder_edits.save: refused when shipped, stale or not passing the check)."""
    return folder_edits.save(store, KIND, directory, files,
                             check=lambda f: check(f, rules, directory), base=base, now=now)


def versions(store: Store) -> list[dict[str, Any]]:
    return folder_edits.versions(store, KIND)


def files_of(store: Store, number: int) -> dict[str, bytes]:
    return folder_edits.files_of(store, KIND, number)


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
    from mailbot.ops.rehearsal import console_app
    from mailbot.run.dryrun import dry_app, dry_run, stored_mails

    with console_app(config, store, rules, directory) as app:
        mails = stored_mails(app, references=[reference])
        problem = next((m.problem for m in mails if m.problem), None)
        if problem:
            raise EditRefused(f"{reference}: {problem}", code="mail")
        [result] = dry_run(dry_app(app), mails)
    return {"reference": reference, "outcome": result.outcome, "error": result.error,
            "replies": [{"template": r.template, "to": list(r.to), "subject": r.subject,
                         "text": r.text, "html": r.html} for r in result.replies]}
