"""`mailbot rules versions|diff|revert` and the same for templates: the history of the folders.

Every content of the rules or templates folder that a pass used is a numbered version in the
store, with its files (mailbot.run.versions, mailbot.store.versions). `versions` lists them and
says which one the folder holds now; `diff A B` prints a unified diff per file between two of
them, B being the folder as it is now when not given (what an admin's edit will change);
`revert N` writes version N back into the folder as the console does (mailbot.ops.folder_edits:
checked first, atomically, recorded as a version), printing what it changed.
Registering the commands imports nothing heavy: `mailbot --help` stays fast (issue 10, §4).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mailbot.errors import MailbotError

if TYPE_CHECKING:
    from pathlib import Path

    from mailbot.config import Config

KINDS = {"rules": "the rules folder (rules/*.toml)", "templates": "the templates folder (*.j2)"}
KIND_NAMES = {"rules": "the rules", "templates": "the templates"}


def add_version_commands(actions: argparse._SubParsersAction, kind: str,
                         parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `versions` and `diff` among the actions of `mailbot rules` or `templates`."""
    help_ = (f"list the versions of {KINDS[kind]} used so far: number, hash, first use, files; "
             "marks the one the folder holds now")
    p = actions.add_parser("versions", help=help_, description=help_, parents=list(parents))
    p.add_argument("--json", action="store_true", help="one JSON object per version")
    p.set_defaults(func=cmd_versions, version_kind=kind)
    help_ = (f"a unified diff, file by file, between two versions of {KINDS[kind]}, by number; "
             "without B, against the folder as it is now")
    p = actions.add_parser("diff", help=help_, description=help_, parents=list(parents))
    p.add_argument("a", type=int, metavar="A", help="a version number (see `versions`)")
    p.add_argument("b", type=int, nargs="?", metavar="B",
                   help="another version number (default: the folder now)")
    p.set_defaults(func=cmd_diff, version_kind=kind)
    help_ = (f"write version N of {KIND_NAMES[kind]} back into the folder: checked first (as "
             f"`mailbot {kind} check` does; refused, nothing written, if it does not pass), "
             "recorded as a version; prints the diff it made")
    p = actions.add_parser("revert", help=help_, description=help_, parents=list(parents))
    p.add_argument("number", type=int, metavar="N", help="a version number (see `versions`)")
    p.set_defaults(func=cmd_revert, version_kind=kind)


def _folder(config: Config, kind: str) -> Path:
    from mailbot.run.wiring import rules_dir, templates_dir

    return rules_dir(config) if kind == "rules" else templates_dir(config)


def _open(args: argparse.Namespace) -> tuple[Config, Any]:
    from mailbot import config as config_module
    from mailbot.run.wiring import open_store

    config = config_module.load(args.config)
    return config, open_store(config)


