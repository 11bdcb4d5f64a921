"""Configuration: a TOML file over embedded defaults.

Every setting has a default that runs mailbot with no server at all (a local Maildir in, reply
files out, SQLite). Relative paths are resolved against the directory of the config file, or
the working directory when no file is used.
"""

from __future__ import annotations

import dataclasses
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from mailbot.errors import ConfigError


@dataclass(frozen=True)
class BotConfig:
    # Our mailbox: replies come from it, mail from it is ignored.
    address: str = "claves@example.com"
    from_name: str = "Claves de actualización"
    reference_prefix: str = "CLV"  # request reference numbers look like CLV-000042
    rules_dir: str = "rules"
    templates_dir: str = "templates"
    operators: tuple[str, ...] = ()  # addresses that receive operator alerts
    timezone: str = "America/Mexico_City"  # decides what "today" is for dates in the rules


@dataclass(frozen=True)
class SourceConfig:
    type: str = "maildir"  # "maildir" (the default) or "imap"
    path: str = "var/inbox"  # Maildir root, for type = "maildir"


@dataclass(frozen=True)
class SinkConfig:
    type: str = "files"  # "files" (the default) or "smtp"
    path: str = "var/outbox"  # where reply .eml files go, for type = "files"


@dataclass(frozen=True)
class ImapConfig:
    """The IMAP mailbox, for [source] type = "imap"."""

    host: str = ""
    port: int = 993
    security: str = "tls"  # "tls" (implicit, port 993), "starttls" (port 143) or "none"
    allow_plaintext: bool = False  # "none" security needs this; only for loopback test servers
    verify_certificates: bool = True
    ca_file: str = ""  # extra CA bundle (PEM) for a private CA
    username: str = ""
    auth: str = "password"  # "password" or "xoauth2" (Gmail, Microsoft 365)
    password_env: str = "MAILBOT_IMAP_PASSWORD"  # the password is read from this variable...
    password_file: str = ""  # ...or from this file; never written in the config itself
    oauth2_token_command: str = ""  # prints a fresh access token (xoauth2)
    oauth2_token_file: str = ""  # or a file holding the current access token (xoauth2)
    inbox: str = "INBOX"
    folder_processed: str = "mailbot/procesados"
    folder_review: str = "mailbot/revision"
    folder_ignored: str = "mailbot/ignorados"
    folder_failed: str = "mailbot/fallidos"
    sent_folder: str = "Sent"  # a copy of every reply is appended here ("" to skip)
    batch_size: int = 200
    timeout_seconds: int = 60
    idle: bool = True  # use IMAP IDLE to pick up new mail within seconds
    idle_renew_seconds: int = 1500  # re-issue IDLE before the server's 29-minute limit
    poll_interval_seconds: int = 60  # fallback schedule when IDLE is off or unsupported


@dataclass(frozen=True)
class SmtpConfig:
    """The SMTP server, for [sink] type = "smtp"."""

    host: str = ""
    port: int = 587
    security: str = "starttls"  # "tls" (implicit, port 465), "starttls" (587) or "none"
    allow_plaintext: bool = False
    verify_certificates: bool = True
    ca_file: str = ""
    username: str = ""  # empty: no authentication
    auth: str = "password"  # "password" or "xoauth2"
    password_env: str = "MAILBOT_SMTP_PASSWORD"
    password_file: str = ""
    oauth2_token_command: str = ""
    oauth2_token_file: str = ""
    envelope_from: str = ""  # MAIL FROM; defaults to [mailbot] address
    timeout_seconds: int = 60
    max_attempts: int = 8  # temporary failures are retried this many times...
    retry_base_seconds: int = 30  # ...after 30 s, 60 s, 120 s, ... (capped at one hour)


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///var/mailbot.db"  # any SQLAlchemy URL; postgresql://... works too


