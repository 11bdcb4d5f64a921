"""OAuth2 access tokens for XOAUTH2 logins (IMAP and SMTP), from a command or a file.

mailbot does not run an OAuth2 flow itself: obtaining and refreshing tokens for Gmail or
Microsoft 365 needs client secrets, consent screens and refresh-token storage that tools such as
`oauth2l`, `mutt_oauth2.py`, `az account get-access-token` or a sidecar already handle. The
operator points mailbot at such a command (or at a file a sidecar keeps current), and mailbot
asks again when the token is old or when the server rejected it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailbot.errors import ConfigError

DEFAULT_LIFETIME_SECONDS = 50 * 60  # providers issue 60-minute tokens; ask again before that
EXPIRY_MARGIN_SECONDS = 60  # when the command says how long a token lives, renew this early


class TokenError(ConfigError):
    """No usable token: the command failed or printed nothing, or the file is missing or empty."""


class TokenProvider:
    """Hands out a current access token, shared by every connection that needs one.

    With a command, the token is cached for `lifetime` seconds (or the `expires_in` the command
    printed as JSON, less a minute) and fetched again after `invalidate()`. With a file, the file
    is read on every call: whoever writes it decides when the token changes.
    Thread-safe, because the IMAP source and the SMTP sender may use one provider.
    """

    def __init__(self, command: str, file: str, *, what: str = "the OAuth2 access token",
                 lifetime: float = DEFAULT_LIFETIME_SECONDS, timeout: float = 60.0,
                 cwd: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not command and not file:
            raise ConfigError(f"{what}: xoauth2 needs a token command or a token file")
        self.command = command
        self.file = file
        self.what = what
        self.lifetime = lifetime
        self.timeout = timeout
        self.cwd = cwd
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        """A token believed valid now; runs the command only when the cached one is stale."""
        with self._lock:
            if not self.command:
                return self._read_file()
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self._run_command()
                self._expires_at = self._clock() + lifetime
            return self._token

    def invalidate(self) -> None:
        """The server rejected the token: the next `token()` fetches a fresh one."""
        with self._lock:
            self._token = None

    def _read_file(self) -> str:
        path = Path(self.file).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise TokenError(f"{self.what}: the token file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"{self.what}: cannot read the token file {path}: {exc}") from None
        if not text:
            raise TokenError(f"{self.what}: the token file {path} is empty")
        return text

    def _run_command(self) -> tuple[str, float]:
        # Run through the shell, like mbsync's PassCmd or git's credential helpers, so operators
        # can write pipes (`oauth2l fetch ... | tail -1`) in the config.
        try:
            proc = subprocess.run(self.command, shell=True, capture_output=True,
                                  timeout=self.timeout, cwd=self.cwd, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TokenError(f"{self.what}: the token command `{self.command}` did not finish "
                             f"within {self.timeout:g} s") from None
        except OSError as exc:
            raise TokenError(f"{self.what}: cannot run the token command `{self.command}`: "
                             f"{exc.strerror}") from None
        if proc.returncode != 0:
            detail = _last_line(proc.stderr) or _last_line(proc.stdout) or "no output"
            raise TokenError(f"{self.what}: the token command `{self.command}` failed with "
                             f"exit status {proc.returncode}: {detail}")
        return self._parse(proc.stdout.decode("utf-8", errors="replace").strip())

    def _parse(self, output: str) -> tuple[str, float]:
        """A bare token, or JSON with `access_token` and optionally `expires_in` (seconds)."""
        lifetime = float(self.lifetime)
        token = output
        if output.startswith("{"):
            try:
                data = json.loads(output)
            except ValueError:
                raise TokenError(f"{self.what}: the token command `{self.command}` printed "
                                 "invalid JSON") from None
            token = str(data.get("access_token") or data.get("accessToken") or "")
            expires_in = data.get("expires_in")
            if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
                lifetime = min(lifetime, max(float(expires_in) - EXPIRY_MARGIN_SECONDS, 0.0))
        if not token or any(c.isspace() for c in token):
            raise TokenError(f"{self.what}: the token command `{self.command}` did not print "
                             "a token (expected one line, or JSON with \"access_token\")")
        return token, lifetime


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
