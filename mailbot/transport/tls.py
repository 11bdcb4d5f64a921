"""The TLS context of a client connection (IMAP or SMTP): verified unless told otherwise."""

from __future__ import annotations

import ssl

from mailbot.errors import ConfigError


def client_context(section: str, *, verify: bool, ca_file: str) -> ssl.SSLContext:
    """The system's CAs plus `ca_file` (a private CA, PEM).

    Errors name the file as `[section] ca_file`.
    """
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise ConfigError(f"[{section}] ca_file {ca_file} does not exist") from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"[{section}] ca_file {ca_file} is not a PEM CA bundle: "
                              f"{exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
