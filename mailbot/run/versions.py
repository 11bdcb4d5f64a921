"""Which rules and templates the bot decides and answers with, and picking up an admin's edit.

Each distinct content of the rules folder (its *.toml) and of the templates folder (its *.j2)
is a version: a sha256 over the sorted relative paths and bytes of those files, numbered in the
store (mailbot.store.versions) the first time a pass uses it. Every decided mail and every
queued message records the two numbers (`in_use`), so an answer can always be traced to the
edit that made it.

At the start of each pass `refresh` looks at both folders, cheaply: the files' names, mtimes
and sizes; only when those moved are the files read and hashed, and only when the hash is new
is the content checked (ruleset.check_rules: every problem; Renderer.check: every template
against every sample, with the rules in use). A valid new content is used from this pass on and
recorded. An invalid one is refused: the last good version stays in use (the templates are
then rendered from a copy of its files taken from the store, since the folder on disk no longer
holds them), the problems are logged, and operators get one alert per bad content.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailbot.answer.render import Renderer
from mailbot.ruleset import Ruleset, check_rules
from mailbot.run.app import App
from mailbot.store import Connection
from mailbot.store import versions as stored

log = logging.getLogger("mailbot")

SUFFIXES = {"rules": ".toml", "templates": ".j2"}
TITLES = {"rules": "Reglas inválidas", "templates": "Plantillas inválidas"}
MAX_ALERT_PROBLEMS = 20  # lines of problems in one alert; the log and `check` have them all

Stamp = tuple[tuple[str, int, int], ...]


def _paths(directory: Path, suffix: str) -> list[tuple[str, str]]:
    """(relative path with "/", full path) of every `suffix` file under `directory`, sorted."""
    out = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in names:
            if name.endswith(suffix):
                full = os.path.join(root, name)
                out.append((os.path.relpath(full, directory).replace(os.sep, "/"), full))
    return sorted(out)


def folder_stamp(directory: Path, suffix: str) -> Stamp:
    """(path, mtime in ns, size) of the folder's versioned files: a few dozen stat calls, so
    every pass can afford it; the files are read only when this changes."""
    out = []
    for relative, full in _paths(directory, suffix):
        with contextlib.suppress(OSError):  # removed meanwhile: the next pass sees it
            st = os.stat(full)
            out.append((relative, st.st_mtime_ns, st.st_size))
    return tuple(out)


def folder_files(directory: Path, suffix: str) -> dict[str, bytes]:
    """The folder's versioned files, relative path -> bytes."""
    files = {}
    for relative, full in _paths(directory, suffix):
        with contextlib.suppress(OSError):
            files[relative] = Path(full).read_bytes()
    return files


def content_hash(files: Mapping[str, bytes]) -> str:
    """sha256 over the sorted paths and bytes; each part length-prefixed, so no two different
    folders can run together into the same bytes."""
    digest = hashlib.sha256()
    for path in sorted(files):
        name = path.encode("utf-8")
        digest.update(b"%d:%s%d:" % (len(name), name, len(files[path])))
        digest.update(files[path])
    return digest.hexdigest()


@dataclass
class Folder:
    """One watched folder: the version in use and what was last seen on disk."""

    kind: str
    directory: Path
    stamp: Stamp
    number: int
    digest: str
    refused: set[str] = field(default_factory=set)  # bad contents alerted already
    files: dict[str, bytes] | None = None  # read when loaded, kept until recorded


@dataclass
class Watch:
    """The versions in use by one App, and the rules and renderer it set on it (so a test or a
    dry run that swaps them gets its own versions)."""

    rules: Folder
    templates: Folder
    ruleset: Ruleset
    renderer: Renderer
    frozen: tempfile.TemporaryDirectory[str] | None = None  # the last good templates, copied

    def columns(self) -> dict[str, int]:
        return {"rules_version": self.rules.number, "templates_version": self.templates.number}


def _look(kind: str, directory: Path) -> Folder:
    """The folder's content now, not recorded yet (number 0 until it is)."""
    suffix = SUFFIXES[kind]
    stamp = folder_stamp(directory, suffix)
    files = folder_files(directory, suffix)
    return Folder(kind, directory, stamp, 0, content_hash(files), files=files)


def remember(app: App) -> Watch:
    """Note the content of the folders the App's rules and renderer were just loaded from
    (mailbot.run.wiring.open_app calls it then), without writing: it becomes a version when a
    pass first uses it, so a `run` that refuses to start records nothing."""
    made = Watch(_look("rules", app.rules.directory),
                 _look("templates", app.renderer.templates_dir), app.rules, app.renderer)
    app.versions = made
    return made


def watch(app: App, conn: Connection | None = None) -> Watch:
    """The App's versions, recorded on first use, in `conn` when given: a caller inside a
    transaction must not open a second one (SQLite would wait on itself). An App whose rules or
    renderer were swapped since (a test, a dry run) has its folders looked at now."""
    current = app.versions
    if not (isinstance(current, Watch) and current.ruleset is app.rules
            and current.renderer is app.renderer):
        current = remember(app)
    for f in (current.rules, current.templates):
        if f.files is not None:
            f.number = (stored.record(app.store, f.kind, f.digest, f.files, app.now())
                        if conn is None
                        else stored.record_in(conn, f.kind, f.digest, f.files, app.now()))
            f.files = None
    return current


