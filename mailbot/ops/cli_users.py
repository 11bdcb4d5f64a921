"""`mailbot users add | list | disable | token | revoke`: the console's accounts.

No account exists by default. A password is asked twice on the terminal (never echoed), or read
as two lines from standard input with --password-stdin, for scripts; it is never an argument,
which other users of the machine could read in the process list.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Sequence
from typing import Any

from mailbot.ops.accounts import Accounts, check_new_password
from mailbot.ops.timefmt import operator_time


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _open(args: argparse.Namespace) -> tuple[Accounts, dt.tzinfo]:
    from mailbot import config as config_module
    from mailbot.ops.timefmt import business_zone
    from mailbot.run.wiring import open_rules, open_store

    config = config_module.load(args.config)
    zone = business_zone(config, open_rules(config))
    return Accounts(open_store(config)), zone


def read_new_password(from_stdin: bool) -> str:
    """The new password, typed twice: on the terminal, or as two lines of standard input."""
    if from_stdin:
        first = sys.stdin.readline().rstrip("\r\n")
        second = sys.stdin.readline().rstrip("\r\n")
    else:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password again: ")
    return check_new_password(first, second)


def cmd_users_add(args: argparse.Namespace) -> int:
    password = read_new_password(args.password_stdin)  # before the store is opened or created
    accounts, _ = _open(args)
    try:
        user = accounts.add(args.name, args.role, password, now=_now())
    finally:
        accounts.store.close()
    print(f"account {user.name!r} added ({user.role})")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    accounts, zone = _open(args)
    try:
        found = accounts.all()
    finally:
        accounts.store.close()
    print(format_users(found, zone), end="")
    return 0


def format_users(found: Sequence[Any], zone: dt.tzinfo) -> str:
    if not found:
        return "(no account; add one with `mailbot users add NAME --role operator`)\n"
    lines = [f"{'NAME':<20} {'ROLE':<9} {'DISABLED':<9} LAST LOGIN"]
    for u in found:
        lines.append(f"{u.name:<20} {u.role:<9} {'yes' if u.disabled else 'no':<9} "
                     f"{operator_time(u.last_login_at, zone) if u.last_login_at else 'never'}")
    return "\n".join(lines) + "\n"


def cmd_users_disable(args: argparse.Namespace) -> int:
    accounts, _ = _open(args)
    try:
        user = accounts.disable(args.name, now=_now())
    finally:
        accounts.store.close()
    print(f"account {user.name!r} disabled: its sessions are ended and its API tokens refused")
    return 0


def cmd_users_token(args: argparse.Namespace) -> int:
    accounts, _ = _open(args)
    try:
        token = accounts.new_token(args.name, now=_now())
    finally:
        accounts.store.close()
    print(f"a new API token for {args.name!r}; it is shown only now, keep it safe "
          "(send it as 'Authorization: Bearer TOKEN'):")
    print(token)  # the last line, for scripts
    return 0


def cmd_users_revoke(args: argparse.Namespace) -> int:
    accounts, _ = _open(args)
    try:
        count = accounts.revoke_tokens(args.name, now=_now())
    finally:
        accounts.store.close()
    print(f"{count} API token(s) of {args.name!r} revoked")
    return 0
