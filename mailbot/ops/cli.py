"""The `mailbot` command. User mistakes end as one clear line and a non-zero exit code."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailbot import __version__
from mailbot.errors import MailbotError, TemplateError
from mailbot.ops.choices import OUTCOMES
from mailbot.ops.cli_groups import (
    _lazy,
    add_registry_commands,
    add_review_commands,
    add_users_commands,
    add_web_command,
)
from mailbot.ops.cli_versions import add_version_commands

# Only what building the parser needs is imported here: `mailbot --help` must start fast
# (issue 10, §4). Each command imports what it uses; tests/test_cli.py pins this.
if TYPE_CHECKING:
    from mailbot.config import Config
    from mailbot.run.app import App

EXIT_USER_ERROR = 2


def _config(args: argparse.Namespace) -> Config:
    from mailbot import config as config_module

    return config_module.load(args.config)


# -- commands -------------------------------------------------------------------------------

def cmd_parse(args: argparse.Namespace) -> int:
    from mailbot.read.extract import read_mail
    from mailbot.run.wiring import open_rules

    config = _config(args)
    rules = open_rules(config)
    own = (config.bot.address.lower(),)
    status = 0
    rows = []
    for name in args.files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:  # named, and the other files still parse
            print(f"mailbot: error: {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            status = EXIT_USER_ERROR
            continue
        _, extraction = read_mail(data, rules, config.limits, own)
        out = extraction.to_json(file=name)
        if args.json:
            print(json.dumps(out, ensure_ascii=False), flush=True)
        else:
            rows.append(out)
    if rows:
        print(_parse_table(rows))
    return status


def _parse_table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        lines.append(f"{r['file']}")
        lines.append(f"    kind: {r['kind'] or '-'}   ignored: {r['ignored'] or '-'}   "
                     f"sender: {r['sender'] or '-'}")
        lines.append(f"    subject: {r['subject']}")
        for q in r["requests"]:
            lines.append(f"    request  {q['serial']}  {q['system']}  {q['company']} / "
                         f"{q['contact_name']} <{q['contact_email']}>  ({q['source']})")
        for p in r["problems"]:
            where = ", ".join(x for x in (p.get("field"), p.get("source")) if x)
            lines.append(f"    problem  {p['code']}{f' ({where})' if where else ''}: {p['detail']}")
        if not r["requests"] and not r["problems"]:
            lines.append("    (nothing read)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from mailbot.run.pipeline import run_once
    from mailbot.run.wiring import open_app

    config = _config(args)
    app = open_app(config)
    try:
        refuse_broken_templates(app)
        if args.once:
            report = run_once(app)
            print(f"mailbot: {report.seen} mail(s) seen, {report.decided} decided, "
                  f"{report.duplicates} duplicate(s), {report.sent} message(s) sent, "
                  f"{report.filed} filed, {report.failed} failed delivery")
            for err in dict.fromkeys(report.errors):  # the same fault twice is one line
                print(f"mailbot: error: {err}", file=sys.stderr)
            return 1 if report.errors else 0
        from mailbot.ops.web.serve import start_console, start_metrics
        from mailbot.run.service import serve

        servers = []
        try:
            if args.with_web:
                servers.append(start_console(config, args.listen))
            if args.metrics_listen:
                servers.append(start_metrics(config, args.metrics_listen))
            return serve(app)
        finally:
            for server in reversed(servers):  # once the pass in hand has finished
                server.stop()
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()


def error_text(exc: MailbotError) -> str:
    """One line per problem: a rules folder with five mistakes is five lines under a count, so
    the admin fixes them all in one round (`mailbot rules check`, and `run` refusing to start)."""
    problems = getattr(exc, "problems", ())
    if len(problems) <= 1:
        return f"mailbot: error: {exc}"
    lines = [f"mailbot: error: {len(problems)} problems in the rules; fix each, then run "
             "`mailbot rules check` again:"]
    lines.extend(f"  {p}" for p in problems)
    return "\n".join(lines)


def _check_run_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.once and (args.with_web or args.metrics_listen):
        parser.error("run: --once cannot be combined with --with-web or --metrics-listen "
                     "(they serve while the service keeps running)")
    if args.listen and not args.with_web:
        parser.error("run: --listen is the console's address: it needs --with-web")


def refuse_broken_templates(app: App) -> None:
    """A template that does not compile would fail every mail that needs it, three times each,
    into quarantine: `run` does not start with one (TemplateError naming it and its line)."""
    errors = app.renderer.check(app.rules)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise TemplateError(f"{errors[0]}{more}; fix the template (`mailbot templates check` "
                            "lists every error), then start mailbot again")


def cmd_retry(args: argparse.Namespace) -> int:
    from mailbot.ops.retry import retry
    from mailbot.ops.review_actions import default_operator
    from mailbot.run.wiring import open_app

    app = open_app(_config(args))
    try:
        result = retry(app, args.reference, operator=args.operator or default_operator())
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()
    cause = f" (it failed with: {result.previous_error})" if result.previous_error else ""
    print(f"{result.reference}: back in the inbox as {result.mail_id}{cause}; the next pass "
          "decides it again")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from mailbot.ops import logview
    from mailbot.ops.timefmt import business_zone
    from mailbot.run.wiring import open_rules, open_store

    if args.outcome is not None:
        args.outcome = logview.check_outcome(args.outcome)  # before opening anything
    config = _config(args)
    store = open_store(config)
    entries = logview.query(store, sender=args.sender, serial=args.serial, outcome=args.outcome,
                            reference=args.reference, limit=args.limit)
    if args.json:
        for e in entries:
            print(json.dumps(e, ensure_ascii=False, default=str))
    else:
        print(logview.format_text(entries, business_zone(config, open_rules(config))), end="")
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from mailbot.run.wiring import open_rules

    config = _config(args)
    rules = open_rules(config)
    print(f"{rules.directory}: OK: {len(rules.kinds)} request kinds, "
          f"{len(rules.catalogue.systems)} systems in the catalogue, eligible from "
          f"{rules.free_update.eligible_from.isoformat()}")
    return 0


def cmd_templates_check(args: argparse.Namespace) -> int:
    from mailbot.run.wiring import open_renderer, open_rules

    config = _config(args)
    renderer = open_renderer(config)
    errors = renderer.check(open_rules(config))
    for line in errors:
        print(line)
    if errors:
        return 1
    print(f"{renderer.templates_dir}: OK: {len(renderer.names())} templates render "
          "with sample data")
    return 0


def cmd_templates_preview(args: argparse.Namespace) -> int:
    from mailbot.answer.preview import preview
    from mailbot.run.wiring import open_renderer, open_rules

    config = _config(args)
    sys.stdout.write(preview(open_renderer(config), args.name, open_rules(config),
                             from_address=config.bot.address,
                             from_name=config.bot.from_name))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from mailbot.ops.doctor import run_checks

    faults = 0
    for ok, line in run_checks(_config(args)):
        print(f"{'ok   ' if ok else 'FAULT'}  {line}")
        faults += not ok
    print(f"{faults} fault(s)" if faults else "all checks passed")
    return 1 if faults else 0


def cmd_init(args: argparse.Namespace) -> int:
    from mailbot.ops.init import init, report_lines

    for line in report_lines(init(Path(args.dir))):
        print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mailbot.ops.demodriver import run_demo

    return run_demo(Path(args.dir))


# -- parser ---------------------------------------------------------------------------------

def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config, -v and --log-format, on the main parser (`top`) and on every sub-command.

    A sub-command's copies default to SUPPRESS: one not given after the sub-command leaves the
    value given before it (or the main parser's default) alone.
    """
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--config", metavar="PATH", default=default(None),
                        help="configuration file (default: ./config.toml if present, else the "
                             "embedded defaults: Maildir var/inbox, replies to var/outbox, "
                             "SQLite var/mailbot.db)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="also log progress to stderr (INFO: each mail received, decided, "
                             "answered and filed; connections); without -v only warnings and "
                             "errors are logged, except by `run`, which always logs progress")
    parser.add_argument("--log-format", choices=("text", "json"), default=default("text"),
                        help="log lines as text (default) or as one JSON object per line")