def in_use(app: App, conn: Connection) -> dict[str, int]:
    """The columns a decided mail and a queued message record, inside the caller's transaction
    `conn`: the numbers of the versions in use (a pass has recorded them at its start)."""
    return watch(app, conn).columns()


def refresh(app: App) -> Watch:
    """Use a changed, valid rules or templates folder from this pass on; refuse an invalid one
    (the last good version stays, operators are alerted once per bad content)."""
    w = watch(app)
    _refresh_rules(app, w)
    _refresh_templates(app, w)
    return w


def _changed(f: Folder) -> tuple[str, dict[str, bytes]] | None:
    """The new content of the folder (hash, files), or None when it is the one in use or one
    refused already. Its stamp is remembered either way: unchanged files are never read twice."""
    suffix = SUFFIXES[f.kind]
    stamp = folder_stamp(f.directory, suffix)
    if stamp == f.stamp:
        return None
    f.stamp = stamp
    files = folder_files(f.directory, suffix)
    digest = content_hash(files)
    if digest == f.digest or digest in f.refused:
        return (digest, files) if digest == f.digest else None
    return digest, files


def _refresh_rules(app: App, w: Watch) -> None:
    found = _changed(w.rules)
    if found is None or found[0] == w.rules.digest:
        return
    digest, files = found
    ruleset, problems = check_rules(w.rules.directory)
    lines = [str(p) for p in problems]
    if ruleset is not None:  # the templates must still render with the new prices and texts
        lines = [f"con estas reglas las plantillas fallan: {e}"
                 for e in _renderer_like(app.renderer, app.renderer.templates_dir).check(ruleset)]
    if ruleset is None or lines:
        _refuse(app, w.rules, digest, lines)
        return
    _accept(app, w.rules, digest, files)
    app.rules = w.ruleset = ruleset
    app._calendar = None  # the business hours may have changed with them


def _refresh_templates(app: App, w: Watch) -> None:
    found = _changed(w.templates)
    if found is None:
        return
    digest, files = found
    if digest == w.templates.digest:  # back to the version in use: render from disk again
        if w.frozen is not None:
            _use_renderer(app, w, _renderer_like(app.renderer, w.templates.directory), None)
        return
    errors = _renderer_like(app.renderer, w.templates.directory).check(app.rules)
    if errors:
        _refuse(app, w.templates, digest, errors)
        if w.frozen is None:  # the folder no longer holds the good version: render a copy
            _freeze(app, w)
        return
    _accept(app, w.templates, digest, files)
    _use_renderer(app, w, _renderer_like(app.renderer, w.templates.directory), None)


def _renderer_like(renderer: Renderer, directory: Path) -> Renderer:
    return Renderer(directory, max_output=renderer.max_output, max_steps=renderer.max_steps,
                    time_limit=renderer.time_limit)


def _use_renderer(app: App, w: Watch, renderer: Renderer,
                  frozen: tempfile.TemporaryDirectory[str] | None) -> None:
    if w.frozen is not None:
        w.frozen.cleanup()
    w.frozen = frozen
    app.renderer = w.renderer = renderer


def _freeze(app: App, w: Watch) -> None:
    """Render from a private copy of the version in use, written from the store's files."""
    with app.store.transaction() as conn:
        files = stored.files_of(conn, "templates", w.templates.number) or {}
    copy = tempfile.TemporaryDirectory(prefix=f"mailbot-templates-v{w.templates.number}-")
    for relative, content in files.items():
        target = Path(copy.name, *relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    _use_renderer(app, w, _renderer_like(app.renderer, Path(copy.name)), copy)


def _accept(app: App, f: Folder, digest: str, files: Mapping[str, bytes]) -> None:
    before = f.number
    f.number = stored.record(app.store, f.kind, digest, files, app.now())
    f.digest = digest
    log.info("event=%s_version_changed from=v%d to=v%d hash=%s folder=%s", f.kind, before,
             f.number, digest[:8], f.directory)
    with app.store.transaction() as conn:
        app.store.log_event(conn, f"{f.kind}_version_used", number=f.number, hash=digest,
                            previous=before)


def _refuse(app: App, f: Folder, digest: str, problems: Sequence[str]) -> None:
    """Keep the version in use; log every problem; alert operators once for this content."""
    f.refused.add(digest)
    log.error("event=%s_refused hash=%s kept=v%d problems=%d: %s", f.kind, digest[:8], f.number,
              len(problems), " | ".join(problems))
    with app.store.transaction() as conn:
        if stored.refusal_recorded(conn, f.kind, digest):
            return
        app.store.log_event(conn, stored.REFUSED, kind=f.kind, hash=digest, kept=f.number,
                            problems=list(problems))
        shown = list(problems[:MAX_ALERT_PROBLEMS])
        if len(problems) > len(shown):
            shown.append(f"... y {len(problems) - len(shown)} más (mailbot {f.kind} check)")
        app.store.log_event(
            conn, "alert", title=f"{TITLES[f.kind]}: se sigue usando la versión v{f.number}",
            detail=f"{f.directory} ({digest[:8]}), {len(problems)} problema(s):\n"
                   + "\n".join(shown))
