"""`mailbot review list | show | approve | reject | edit`: the operators' side of the queue."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from mailbot.store import reviews
from mailbot.run import review
from mailbot.run.pipeline import App
from mailbot.ops.review_actions import (EDITABLE, REJECTION_TEMPLATES, ActionResult, ReviewError,
                                    approve,
                                    default_operator, edit, format_list, format_task, reject)


# --- the commands --------------------------------------------------------------------------------

def _open(args: argparse.Namespace) -> App:
    from mailbot import config as config_module
    from mailbot.run.wiring import open_app

    return open_app(config_module.load(args.config))


def _close(app: App) -> None:
    app.source.close()
    app.sink.close()
    app.store.close()


def cmd_review_list(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        with app.store.transaction() as conn:
            found = reviews.tasks(conn, include_closed=args.all,
                                 overdue_at=app.now() if args.overdue else None)
        print(format_list(found, now=app.now(), calendar=app.calendar()), end="")
    finally:
        _close(app)
    return 0


def cmd_review_show(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        with app.store.transaction() as conn:
            task = reviews.get(conn, args.id)
            if task is None:
                raise ReviewError(f"no review task #{args.id}; see `mailbot review list --all`")
            print(format_task(conn, task, now=app.now(), calendar=app.calendar()), end="")
    finally:
        _close(app)
    return 0


def _report(result: ActionResult) -> int:
    print(f"task #{result.task}: {result.status}: {result.summary}")
    return 0


def cmd_review_approve(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        return _report(approve(app, args.id, operator=args.operator or default_operator(),
                               note=args.note))
    finally:
        _close(app)


def cmd_review_reject(args: argparse.Namespace) -> int:
    app = _open(args)
    try:
        return _report(reject(app, args.id, template=args.template, note=args.note,
                              operator=args.operator or default_operator()))
    finally:
        _close(app)


def cmd_review_edit(args: argparse.Namespace) -> int:
    changes: dict[str, str] = {}
    for item in args.changes:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ReviewError(f"{item!r} is not FIELD=VALUE (FIELD one of {', '.join(EDITABLE)})")
        changes[name.strip()] = value
    app = _open(args)
    try:
        return _report(edit(app, args.id, changes, operator=args.operator or default_operator(),
                            note=args.note))
    finally:
        _close(app)


def add_review_commands(sub: argparse._SubParsersAction,
                        parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot review ...` on the main parser's subcommands; `parents` (the global
    options) go on `review` and on each of its actions."""
    parser = sub.add_parser("review", help="work the review queue: list, show, approve, reject, "
                                           "edit",
                            description="Work the review queue: everything the rules would not "
                                        "decide alone. Every action is recorded with the "
                                        "operator's name and time.", parents=list(parents))
    actions = parser.add_subparsers(dest="review_command", metavar="ACTION")
    actions.required = True

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_, parents=list(parents))
        p.set_defaults(func=func)
        return p

    def operator(p: argparse.ArgumentParser) -> None:
        p.add_argument("--operator", metavar="NAME",
                       help="who acts (default: $MAILBOT_OPERATOR, else the OS user)")
        p.add_argument("--note", metavar="TEXT", help="a note for the task's history")

    p = add("list", cmd_review_list, "list open review tasks, the most urgent first")
    p.add_argument("--all", action="store_true", help="closed tasks too")
    p.add_argument("--overdue", action="store_true", help="only open tasks past their due time")

    p = add("show", cmd_review_show, "show one task: the mail, what was read, the reasons, the "
                                     "due time and the history")
    p.add_argument("id", type=int, metavar="ID")

    p = add("approve", cmd_review_approve,
            "send the answer the rules would have sent: keys to the registered address, the "
            "unlock confirmation, or the held mail decided now")
    p.add_argument("id", type=int, metavar="ID")
    operator(p)

    p = add("reject", cmd_review_reject,
            "send a rejection template with your note to the sender and close the task")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--template", required=True, choices=REJECTION_TEMPLATES, metavar="NAME",
                   help=f"one of {', '.join(REJECTION_TEMPLATES)}")
    p.add_argument("--note", required=True, metavar="TEXT",
                   help="the reason, in Spanish: the customer reads it")
    p.add_argument("--operator", metavar="NAME",
                   help="who acts (default: $MAILBOT_OPERATOR, else the OS user)")

    p = add("edit", cmd_review_edit,
            "correct what was read, then run the rules again (they may answer, or keep the "
            "task in review)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("changes", nargs="+", metavar="FIELD=VALUE",
                   help=f"FIELD one of {', '.join(EDITABLE)}")
    operator(p)
