"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""

from collections.abc import Sequence


class MailbotError(Exception):
    """A mistake in input, configuration or data that a person can correct."""


class ConfigError(MailbotError):
    pass


class RulesError(MailbotError):
    """A rules folder that cannot be used. `problems` holds every mistake found (one line each,
    `mailbot.rules_table.RulesProblem`), so `rules check` and `run` can name them all at once."""

    def __init__(self, *args: object, problems: Sequence[object] = ()) -> None:
        if problems and not args:
            args = ("\n".join(str(p) for p in problems),)
        super().__init__(*args)
        self.problems: tuple[object, ...] = tuple(problems) or (str(self),)


class TemplateError(MailbotError):
    pass


class ImportError_(MailbotError):
    """A registry or key file that cannot be imported (named to avoid the builtin)."""


class StoreError(MailbotError):
    """The store cannot be used as it is (a damaged file, a full disk): the message names the
    file and the fix. The failed transaction saved nothing, so every mail is where it was."""