@dataclass(frozen=True)
class LimitsConfig:
    """What one mail may hold, so that reading any mail takes bounded time and memory (about
    2 s and 300 MB at most with these defaults, benchmarks/hostile_mail.py; a reseller's list of
    10,000 rows, the most a mail may bring, about 0.3 s and 25 MB, benchmarks/sheet_reading.py);
    what goes past a limit is left unread and named in a problem (`mailbot parse` shows which)."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 20
    max_rows: int = 10_000  # rows read from one spreadsheet (a reseller's list)
    max_requests: int = 10_000  # requests accepted from one mail
    max_header_bytes: int = 256 * 1024  # the header block; fields past it are not read
    max_header_field_bytes: int = 64 * 1024  # one header field (Subject, From, References...)
    max_body_chars: int = 64 * 1024  # text of the body read, quoted history included
    max_html_bytes: int = 512 * 1024  # HTML converted to text (the body when there is no text)
    max_sheet_bytes: int = 16 * 1024 * 1024  # what the spreadsheets of one mail expand to, together
    max_sheet_cells: int = 300_000  # cells, rows, strings of one mail's sheets; also each sheet's
    # rows x columns from A1 (the reader builds that block): 10,000 rows of 30 columns
    max_sheet_elements: int = 600_000  # XML elements of one mail's spreadsheets (1/20 formatting)
    max_sheet_columns: int = 256  # columns of one spreadsheet row
    max_mime_parts: int = 1000  # MIME parts (lines opening with "--") read from one mail


@dataclass(frozen=True)
class ThrottleConfig:
    window_minutes: int = 60
    max_replies_per_sender: int = 10  # more answers than this to one sender in the window -> held


@dataclass(frozen=True)
class SecurityConfig:
    """Who may receive keys and unlocks (issue 4, section 3)."""

    require_authentication: bool = False  # only senders our receiving server authenticated
    trusted_authserv_ids: tuple[str, ...] = ()  # whose Authentication-Results headers count
    window_minutes: int = 1440  # the window of the two limits below
    max_requests_per_serial: int = 5  # more mails asking for one serial than this -> review
    max_requests_per_company: int = 20  # more mails for one company's licences -> review
    unlock_repeat_hours: int = 72  # a new unlock request this soon after an approved one repeats it


@dataclass(frozen=True)
class WebConfig:
    """The operators' console (`mailbot web`)."""

    listen: str = "127.0.0.1:8080"  # HOST:PORT; a non-loopback address needs an account
    behind_tls: bool = False  # true: served over https (a proxy); the cookie is Secure
    secret_key_file: str = ""  # signs the session cookie; empty: web-secret.key beside the store
    session_hours: int = 12  # a login lasts this long
    login_attempts: int = 5  # failed logins per account name and per client address...
    login_window_minutes: int = 15  # ...within this window; then logins wait
    max_pass_age_seconds: int = 0  # /healthz: the last pass must be this recent (0: 3 polls)
    low_stock_threshold: int = 10  # the panel warns when a system has fewer free keys


