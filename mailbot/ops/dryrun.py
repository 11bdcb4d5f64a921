"""`mailbot dry-run`: what the rules and templates would do to some mails, printed, with nothing
stored, bound, sent or filed (the engine is mailbot.run.dryrun).

Inputs are `.eml` files, Maildir folders (every mail in new/ and cur/; a folder without them:
its *.eml files), references of stored mails (`CLV-000042`) and `--since 7d` (every mail
stored within that time). Every input is checked before anything is decided: a missing path, a
reference not stored or an invalid rules or templates folder is one line naming it and the fix,
and exit code 2. Exit 1: the path itself failed on some mail (a template that does not render,
say), which a pass would record and retry; 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailbot.errors import ConfigError, MailbotError, TemplateError
from mailbot.ops.timefmt import business_zone, operator_time
from mailbot.run.dryrun import (
    Change,
    DryMail,
    DryResult,
    DryRunError,
    compare,
    dry_app,
    dry_run,
    stored_mails,
)

EXIT_USER_ERROR = 2
EXIT_DECISION_FAILED = 1

REFERENCE = re.compile(r"[A-Za-z0-9]+-\d+(-[A-Za-z0-9]+)?\Z")


def cmd_dry_run(args: argparse.Namespace) -> int:
    from mailbot import config as config_module
    from mailbot.run.wiring import open_app

    if not args.inputs and args.since is None:
        print("mailbot: error: dry-run: give .eml files, Maildir folders, references "
              "(CLV-000042) or --since 7d", file=sys.stderr)
        return EXIT_USER_ERROR
    config = config_module.load(args.config)
    rules = _rules(args.rules, "--rules") if args.rules else None
    other = _rules(args.against, "--against") if args.against else None
    files, references = _split_inputs(args.inputs)
    app = open_app(config)
    try:
        renderer = _renderer(args.templates, rules or app.rules) if args.templates else None
        mails = [*_file_mails(files)]
        if references or args.since is not None:
            mails.extend(stored_mails(app, references=references, since=args.since))
        before = dry_app(app, rules=rules, renderer=renderer)
        problems = [m for m in mails if m.problem]
        zone = business_zone(config, before.rules)
        if other is not None:
            after = dry_app(before, rules=other)
            changes = compare(before, after, mails)
            _print_changes(changes, len(mails), args, zone, before.now())
            failed = any(c.after.error or c.before.error for c in changes)
        else:
            results = dry_run(before, mails)
            _print_results(results, args, zone, before.now())
            failed = any(r.error for r in results)
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()
    for mail in problems:
        print(f"mailbot: error: {mail.label}: {mail.problem}", file=sys.stderr)
    if problems:
        return EXIT_USER_ERROR
    return EXIT_DECISION_FAILED if failed else 0


# --- inputs ------------------------------------------------------------------------------------

def _rules(directory: str, option: str) -> Any:
    from mailbot.ruleset import load_rules

    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"{option} {directory}: no such folder; give the folder that holds "
                          "kinds.toml, catalogue.toml... (`mailbot rules check` checks one)")
    try:
        return load_rules(path)
    except MailbotError as exc:
        raise ConfigError(f"{option} {directory}: {exc}") from None


def _renderer(directory: str, rules: Any) -> Any:
    from mailbot.answer.render import Renderer

    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"--templates {directory}: no such folder; give the folder that "
                          "holds the *.txt.j2 and *.html.j2 templates")
    renderer = Renderer(path)
    errors = renderer.check(rules)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise TemplateError(f"--templates {directory}: {errors[0]}{more}; fix it "
                            "(`mailbot templates check` lists every error)")
    return renderer


def _split_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Paths that exist are files or folders; a word shaped like a reference is a reference;
    anything else is a missing path, named before anything runs."""
    files: list[Path] = []
    references: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.exists():
            files.append(path)
        elif REFERENCE.match(text) and "/" not in text:
            references.append(text)
        else:
            raise DryRunError(f"{text}: no such file or folder (nor a reference like "
                              "CLV-000042); give an .eml file, a Maildir folder or a stored "
                              "mail's reference")
    return files, references


def _file_mails(paths: Sequence[Path]) -> list[DryMail]:
    out: list[DryMail] = []
    for path in paths:
        for file in _mail_files(path):
            try:
                out.append(DryMail(str(file), file.read_bytes()))
            except OSError as exc:
                raise DryRunError(f"{file}: cannot read: {exc.strerror or exc}") from None
    return out


