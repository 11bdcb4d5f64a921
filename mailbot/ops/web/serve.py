"""`mailbot web [--listen HOST:PORT]`: the console under uvicorn.

It shares the store with `mailbot run` and never sends mail itself. On an address other than
loopback it refuses to start while no account exists, so a fresh install is never reachable
from the network with nobody able (or needing) to log in.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable

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


def _open_console(config: Config, listen: str | None):
    """The console app for `listen` (default [web] listen), after the exposure check and the
    start-up lines on stderr; the caller closes `app.state.web.store`."""
    from mailbot.ops.web.app import create_app

    host, port = split_listen(listen or config.web.listen)
    app = create_app(config)
    web = app.state.web
    try:
        has_accounts = web.accounts.any_enabled()
        check_exposure(host, has_accounts)
    except BaseException:
        web.store.close()
        raise
    if not has_accounts:
        print("mailbot: no account yet: add one with `mailbot users add NAME --role admin` "
              "to log in", file=sys.stderr)
    print(f"mailbot: console on {_url(host, port)}", file=sys.stderr)
    return app, host, port


def _url(host: str, port: int) -> str:
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


# proxy_headers: X-Forwarded-For/-Proto are trusted from a proxy on this machine only
# (uvicorn's default forwarded_allow_ips), so the client address the login limit counts
# and the https that makes cookies Secure come from the proxy, not from the client.
_UVICORN_OPTIONS = {"log_config": None, "proxy_headers": True, "server_header": False}


def serve(config: Config, listen: str | None = None) -> int:
    import uvicorn

    app, host, port = _open_console(config, listen)
    try:
        uvicorn.run(app, host=host, port=port, **_UVICORN_OPTIONS)
    finally:
        app.state.web.store.close()
    return 0


class Background:
    """A server running in a daemon thread of `mailbot run`; `stop()` ends it and frees what
    it holds."""

    def __init__(self, thread: threading.Thread, stop: Callable[[], None],
                 close: Callable[[], None]) -> None:
        self.thread = thread
        self._stop = stop
        self._close = close

    def stop(self, timeout: float = 10.0) -> None:
        try:
            self._stop()
            self.thread.join(timeout)
        finally:
            self._close()


def start_console(config: Config, listen: str | None = None) -> Background:
    """`mailbot run --with-web`: the console under uvicorn in a daemon thread of the service
    (the same checks as `mailbot web`). The socket is bound here, so a taken port fails the
    start; uvicorn installs no signal handlers off the main thread, the service keeps its own."""
    import uvicorn

    app, host, port = _open_console(config, listen)
    store = app.state.web.store
    try:
        sock = _bind(host, port)
    except BaseException:
        store.close()
        raise
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **_UVICORN_OPTIONS))

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    thread = threading.Thread(target=run, name="mailbot-web", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True

    return Background(thread, stop, store.close)


def start_metrics(config: Config, listen: str) -> Background:
    """`mailbot run --metrics-listen`: only the console's /metrics collector, on a plain HTTP
    server thread, with no login (for loopback or a private network)."""
    from prometheus_client import start_http_server

    from mailbot.ops.web.app import create_app

    host, port = split_listen(listen)
    app = create_app(config)
    store = app.state.web.store
    try:
        server, thread = start_http_server(port, addr=host, registry=app.state.metrics)
    except OSError as exc:
        store.close()
        raise ConfigError(f"cannot serve the metrics on {listen}: {exc.strerror or exc}") from exc
    print(f"mailbot: metrics on {_url(host, port)}metrics (no login)", file=sys.stderr)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return Background(thread, stop, store.close)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot serve the console on {host}:{port}: "
                          f"{exc.strerror or exc}") from exc


def cmd_web(args: argparse.Namespace) -> int:
    from mailbot import config as config_module

    return serve(config_module.load(args.config), args.listen)
