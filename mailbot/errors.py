"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class MailbotError(Exception):
    """A mistake in input, configuration or data that a person can correct."""


class ConfigError(MailbotError):
    pass


class RulesError(MailbotError):
    pass


class TemplateError(MailbotError):
    pass


class ImportError_(MailbotError):
    """A registry or key file that cannot be imported (named to avoid the builtin)."""


class StoreError(MailbotError):
    """The store cannot be used as it is (a damaged file, a full disk): the message names the
    file and the fix. The failed transaction saved nothing, so every mail is where it was."""
