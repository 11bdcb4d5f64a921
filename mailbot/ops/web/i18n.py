"""The console's language through gettext: English msgids in the code and the templates, one
catalog per language in locale/LANG/LC_MESSAGES/messages.po (Spanish, es_MX, first).

The .po is compiled into memory when the app starts (Babel), so no binary .mo is committed or
can fall behind its .po. Adding a language is adding its .po; no template changes.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from mailbot.errors import ConfigError

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LOCALE = "es_MX"
DOMAIN = "messages"


def catalog_path(locale: str = DEFAULT_LOCALE) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_translations(locale: str = DEFAULT_LOCALE) -> Translations:
    path = catalog_path(locale)
    try:
        with path.open("rb") as po:
            catalog = read_po(po, locale=locale, domain=DOMAIN)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the console's {locale} catalog: {exc}") from None
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def html_lang(locale: str) -> str:
    """es_MX -> es-MX (BCP 47, for <html lang>)."""
    return locale.replace("_", "-")
