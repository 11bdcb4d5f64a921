"""The `review`, `registry`, `keys`, `users` and `web` sub-commands' arguments, registered
without importing what the commands run: each command's function is imported when it is
chosen (issue 10, §4: `mailbot --help` and `mailbot parse` start without the store, the
pipeline or argon2)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

from mailbot.ops.choices import EDITABLE, REJECTION_TEMPLATES, ROLES


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """`mailbot.ops.<module>.<name>`, imported only when the command runs."""
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"mailbot.ops.{module}"), name)(args)

    run.__name__ = run.__qualname__ = name
    return run


Add = Callable[[str, str, str], argparse.ArgumentParser]


def _group(sub: argparse._SubParsersAction, name: str, *, help_: str, description: str,
           module: str, parents: Sequence[argparse.ArgumentParser]) -> Add:
    """`mailbot NAME ACTION`: the group's parser, and a function that adds one ACTION whose
    function (`func`, in mailbot.ops.`module`) is imported only when it runs; `parents` (the
    global options) go on the group and on each action."""
    parser = sub.add_parser(name, help=help_, description=description, parents=list(parents))
    actions = parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True

    def add(action: str, func: str, action_help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(action, help=action_help, description=action_help,
                               parents=list(parents))
        p.set_defaults(func=_lazy(module, func))
        return p
    return add


def add_review_commands(sub: argparse._SubParsersAction,
                        parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot review ...` on the main parser's subcommands; `parents` (the global
    options) go on `review` and on each of its actions."""
    add = _group(sub, "review", help_="work the review queue: list, show, approve, reject, "
                                      "close, edit",
                 description="Work the review queue: everything the rules would not decide "
                             "alone. Every action is recorded with the operator's name and "
                             "time.", module="cli_review", parents=parents)

    def operator(p: argparse.ArgumentParser) -> None:
        p.add_argument("--operator", metavar="NAME",
                       help="who acts (default: $MAILBOT_OPERATOR, else the OS user)")
        p.add_argument("--note", metavar="TEXT", help="a note for the task's history")

    p = add("list", "cmd_review_list", "list open review tasks, the most urgent first")
    p.add_argument("--all", action="store_true", help="closed tasks too")
    p.add_argument("--overdue", action="store_true", help="only open tasks past their due time")

    p = add("show", "cmd_review_show", "show one task: the mail, what was read, the reasons, the "
                                     "due time and the history")
    p.add_argument("id", type=int, metavar="ID")

    p = add("approve", "cmd_review_approve",
            "send the answer the rules would have sent: keys to the registered address, the "
            "unlock confirmation, or the held mail decided now")
    p.add_argument("id", type=int, metavar="ID")
    operator(p)

    p = add("reject", "cmd_review_reject",
            "send a rejection template with your note to the sender and close the task")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--template", required=True, choices=REJECTION_TEMPLATES, metavar="NAME",
                   help=f"one of {', '.join(REJECTION_TEMPLATES)}")
    p.add_argument("--note", required=True, metavar="TEXT",
                   help="the reason, in Spanish: the customer reads it")
    p.add_argument("--operator", metavar="NAME",
                   help="who acts (default: $MAILBOT_OPERATOR, else the OS user)")

    p = add("close", "cmd_review_close",
            "close the task without an answer to anyone (a mail that asked for nothing, or a "
            "sender no reply can reach); an unlock is not counted")
    p.add_argument("id", type=int, metavar="ID")
    operator(p)

    p = add("edit", "cmd_review_edit",
            "correct what was read, then run the rules again (they may answer, or keep the "
            "task in review)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("changes", nargs="+", metavar="FIELD=VALUE",
                   help=f"FIELD one of {', '.join(EDITABLE)}")
    operator(p)


def add_users_commands(sub: argparse._SubParsersAction,
                       parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot users ...`; `parents` (the global options) go on every action."""
    add = _group(sub, "users", help_="the console's accounts: add, list, disable, token, "
                                     "revoke",
                 description="Manage who may use the web console and its API. Passwords are "
                             "stored as argon2 hashes, API tokens as SHA-256 hashes.",
                 module="cli_users", parents=parents)

    p = add("add", "cmd_users_add", "add an account; the password is asked twice")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", required=True, choices=ROLES,
                   help="operator: works the log and the review queue; admin: also the admin "
                        "pages")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password twice, as two lines of standard input")
    add("list", "cmd_users_list", "list the accounts, their role and last login")
    p = add("disable", "cmd_users_disable", "disable an account: it can no longer log in, its "
                                          "sessions end and its API tokens are refused")
    p.add_argument("name", metavar="NAME")
    p = add("token", "cmd_users_token", "print a new API token for the account (its last line; "
                                      "shown once, stored hashed)")
    p.add_argument("name", metavar="NAME")
    p = add("revoke", "cmd_users_revoke", "revoke every API token of the account")
    p.add_argument("name", metavar="NAME")


def add_web_command(sub: argparse._SubParsersAction,
                    parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot web`; `parents` carries the global options."""
    help_ = ("serve the operators' console (the panel, the log, the review queue) and its "
             "JSON API; it shares the store with `mailbot run` and never sends mail itself")
    p = sub.add_parser("web", help=help_, description=help_, parents=list(parents))
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="where to listen (default: [web] listen, 127.0.0.1:8080); another "
                        "address than loopback needs an account")
    p.set_defaults(func=_lazy("web.serve", "cmd_web"))


def add_registry_commands(sub: argparse._SubParsersAction,
                          parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot registry import|export` and `mailbot keys import|levels|export`
    (mailbot.ops.cli_registry runs them)."""
    def group(name: str, help_: str, description: str) -> Add:
        return _group(sub, name, help_=help_, description=description, module="cli_registry",
                      parents=parents)

    def import_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE", help="a CSV or XLSX file")
        p.add_argument("--dry-run", action="store_true",
                       help="print what the import would add, change and refuse, and write "
                            "nothing")
        p.add_argument("--json", action="store_true",
                       help="print the preview (or the import's report) as one JSON object")

    def export_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=("csv", "xlsx"), default="csv",
                       help="csv (default; UTF-8) or xlsx")
        p.add_argument("-o", "--output", metavar="FILE",
                       help="write to FILE (default: standard output)")

    registry = group("registry", "the licence registry: import, export",
                     "Manage the licence registry.")
    import_options(registry("import", "cmd_registry_import",
                            "import licences from CSV or XLSX (serial, system, company, "
                            "contact_email, purchase_date, modality, support_until, users); all or "
                            "nothing: a registered serial gets the file's fields, an unchanged one "
                            "is not written"))
    export_options(registry("export", "cmd_registry_export",
                            "write the whole registry with the import's columns (it imports back "
                            "unchanged); cells that start like a formula are neutralised"))

    keys = group("keys", "the key pool: import, levels, export", "Manage the key pool.")
    import_options(keys("import", "cmd_keys_import",
                        "import keys from CSV or XLSX (system, key); a key already in the pool "
                        "or issued is skipped, a file with bad rows imports nothing"))
    p = keys("levels", "cmd_keys_levels",
             "keys available and issued for every system of the catalogue, empty ones too")
    p.add_argument("--json", action="store_true", help="one JSON object per system")
    p = keys("export", "cmd_keys_export",
             "write the issued keys: system, key, serial, recipient, date issued (business "
             "time zone), reference")
    p.add_argument("--issued", action="store_true", required=True,
                   help="the keys issued so far (the only export of keys)")
    export_options(p)
