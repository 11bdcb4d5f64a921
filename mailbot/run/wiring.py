"""Builds the App from the configuration: the one place that picks the back-ends."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mailbot.config import Config
from mailbot.errors import ConfigError
from mailbot.ruleset import Ruleset, load_rules
from mailbot.shipped import shipped

# The store (SQLAlchemy), the renderer (Jinja2) and the App are imported by the functions that
# build them: `mailbot parse` needs only the rules (issue 10, §4: cold start).
if TYPE_CHECKING:
    from mailbot.answer.render import Renderer
    from mailbot.run.app import App
    from mailbot.store.database import Store
    from mailbot.transport.seams import Sink, Source


def open_store(config: Config) -> Store:
    from mailbot.store.database import Store

    store = Store(config.store_url)
    store.migrate()
    return store


def _data_dir(config: Config, configured: str, default: str) -> Path:
    """The configured folder; for the default name, fall back to the shipped one when the
    working directory has none (so `mailbot parse` works from anywhere)."""
    directory = config.resolve(configured)
    if not directory.is_dir() and configured == default and shipped(default).is_dir():
        return shipped(default)
    return directory


def rules_dir(config: Config) -> Path:
    """The rules folder `run` decides with (also when it is invalid: `rules diff` shows it)."""
    return _data_dir(config, config.bot.rules_dir, "rules")


def templates_dir(config: Config) -> Path:
    """The templates folder `run` renders with."""
    return _data_dir(config, config.bot.templates_dir, "templates")


def open_rules(config: Config) -> Ruleset:
    return load_rules(rules_dir(config))


def open_renderer(config: Config) -> Renderer:
    from mailbot.answer.render import Renderer

    directory = templates_dir(config)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: templates directory not found ([mailbot] templates_dir)")
    return Renderer(directory)


def open_source(config: Config) -> Source:
    if config.source.type == "imap":
        from mailbot.transport.imap import ImapSource

        return ImapSource(config.imap, base_dir=config.base_dir,
                          max_message_bytes=config.limits.max_message_bytes)
    from mailbot.transport.maildir import MaildirSource

    return MaildirSource(config.resolve(config.source.path),
                         max_message_bytes=config.limits.max_message_bytes)


def open_sink(config: Config) -> Sink:
    if config.sink.type == "smtp":
        from mailbot.transport.smtp import SmtpSink

        return SmtpSink(config.smtp, base_dir=config.base_dir,
                        default_envelope_from=config.bot.address)
    from mailbot.transport.files import FileSink

    return FileSink(config.resolve(config.sink.path))


def open_app(config: Config) -> App:
    from mailbot.run.app import App

    rules = open_rules(config)
    renderer = open_renderer(config)
    store = open_store(config)
    source = open_source(config)
    sink = open_sink(config)
    after_send = None
    append_sent = getattr(source, "append_sent", None)
    if callable(append_sent):
        after_send = append_sent
    app = App(config=config, rules=rules, store=store, renderer=renderer, source=source,
              sink=sink, after_send=after_send)
    from mailbot.run import versions

    versions.remember(app)  # the folders' content as loaded: the versions this App uses
    crash_at = os.environ.get(CRASH_VARIABLE)
    if crash_at:
        app.hook = crash_hook(crash_at)
    return app


# Fault injection for the crash tests: MAILBOT_CRASH_AT=after_decision (or after_decision:3 for
# the third time that point is reached) makes the process kill itself with SIGKILL there, as a
# power cut would. Never set in production.
CRASH_VARIABLE = "MAILBOT_CRASH_AT"


def crash_hook(spec: str) -> Callable[[str], None]:
    point, _, nth = spec.partition(":")
    remaining = [int(nth) if nth else 1]

    def hook(name: str) -> None:
        if name == point:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook
