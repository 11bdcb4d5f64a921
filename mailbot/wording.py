"""A message written once, said in each reader's language.

The CLI speaks English and the console Spanish, about the same things (a refused row of an
import, say). So such a message is kept as its English template with named placeholders plus
the values, not as finished text: `say()` gives the English the CLI prints, `say(gettext)` the
same template looked up in the console's catalogue (mailbot/ops/web/locale) and filled with the
same values. Templates are marked with N_() where they are written: a no-op at run time, the
keyword the catalogue's extraction (tests/test_web_pages.py) looks for, so a template without
its Spanish text fails the catalogue test instead of showing English on a Spanish page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def N_(template: str) -> str:
    """Marks `template` for the console's catalogue; it is translated where it is shown."""
    return template


@dataclass(frozen=True)
class Words:
    """An English template ("%(value)s is not a date") and the values of its placeholders."""

    template: str
    values: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, template: str, **values: object) -> Words:
        return cls(template, tuple(values.items()))

    def say(self, gettext: Callable[[str], str] | None = None) -> str:
        """The text in English, or through `gettext` (a catalogue's lookup of the template)."""
        text = gettext(self.template) if gettext is not None else self.template
        return text % dict(self.values) if self.values else text

    def __str__(self) -> str:
        return self.say()