def cmd_versions(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from mailbot.ops.timefmt import operator_time
    from mailbot.run.versions import SUFFIXES, content_hash, folder_files
    from mailbot.store import versions

    kind = args.version_kind
    config, store = _open(args)
    try:
        with store.transaction() as conn:
            found = versions.listing(conn, kind)
    finally:
        store.close()
    folder = _folder(config, kind)
    now = content_hash(folder_files(folder, SUFFIXES[kind])) if folder.is_dir() else None
    if args.json:
        for v in found:
            print(json.dumps({"kind": kind, "number": v["number"], "hash": v["hash"],
                              "first_used_at": v["first_used_at"].isoformat(timespec="seconds"),
                              "files": v["files"], "in_folder": v["hash"] == now},
                             ensure_ascii=False))
        return 0
    zone = ZoneInfo(config.bot.timezone)
    for v in found:
        mark = "   <- the folder now" if v["hash"] == now else ""
        print(f"{kind} v{v['number']}  {v['hash'][:8]}  first used "
              f"{operator_time(v['first_used_at'], zone)}  {len(v['files'])} file(s){mark}")
        print(textwrap.fill(", ".join(v["files"]) or "(no files)", width=96,
                            initial_indent="    ", subsequent_indent="    ",
                            break_on_hyphens=False))
    if not found:
        print(f"(no {kind} version recorded yet: a pass of `mailbot run` records the first)")
    if now is not None and all(v["hash"] != now for v in found):
        print(f"{folder}: {now[:8]}, not used by a pass yet (`mailbot {kind} diff "
              f"{found[-1]['number'] if found else 'N'}` shows what changed)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from mailbot.run.versions import SUFFIXES, folder_files
    from mailbot.store import versions

    kind = args.version_kind
    config, store = _open(args)
    try:
        with store.transaction() as conn:
            old = versions.files_of(conn, kind, args.a)
            new = versions.files_of(conn, kind, args.b) if args.b is not None else None
    finally:
        store.close()
    for number, files in ((args.a, old), (args.b, new)):
        if number is not None and files is None:
            raise MailbotError(f"{kind} v{number}: no such version (`mailbot {kind} versions` "
                               "lists them)")
    if args.b is None:
        folder = _folder(config, kind)
        if not folder.is_dir():
            raise MailbotError(f"{folder}: {kind} directory not found")
        new = folder_files(folder, SUFFIXES[kind])
        new_name = f"{kind} (folder {folder})"
    else:
        new_name = f"{kind} v{args.b}"
    assert old is not None and new is not None
    changed = write_diff(old, new, f"{kind} v{args.a}", new_name, sys.stdout)
    if not changed:
        print(f"{kind} v{args.a} and {new_name}: no difference")
    return 0


def cmd_revert(args: argparse.Namespace) -> int:
    from mailbot.ops import folder_edits

    kind = args.version_kind
    config, store = _open(args)
    folder = _folder(config, kind)
    try:
        if not folder.is_dir():
            raise MailbotError(f"{folder}: {kind} directory not found")
        try:
            saved, changes = folder_edits.revert(store, kind, folder, args.number,
                                                 check=_check(config, kind, folder))
        except folder_edits.EditRefused as exc:
            if exc.code == "unknown":
                raise MailbotError(f"{kind} v{args.number}: no such version (`mailbot {kind} "
                                   "versions` lists them)") from None
            if not exc.problems:
                raise MailbotError(str(exc)) from None
            print(f"mailbot: error: {kind} v{args.number} does not pass the check: nothing "
                  "was written", file=sys.stderr)
            for line in exc.problems:
                print(f"  {line}", file=sys.stderr)
            return 2
    finally:
        store.close()
    if not saved.changed:
        print(f"{folder}: already holds {kind} v{args.number}: nothing to write")
        return 0
    sys.stdout.write(changes)
    print(f"{folder}: {kind} v{args.number} written back ({', '.join(saved.changed)}); "
          f"it is {kind} v{saved.number} now (it was v{saved.previous}); a running "
          "`mailbot run` uses it from its next pass")
    return 0


def _check(config: Config, kind: str, folder: Path) -> Any:
    """The check a console save of `kind` runs, for the folder `folder`."""
    if kind == "rules":
        from mailbot.ops import rule_edits
        from mailbot.run.wiring import templates_dir

        return lambda files: rule_edits.check(files, folder, templates_dir(config))
    from mailbot.ops import template_edits
    from mailbot.run.wiring import open_rules

    rules = open_rules(config)
    return lambda files: template_edits.check(files, rules, folder)


def write_diff(old: Mapping[str, bytes], new: Mapping[str, bytes], old_name: str,
               new_name: str, out: Any) -> int:
    """A unified diff of every file that differs (added and removed files too); how many."""
    changed = 0
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        changed += 1
        lines = difflib.unified_diff(
            _lines(before), _lines(after),
            fromfile=f"{old_name}/{path}" if before is not None else "/dev/null",
            tofile=f"{new_name}/{path}" if after is not None else "/dev/null")
        for line in lines:
            out.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return changed


def _lines(content: bytes | None) -> list[str]:
    if content is None:
        return []
    return content.decode("utf-8", errors="replace").splitlines(keepends=True)