# -- dry-run: its arguments here, so that `--help` imports nothing of it -------------------

SINCE = re.compile(r"(\d+)\s*([dhm])\Z")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str) -> dt.timedelta:
    """`7d`, `12h`, `30m`: the window of --since."""
    match = SINCE.match(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no duration: write a number and d, h or m (e.g. 7d, 12h)")
    return dt.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def add_dry_run_command(sub: argparse._SubParsersAction,
                        parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot dry-run`; its command (mailbot.ops.dryrun) is imported when it runs."""
    help_ = ("what the rules and templates would do to some mails: every decision and reply, "
             "against a snapshot of the store (nothing is stored, bound, sent or filed)")
    p = sub.add_parser("dry-run", help=help_, description=help_, parents=list(parents))
    p.set_defaults(func=_lazy("dryrun", "cmd_dry_run"))
    p.add_argument("inputs", nargs="*", metavar="PATH_OR_REFERENCE",
                   help=".eml files, Maildir folders, or references of stored mails "
                        "(CLV-000042)")
    p.add_argument("--since", type=parse_since, metavar="AGE",
                   help="also every mail stored within AGE (7d, 12h, 30m)")
    p.add_argument("--rules", metavar="DIR", help="the rules folder to decide with "
                                                  "(default: the configured one)")
    p.add_argument("--templates", metavar="DIR", help="the templates folder to render with "
                                                      "(default: the configured one)")
    p.add_argument("--against", metavar="OTHER_RULES_DIR",
                   help="decide with both rule folders and print only the mails whose outcome "
                        "or replies would change, side by side")
    p.add_argument("--json", action="store_true", help="one JSON object per mail, one per line")
    p.add_argument("--show", action="store_true", help="also the text of every reply")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbot",
        description="Answers licence-key requests sent to claves@ by e-mail.")
    parser.add_argument("--version", action="version", version=f"mailbot {__version__}")
    _add_global_options(parser, top=True)
    # Every sub-command takes the global options too, so they may come before or after it.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            parent: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "process the inbox: once with --once, else keep running until "
                            "SIGTERM/SIGINT")
    p.add_argument("--once", action="store_true", help="one pass over the inbox, then exit")
    p.add_argument("--with-web", action="store_true",
                   help="also serve the operators' console in this process (the same checks "
                        "as `mailbot web`); not with --once")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="where the console listens with --with-web (default: [web] listen, "
                        "127.0.0.1:8080); another address than loopback needs an account")
    p.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="also serve the Prometheus metrics (the console's /metrics) at "
                        "http://HOST:PORT/metrics, with NO login: use loopback or a private "
                        "network; not with --once")

    p = add("parse", cmd_parse, "read .eml files and print what mailbot reads from them "
                                "(nothing is stored or sent)")
    p.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    p.add_argument("files", nargs="+", metavar="FILE", help=".eml files")

    p = add("log", cmd_log, "show the processing log: recent mails, what was read, the rules "
                            "that fired and the replies")
    p.add_argument("--sender", help="only mails from this address")
    p.add_argument("--serial", help="only mails with a request for this serial")
    p.add_argument("--outcome", help=f"only this outcome: {', '.join(OUTCOMES)}")
    p.add_argument("--reference", help="only this request reference (e.g. CLV-000042)")
    p.add_argument("--limit", type=int, default=50, help="at most this many mails (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object per mail")

    rules = sub.add_parser("rules", help="check the rules files, list and compare their versions",
                           description="Check the rules in rules/*.toml; list and compare the "
                                       "versions used so far.", parents=[common])
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    rules_sub.required = True
    add("check", cmd_rules_check, "load and validate every rules file", rules_sub)
    add_version_commands(rules_sub, "rules", parents=[common])

    templates = sub.add_parser("templates", help="check or preview the reply templates",
                               description="Check or preview the reply templates.",
                               parents=[common])
    templates_sub = templates.add_subparsers(dest="templates_command", metavar="ACTION")
    templates_sub.required = True
    add("check", cmd_templates_check, "render every template with sample data", templates_sub)
    p = add("preview", cmd_templates_preview, "print one template rendered as a mail",
            templates_sub)
    p.add_argument("name", help="template name, e.g. keys_issued")
    add_version_commands(templates_sub, "templates", parents=[common])

    add_registry_commands(sub, parents=[common])

    add("doctor", cmd_doctor, "check the configuration, rules, templates and store, and reach "
                              "each server (IMAP login and folders, SMTP EHLO/TLS/auth)")

    add_review_commands(sub, parents=[common])
    add_dry_run_command(sub, parents=[common])

    p = add("retry", cmd_retry, "decide a quarantined mail (folder failed) again once its cause "
                                "is fixed: it goes back to the inbox for the next pass")
    p.add_argument("reference", help="the mail's reference, e.g. CLV-000042")
    p.add_argument("--operator", help="who decides the retry (default: $MAILBOT_OPERATOR, "
                                      "else the OS user)")
    add_users_commands(sub, parents=[common])
    add_web_command(sub, parents=[common])

    p = add("init", cmd_init, "write a starting config.toml, rules/ and templates/ (the shipped "
                              "defaults) into DIR for an admin to edit; files already there "
                              "are kept, never overwritten")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR",
                   help="where the installation lives (default: the current directory)")

    p = add("demo", cmd_demo, "write a demo inbox, registry and key pool, process it once and "
                              "print the log")
    p.add_argument("--dir", default="demo", help="where the demo lives (default: ./demo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        _check_run_options(parser, args)
    from mailbot.ops import logsetup

    logsetup.setup(verbose=args.verbose or args.command == "run", fmt=args.log_format)
    try:
        return args.func(args)
    except MailbotError as exc:
        print(error_text(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
