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
