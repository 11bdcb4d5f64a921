"""`mailbot init [DIR]`: a starting installation for an admin to edit.

It copies what ships with mailbot (`config.example.toml` as `config.toml`, the default `rules/`
and `templates/`) into DIR. A file that is already there is never overwritten: it is kept and
reported, so running init again on an edited installation only adds what is missing.
Everything that can make it fail (DIR is a file, a folder it needs is a file, the shipped
defaults are missing) is checked before the first file is written.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mailbot.errors import MailbotError
from mailbot.shipped import shipped

CONFIG_NAME = "config.toml"
CONFIG_HEADER = ("# Written by `mailbot init` from the config.example.toml that ships with "
                 "mailbot.\n")
FOLDERS = ("rules", "templates")


@dataclass(frozen=True)
class InitResult:
    directory: Path
    written: tuple[str, ...]  # paths relative to directory, "rules/kinds.toml"
    kept: tuple[str, ...]  # files that were already there and were left alone
    planned: dict[str, tuple[str, ...]]  # "config.toml", "rules", "templates": their files

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME


def _shipped_files() -> dict[str, bytes]:
    """Every file init writes, by its path relative to DIR, with its contents."""
    files: dict[str, bytes] = {}
    example = shipped("config.example.toml")
    try:
        files[CONFIG_NAME] = CONFIG_HEADER.encode() + example.read_bytes()
    except OSError as exc:
        raise MailbotError(f"{example}: the example configuration that ships with mailbot "
                           f"cannot be read ({exc.strerror}); reinstall mailbot") from None
    for folder in FOLDERS:
        source = shipped(folder)
        try:
            entries = sorted(p for p in source.iterdir()
                             if p.is_file() and not p.name.startswith("."))
        except OSError as exc:
            raise MailbotError(f"{source}: the default {folder} that ship with mailbot cannot "
                               f"be read ({exc.strerror}); reinstall mailbot") from None
        if not entries:
            raise MailbotError(f"{source}: the default {folder} that ship with mailbot are "
                               "missing; reinstall mailbot")
        for path in entries:
            try:
                files[f"{folder}/{path.name}"] = path.read_bytes()
            except OSError as exc:
                raise MailbotError(f"{path}: cannot read: {exc.strerror}") from None
    return files


def _check_folder(path: Path) -> None:
    """A folder init writes into: absent (it will be made) or a directory it can write."""
    if path.exists() and not path.is_dir():
        raise MailbotError(f"{path}: exists and is not a directory; move it away or choose "
                           "another directory")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise MailbotError(f"{path}: directory is not writable")


def _write_new(path: Path, data: bytes) -> bool:
    """Write `path` whole unless it exists; False if it was already there (left untouched)."""
    if path.exists() or path.is_symlink():
        return False
    tmp = path.with_name(f".{path.name}.mailbot-init-{os.getpid()}")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)  # atomic, and fails rather than replace a file
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            with open(path, "xb") as out:
                out.write(data)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def init(directory: str | Path = ".") -> InitResult:
    """Write config.toml, rules/ and templates/ into `directory`, keeping any file already there."""
    directory = Path(directory)
    files = _shipped_files()
    _check_folder(directory)
    for folder in FOLDERS:
        _check_folder(directory / folder)
    for name in files:
        target = directory / name
        if target.is_dir():
            raise MailbotError(f"{target}: is a directory where mailbot init writes a file; "
                               "move it away")

    written: list[str] = []
    kept: list[str] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for folder in FOLDERS:
            (directory / folder).mkdir(exist_ok=True)
        for name, data in files.items():
            (written if _write_new(directory / name, data) else kept).append(name)
    except OSError as exc:
        where = exc.filename or directory
        done = f" ({len(written)} file(s) written before it)" if written else ""
        raise MailbotError(f"{where}: cannot write: {exc.strerror}{done}") from None

    planned: dict[str, tuple[str, ...]] = {CONFIG_NAME: (CONFIG_NAME,)}
    for folder in FOLDERS:
        planned[folder] = tuple(n for n in files if n.startswith(folder + "/"))
    return InitResult(directory=directory, written=tuple(written), kept=tuple(kept),
                      planned=planned)


def invoked_as() -> str:
    """How to call mailbot again, as this process was called: "mailbot" when that is what
    PATH finds, else the path it was started by (".venv/bin/mailbot" in a checkout)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "mailbot":
        return "mailbot"
    on_path = shutil.which("mailbot")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "mailbot"
    return argv0


def report_lines(result: InitResult, *, program: str | None = None) -> list[str]:
    """What `mailbot init` prints: what it wrote, what it kept, and what to do next."""
    program = program or invoked_as()
    lines = [f"mailbot init: {result.directory.resolve()}"]
    written, kept = set(result.written), set(result.kept)
    for group, names in result.planned.items():
        label = group if group == CONFIG_NAME else f"{group}/"
        new = [n for n in names if n in written]
        if group == CONFIG_NAME:
            if new:
                lines.append(f"  wrote {label}")
        elif new:
            shown = ", ".join(n.split("/", 1)[1] for n in new) if len(new) <= 8 else ""
            lines.append(f"  wrote {label} ({len(new)} file(s){': ' + shown if shown else ''})")
        old = [n for n in names if n in kept]
        if old and len(old) == len(names) and len(names) > 1:
            lines.append(f"  kept  {label} (all {len(names)} files were already there; "
                         "none overwritten)")
        else:
            lines.extend(f"  kept  {n} (already there; not overwritten)" for n in old)
    if not result.written:
        lines.append("  nothing written: every file was already there")
    config = result.config_path
    here = config.parent.resolve() == Path.cwd().resolve()
    run = program if here else f"{program} --config {config}"
    lines += [
        "next steps:",
        f"  1. edit {config} (at least [mailbot] address and operators; [source] and [sink] "
        "for a real mailbox) and the rules in "
        f"{result.directory / 'rules'}/",
        f"  2. {run} doctor",
        f"  3. {run} run --once",
    ]
    return lines
