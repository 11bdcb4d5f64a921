"""Secrets (passwords) come from the environment or a file, never from the config file itself.

The config only names where a secret lives, so it can be committed, shared and shown by
`mailbot doctor` without leaking anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailbot.errors import ConfigError


def read_secret(env_name: str, file: str, what: str) -> str:
    """Return the secret from `file` when one is configured, else from `$env_name`.

    A configured file wins because naming it is a deliberate choice, while the variable name has
    a default. The secret is the first line, unstripped otherwise: a password may begin or end
    with spaces, while `echo pw > file` and editors add a newline.
    Errors name the variable and the file so an operator knows exactly what to set.
    """
    if file:
        path = Path(file).expanduser()
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{what}: the file {path} does not exist") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{what}: the file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
        secret = _strip_line_ending(raw)
        if not secret:
            raise ConfigError(f"{what}: the file {path} is empty")
        return secret
    if not env_name:
        raise ConfigError(f"{what} is not configured: name an environment variable or a file")
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"{what} is missing: set the environment variable {env_name} "
                          "or configure a password file")
    secret = _strip_line_ending(value)
    if not secret:
        raise ConfigError(f"{what}: the environment variable {env_name} is empty")
    return secret


def _strip_line_ending(text: str) -> str:
    return text.splitlines()[0] if text else ""