@dataclass(frozen=True)
class Config:
    bot: BotConfig = field(default_factory=BotConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    web: WebConfig = field(default_factory=WebConfig)
    base_dir: Path = field(default_factory=Path.cwd)
    path: Path | None = None  # the file this came from, if any

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def store_url(self) -> str:
        """The store URL with a relative SQLite path made absolute against base_dir."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            rest = url[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str(self.resolve(rest))
        return url


_SECTIONS = {
    "mailbot": ("bot", BotConfig),
    "source": ("source", SourceConfig),
    "sink": ("sink", SinkConfig),
    "store": ("store", StoreConfig),
    "imap": ("imap", ImapConfig),
    "smtp": ("smtp", SmtpConfig),
    "limits": ("limits", LimitsConfig),
    "throttle": ("throttle", ThrottleConfig),
    "security": ("security", SecurityConfig),
    "web": ("web", WebConfig),
}


def _coerce(section: str, key: str, value: Any, annotation: Any, where: str) -> Any:
    if getattr(annotation, "__origin__", None) is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: [{section}] {key} must be a list of strings")
        return tuple(value)
    expected = annotation if annotation in (str, int, bool) else None
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where}: [{section}] {key} must be a whole number, not {value!r}")
    if expected is not None and not isinstance(value, expected):
        names = {str: "a string", int: "a whole number", bool: "true or false"}
        raise ConfigError(f"{where}: [{section}] {key} must be {names[expected]}, not {value!r}")
    return value


def check_transport(section: str, server: ImapConfig | SmtpConfig, *,
                    plaintext: bool = True) -> None:
    """The settings IMAP and SMTP share: security, auth and (when in use) plaintext consent."""
    if server.security not in ("tls", "starttls", "none"):
        raise ConfigError(f"[{section}] security must be \"tls\", \"starttls\" or \"none\", "
                          f"not {server.security!r}")
    if server.auth not in ("password", "xoauth2"):
        raise ConfigError(f"[{section}] auth must be \"password\" or \"xoauth2\", "
                          f"not {server.auth!r}")
    if plaintext and server.security == "none" and not server.allow_plaintext:
        raise ConfigError(f"[{section}] security = \"none\" sends the password and the mail "
                          "unencrypted; use \"tls\" or \"starttls\", or set "
                          f"[{section}] allow_plaintext = true "
                          "(only for a test server on loopback)")


def from_mapping(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    where = str(path) if path else "configuration"
    parts: dict[str, Any] = {}
    for name, table in data.items():
        if name not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{where}: unknown section [{name}]; known sections: {known}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {name} must be a table ([{name}])")
        attr, cls = _SECTIONS[name]
        hints = get_type_hints(cls)
        values = {}
        for key, value in table.items():
            if key not in hints:
                known = ", ".join(hints)
                raise ConfigError(f"{where}: unknown setting [{name}] {key}; known: {known}")
            values[key] = _coerce(name, key, value, hints[key], where)
        parts[attr] = cls(**values)
    config = Config(**parts, base_dir=base_dir, path=path)
    _validate(config, where)
    return config


def _validate(config: Config, where: str) -> None:
    if config.source.type not in ("maildir", "imap"):
        raise ConfigError(f"{where}: [source] type must be \"maildir\" or \"imap\", "
                          f"not {config.source.type!r}")
    if config.sink.type not in ("files", "smtp"):
        raise ConfigError(f"{where}: [sink] type must be \"files\" or \"smtp\", "
                          f"not {config.sink.type!r}")
    try:
        zoneinfo.ZoneInfo(config.bot.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: [mailbot] timezone {config.bot.timezone!r} is not a known "
                          "time zone; use a name like \"America/Mexico_City\"") from None
    if "@" not in config.bot.address:
        raise ConfigError(f"{where}: [mailbot] address must be an e-mail address, "
                          f"not {config.bot.address!r}")
    for section_name, section in (("limits", config.limits), ("throttle", config.throttle)):
        for f in dataclasses.fields(section):
            if getattr(section, f.name) <= 0:
                raise ConfigError(f"{where}: [{section_name}] {f.name} must be greater than zero")
    for f in dataclasses.fields(config.security):
        value = getattr(config.security, f.name)
        if f.type in (int, "int") and value <= 0:
            raise ConfigError(f"{where}: [security] {f.name} must be greater than zero")
    _validate_web(config.web, where)
    if config.security.require_authentication and not config.security.trusted_authserv_ids:
        raise ConfigError(f"{where}: [security] require_authentication is true but "
                          "trusted_authserv_ids is empty; list the authserv-id your receiving "
                          "server writes in Authentication-Results (e.g. \"mx.example.com\")")
    for name, server in (("imap", config.imap), ("smtp", config.smtp)):
        try:
            check_transport(name, server, plaintext=False)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if config.source.type == "imap" and not config.imap.host:
        raise ConfigError(f"{where}: [source] type is \"imap\" but [imap] host is not set")
    if config.sink.type == "smtp" and not config.smtp.host:
        raise ConfigError(f"{where}: [sink] type is \"smtp\" but [smtp] host is not set")


def split_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:8080" -> ("127.0.0.1", 8080); "[::1]:8080" -> ("::1", 8080)."""
    host, colon, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[web] listen must be HOST:PORT, e.g. \"127.0.0.1:8080\", "
                          f"not {listen!r}")
    return host, int(port)


def _validate_web(web: WebConfig, where: str) -> None:
    try:
        split_listen(web.listen)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for name in ("session_hours", "login_attempts", "login_window_minutes"):
        if getattr(web, name) <= 0:
            raise ConfigError(f"{where}: [web] {name} must be greater than zero")
    for name in ("max_pass_age_seconds", "low_stock_threshold"):
        if getattr(web, name) < 0:
            raise ConfigError(f"{where}: [web] {name} must be zero or more")


def load(path: str | Path | None = None) -> Config:
    """Load `path`; without one, ./config.toml if present, else the embedded defaults."""
    if path is None:
        candidate = Path("config.toml")
        if not candidate.exists():
            return Config()
        path = candidate
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return from_mapping(data, base_dir=path.resolve().parent, path=path)
