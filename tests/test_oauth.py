"""Credentials: OAuth2 tokens from a command or a file (TokenProvider), passwords (read_secret)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mailbot.errors import ConfigError
from mailbot.transport.oauth import TokenError, TokenProvider
from mailbot.transport.secrets import read_secret


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_command(tmp_path: Path, output: str = "token-{n}", exit_code: int = 0,
                     stderr: str = "") -> str:
    """A token command that prints `output` with {n} = how many times it has run."""
    script = tmp_path / "token_cmd.py"
    script.write_text(
        "import pathlib, sys\n"
        f"state = pathlib.Path({str(tmp_path / 'runs')!r})\n"
        "n = int(state.read_text()) + 1 if state.exists() else 1\n"
        "state.write_text(str(n))\n"
        f"print({output!r}.replace('{{n}}', str(n)))\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n")
    return f"{sys.executable} {script}"


def runs(tmp_path: Path) -> int:
    state = tmp_path / "runs"
    return int(state.read_text()) if state.exists() else 0


# -- TokenProvider: command -----------------------------------------------------------------------


def test_token_comes_from_the_command_and_is_cached(tmp_path):
    provider = TokenProvider(counting_command(tmp_path), "")
    assert provider.token() == "token-1"
    assert provider.token() == "token-1"
    assert runs(tmp_path) == 1


def test_a_rejected_token_is_fetched_again(tmp_path):
    provider = TokenProvider(counting_command(tmp_path), "")
    assert provider.token() == "token-1"
    provider.invalidate()
    assert provider.token() == "token-2"


def test_a_token_is_fetched_again_after_its_lifetime(tmp_path):
    clock = Clock()
    provider = TokenProvider(counting_command(tmp_path), "", lifetime=600, clock=clock)
    assert provider.token() == "token-1"
    clock.now += 599
    assert provider.token() == "token-1"
    clock.now += 1
    assert provider.token() == "token-2"


def test_json_output_gives_the_token_and_shortens_the_lifetime(tmp_path):
    clock = Clock()
    command = counting_command(tmp_path, '{"access_token": "tok-{n}", "expires_in": 300}')
    provider = TokenProvider(command, "", lifetime=3000, clock=clock)
    assert provider.token() == "tok-1"
    clock.now += 239  # 300 s less the 60 s margin
    assert provider.token() == "tok-1"
    clock.now += 1
    assert provider.token() == "tok-2"


def test_the_command_runs_in_a_shell_in_the_given_directory(tmp_path):
    (tmp_path / "current-token").write_text("from-a-pipe\n")
    provider = TokenProvider("cat current-token | tr -d ' '", "", cwd=tmp_path)
    assert provider.token() == "from-a-pipe"


def test_a_failing_command_is_a_config_error_with_its_exit_status_and_message(tmp_path):
    command = counting_command(tmp_path, "", exit_code=3, stderr="refresh token revoked\n")
    provider = TokenProvider(command, "", what="the IMAP OAuth2 token")
    with pytest.raises(ConfigError) as caught:
        provider.token()
    assert isinstance(caught.value, TokenError)
    message = str(caught.value)
    assert message.startswith("the IMAP OAuth2 token:")
    assert "exit status 3" in message and "refresh token revoked" in message


def test_a_missing_command_is_reported(tmp_path):
    provider = TokenProvider(str(tmp_path / "no-such-helper"), "")
    with pytest.raises(TokenError, match="failed with exit status 127"):
        provider.token()


def test_a_command_printing_nothing_is_reported(tmp_path):
    with pytest.raises(TokenError, match="did not print a token"):
        TokenProvider(counting_command(tmp_path, ""), "").token()


def test_a_command_printing_junk_is_reported(tmp_path):
    with pytest.raises(TokenError, match="did not print a token"):
        TokenProvider(counting_command(tmp_path, "Fetching token...\ntok"), "").token()


def test_a_hanging_command_is_cut_off(tmp_path):
    provider = TokenProvider("sleep 5", "", timeout=0.2)
    with pytest.raises(TokenError, match="did not finish within 0.2 s"):
        provider.token()


# -- TokenProvider: file --------------------------------------------------------------------------


def test_a_token_file_is_read_on_every_call(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    provider = TokenProvider("", str(token_file))
    assert provider.token() == "first"
    token_file.write_text("second\n")  # a sidecar refreshed it
    assert provider.token() == "second"


def test_a_missing_or_empty_token_file_is_reported(tmp_path):
    with pytest.raises(TokenError, match="does not exist"):
        TokenProvider("", str(tmp_path / "absent")).token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        TokenProvider("", str(tmp_path / "empty")).token()


def test_neither_command_nor_file_is_a_config_error():
    with pytest.raises(ConfigError, match="token command or a token file"):
        TokenProvider("", "")


# -- read_secret ----------------------------------------------------------------------------------


def test_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAILBOT_TEST_SECRET", " pass word \n")
    assert read_secret("MAILBOT_TEST_SECRET", "", "the IMAP password") == " pass word "


def test_secret_file_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MAILBOT_TEST_SECRET", "from-env")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert read_secret("MAILBOT_TEST_SECRET", str(secret), "the IMAP password") == "from-file"


def test_a_missing_variable_is_named(monkeypatch):
    monkeypatch.delenv("MAILBOT_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="set the environment variable MAILBOT_TEST_SECRET"):
        read_secret("MAILBOT_TEST_SECRET", "", "the IMAP password")


def test_a_missing_or_empty_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"the IMAP password: the file .*absent does not exist"):
        read_secret("X", str(tmp_path / "absent"), "the IMAP password")
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret("X", str(tmp_path / "empty"), "the IMAP password")


def test_an_empty_variable_is_refused(monkeypatch):
    monkeypatch.setenv("MAILBOT_TEST_SECRET", "")
    with pytest.raises(ConfigError, match="MAILBOT_TEST_SECRET is empty"):
        read_secret("MAILBOT_TEST_SECRET", "", "the IMAP password")