def _mail_files(path: Path) -> list[Path]:
    """A file is itself; a Maildir is the mails of new/ and cur/ (never moved); another
    folder is its *.eml files. Sorted, so a run is repeatable."""
    if path.is_file():
        return [path]
    boxes = [path / "new", path / "cur"]
    if any(b.is_dir() for b in boxes):
        found = sorted(f for b in boxes if b.is_dir() for f in b.iterdir()
                       if f.is_file() and not f.name.startswith("."))
    else:
        found = sorted(f for f in path.glob("*.eml") if f.is_file())
    if not found:
        raise DryRunError(f"{path}: no mail in it (a Maildir's new/ and cur/, or *.eml files)")
    return found


# --- output ------------------------------------------------------------------------------------

def _header(args: argparse.Namespace, zone: dt.tzinfo, now: dt.datetime, what: str) -> str:
    return (f"dry run at {operator_time(now, zone)}: {what}; against a snapshot of the store, "
            "nothing is stored, bound, sent or filed")


def _print_results(results: Sequence[DryResult], args: argparse.Namespace, zone: dt.tzinfo,
                   now: dt.datetime) -> None:
    if args.json:
        for r in results:
            print(json.dumps(r.to_json(show=args.show), ensure_ascii=False, default=str))
        return
    print(_header(args, zone, now, f"{len(results)} mail(s)"))
    for r in results:
        print()
        print("\n".join(result_lines(r, show=args.show)))


def result_lines(r: DryResult, *, show: bool = False) -> list[str]:
    """One mail's result as text lines (also one side of --against)."""
    head = r.label if r.stored or not r.reference else f"{r.label}  (as {r.reference})"
    lines = [head]
    if r.problem:
        return [*lines, f"    not decided: {r.problem}"]
    if r.error:
        return [*lines, f"    FAILED: {r.error}"]
    lines.append(f"    kind: {r.kind or '-'}   ignored: {r.ignored or '-'}   "
                 f"sender: {r.sender or '-'}")
    lines.append(f"    outcome: {r.outcome or '-'}   folder: {r.folder or '-'}")
    for q in r.requests:
        lines.append(f"    request   {q.get('serial')}  {q.get('system')}  "
                     f"{q.get('company')} <{q.get('contact_email')}>")
    for p in r.problems:
        lines.append(f"    problem   {p.get('code')}: {p.get('detail')}")
    for d in r.decisions:
        to = f" -> {d.recipient}" if d.recipient else ""
        lines.append(f"    decision  {d.serial}: {d.outcome}{to}")
        lines.extend(f"        {rule}: {why}" for rule, why in d.hits)
    for note in r.notes:
        lines.append(f"    note      {note}")
    for m in r.replies:
        lines.append(f"    reply     {m.template} -> {', '.join(m.to)}: {m.subject}")
        if show:
            lines.extend(f"        | {line}" for line in m.text.splitlines())
    if not r.replies:
        lines.append("    reply     (none)")
    return lines


def _print_changes(changes: Sequence[Change], total: int, args: argparse.Namespace,
                   zone: dt.tzinfo, now: dt.datetime) -> None:
    if args.json:
        for c in changes:
            print(json.dumps(change_json(c, show=args.show), ensure_ascii=False, default=str))
        return
    print(_header(args, zone, now, f"{len(changes)} of {total} mail(s) would change with "
                                   f"{args.against}"))
    width = 64
    for c in changes:
        print()
        left = result_lines(c.before, show=args.show)
        right = result_lines(c.after, show=args.show)
        print(f"{'before (' + (args.rules or 'configured rules') + ')':<{width}} | "
              f"after ({args.against})")
        for a, b in _aligned(left, right):
            mark = " " if a == b else "*"
            print(f"{_cut(a, width):<{width}}{mark}| {b}")


def change_json(change: Change, *, show: bool = False) -> dict[str, Any]:
    """One line of `--against --json` (and an item of the console's twin): the mail, and
    what it gets with each side."""
    key = "reference" if change.before.stored else "file"
    return {key: change.before.label, "before": change.before.to_json(show=show),
            "after": change.after.to_json(show=show)}


def _aligned(left: list[str], right: list[str]) -> list[tuple[str, str]]:
    """The two sides' lines paired as a diff pairs them: equal lines face each other, a line
    only one side has faces a blank."""
    pairs: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs.extend(zip(left[i1:i2], right[j1:j2], strict=True))
            continue
        a, b = left[i1:i2], right[j1:j2]
        pairs.extend((a[k] if k < len(a) else "", b[k] if k < len(b) else "")
                     for k in range(max(len(a), len(b))))
    return pairs


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"

