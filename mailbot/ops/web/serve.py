"""`mailbot web [--listen HOST:PORT]`: the console under uvicorn.

It shares the store with `mailbot run` and never sends mail itself. On an address other than
loopback it refuses to start while no account exists, so a fresh install is never reachable
from the network with nobody able (or needing) to log in.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence

from mailbot.config import Config, split_listen
from mailbot.errors import ConfigError

log = logging.getLogger("mailbot.web")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, has_accounts: bool) -> None:
    if not is_loopback(host) and not has_accounts:
        raise ConfigError(f"refusing to serve the console on {host}: no account exists yet; "
                          "add one with `mailbot users add NAME --role admin`, or listen on "
                          "127.0.0.1")


def serve(config: Config, listen: str | None = None) -> int:
    import uvicorn

    from mailbot.ops.web.app import create_app

    host, port = split_listen(listen or config.web.listen)
    app = create_app(config)
    web = app.state.web
    has_accounts = web.accounts.any_enabled()
    check_exposure(host, has_accounts)
    if not has_accounts:
        print("mailbot: no account yet: add one with `mailbot users add NAME --role admin` "
              "to log in", file=sys.stderr)
    print(f"mailbot: console on http://{host if ':' not in host else f'[{host}]'}:{port}/",
          file=sys.stderr)
    try:
        # proxy_headers: X-Forwarded-For/-Proto are trusted from a proxy on this machine only
        # (uvicorn's default forwarded_allow_ips), so the client address the login limit counts
        # and the https that makes cookies Secure come from the proxy, not from the client.
        uvicorn.run(app, host=host, port=port, log_config=None, proxy_headers=True,
                    server_header=False)
    finally:
        web.store.close()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from mailbot import config as config_module

    return serve(config_module.load(args.config), args.listen)


def add_web_command(sub: argparse._SubParsersAction,
                    parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register `mailbot web`; `parents` carries the global options."""
    help_ = ("serve the operators' console (the panel, the log, the review queue) and its "
             "JSON API; it shares the store with `mailbot run` and never sends mail itself")
    p = sub.add_parser("web", help=help_, description=help_, parents=list(parents))
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="where to listen (default: [web] listen, 127.0.0.1:8080); another "
                        "address than loopback needs an account")
    p.set_defaults(func=cmd_web)
