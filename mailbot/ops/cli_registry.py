"""`mailbot registry import|export` and `mailbot keys import|levels|export`: the licence
registry and the key pool from the command line, over the same engine as the console's
registry page (mailbot.ops.import_preview, pool_levels, registry_files).

`import --dry-run` prints what the import would do and writes nothing; without it the import
writes exactly that (all or nothing: a file with bad rows imports nothing, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mailbot.config import Config

EXIT_USER_ERROR = 2
SHOWN_ROWS = 200  # rows of each kind the text output lists; --json lists them all


def _config(args: argparse.Namespace) -> Config:
    from mailbot import config as config_module

    return config_module.load(args.config)


def _import(args: argparse.Namespace, kind: str) -> int:
    from mailbot.ops import import_preview as engine
    from mailbot.run.wiring import open_rules, open_store
    from mailbot.store.database import utcnow

    config = _config(args)
    rules = open_rules(config)
    from mailbot.ops.imports import read_file

    payload = read_file(Path(args.file))
    store = open_store(config)
    try:
        if args.dry_run:
            result = engine.preview(store, rules, kind, args.file, payload)
        else:
            result = engine.commit(store, rules, kind, args.file, payload, now=utcnow())
        if args.json:
            print(json.dumps({**result.to_json(), "dry_run": args.dry_run},
                             ensure_ascii=False))
        else:
            for line in engine.text_lines(result, dry_run=args.dry_run, limit=SHOWN_ROWS):
                print(line)
        if result.blocked:  # only a dry run gets here with bad rows: the import raised
            print(f"mailbot: error: {args.file}: {result.bad_rows} row(s) are wrong; "
                  "importing this file would import nothing", file=sys.stderr)
            return EXIT_USER_ERROR
        if kind == "keys" and not args.dry_run:
            _after_keys(config, store, rules, quiet=args.json)
    finally:
        store.close()
    return 0


def _after_keys(config: Config, store, rules, *, quiet: bool) -> None:
    """The pool's levels after an import, and the waiting requests the new keys fulfil."""
    from mailbot.ops.pool_levels import levels
    from mailbot.run.pending import fulfil_pending
    from mailbot.run.wiring import open_app

    if not quiet:
        with store.transaction() as conn:
            for level in levels(conn, store, rules.catalogue):
                print(f"    {level.system}: {level.free} free, {level.assigned} assigned")
    app = open_app(config)
    try:
        fulfilled = fulfil_pending(app)
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()
    if fulfilled and not quiet:
        print(f"{fulfilled} waiting request(s) fulfilled; their keys go out on the next run")


def cmd_registry_import(args: argparse.Namespace) -> int:
    return _import(args, "registry")


def cmd_keys_import(args: argparse.Namespace) -> int:
    return _import(args, "keys")


def cmd_keys_levels(args: argparse.Namespace) -> int:
    from mailbot.ops.pool_levels import levels
    from mailbot.run.wiring import open_rules, open_store

    config = _config(args)
    rules = open_rules(config)
    store = open_store(config)
    try:
        with store.transaction() as conn:
            found = levels(conn, store, rules.catalogue,
                           low_stock_threshold=config.web.low_stock_threshold)
    finally:
        store.close()
    if args.json:
        for level in found:
            print(json.dumps(level.to_json(), ensure_ascii=False))
        return 0
    width = max([len("system"), *(len(level.system) for level in found)])
    print(f"{'system':<{width}}  {'available':>9}  {'issued':>7}")
    for level in found:
        note = ("  EMPTY: requests for it wait until keys are imported" if level.empty
                else "  low" if level.low else "")
        if not level.in_catalogue:
            note += "  (not in the catalogue)"
        print(f"{level.system:<{width}}  {level.free:>9}  {level.assigned:>7}{note}")
    return 0


def _write(args: argparse.Namespace, data: bytes) -> None:
    if args.output:
        from mailbot.errors import ImportError_

        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise ImportError_(f"{args.output}: cannot write: {exc.strerror or exc}") from None
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_registry_export(args: argparse.Namespace) -> int:
    from mailbot.ops.registry_files import registry_file
    from mailbot.run.wiring import open_store

    store = open_store(_config(args))
    try:
        with store.transaction() as conn:
            data = registry_file(conn, args.format)
    finally:
        store.close()
    _write(args, data)
    return 0


def cmd_keys_export(args: argparse.Namespace) -> int:
    from mailbot.ops.registry_files import issued_file
    from mailbot.ops.timefmt import business_zone
    from mailbot.run.wiring import open_rules, open_store

    config = _config(args)
    zone = business_zone(config, open_rules(config))
    store = open_store(config)
    try:
        with store.transaction() as conn:
            data = issued_file(conn, args.format, zone)
    finally:
        store.close()
    _write(args, data)
    return 0

