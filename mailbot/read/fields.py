"""Reading the five request fields the way customers really write them.

Everything here is tolerant on purpose: customers type labels in capitals, without accents,
abbreviated, behind bullets; serials in lower case or without dashes; addresses as
``Name <addr>`` or ``mailto:`` links; system names with an en dash or without the space in
"CONTPAQ i". Comparisons go through `fold`; values keep the customer's own spelling until they
are normalised here. The only module that imports rapidfuzz (fuzzy systems and label typos).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from mailbot.ruleset import Catalogue, LabelMatching

# Every dash-like character customers (and Word's autocorrect) produce.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_DASH_TABLE = str.maketrans({d: "-" for d in _DASHES})
# ASCII text folds with one regular expression; the per-character path is for the rest.
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    """What one character folds to: its letters and digits, a space for anything else."""
    return "".join(c if c.isalnum() else " "
                   for c in unicodedata.normalize("NFKD", char).casefold()
                   if not unicodedata.combining(c))


class _FoldTable(dict):
    """`_fold_char` by code point, for `str.translate`: filled as characters are met, the
    ASCII ones up front, and bounded (past the limit a character is folded, not kept).
    With `single`, a character that does not fold to exactly one is deleted instead."""

    LIMIT = 8192

    def __init__(self, *, single: bool = False) -> None:
        super().__init__()
        self.single = single
        for code in range(128):
            self[code] = self._fold(code)

    def _fold(self, code: int) -> str:
        folded = _fold_char(chr(code))
        return "" if self.single and len(folded) != 1 else folded

    def __missing__(self, code: int) -> str:
        folded = self._fold(code)
        if len(self) < self.LIMIT:
            self[code] = folded
        return folded


_FOLD_TABLE = _FoldTable()
_FOLD_ONE_TABLE = _FoldTable(single=True)
_NOT_SPACES = re.compile(r"[^ ]+")


def _fold_chars(text: str) -> list[tuple[str, int]]:
    """Folded characters, each with the index of the original character it came from.

    Letters and digits survive (case-folded, accents removed); any run of other characters
    becomes one space. Keeping the index lets a caller find where a folded match ends in the
    original text.
    """
    out: list[tuple[str, int]] = []
    append = out.append
    after_space = True  # nothing yet, or a space last: a space here would be dropped
    table = _FOLD_TABLE
    for index, char in enumerate(text):
        for c in table[ord(char)]:
            if c != " ":
                append((c, index))
                after_space = False
            elif not after_space:
                append((" ", index))
                after_space = True
    if out and out[-1][0] == " ":
        out.pop()
    return out


def fold(text: str) -> str:
    """A spelling-insensitive form for comparisons only (never shown to anyone).

    Case, accents, dashes (hyphen, en/em dash), punctuation and runs of whitespace are all
    reduced to lower-case words separated by single spaces:
    ``fold("CONTPAQ i – Factura Electrónica.") == "contpaq i factura electronica"``.
    """
    if text.isascii():
        return " ".join(_ASCII_WORD.findall(text)).lower()
    # `_fold_chars` without the indices: each character folds to letters, digits and spaces
    # only (never other whitespace), so splitting on whitespace joins its runs of spaces.
    return " ".join(text.translate(_FOLD_TABLE).split())


# --- serials ----------------------------------------------------------------------------------

_SERIAL_SEPARATORS = re.compile(r"[-._]")
# Where words end when looking for serials; dashes, dots and underscores stay inside words.
_SERIAL_WORD_BREAK = re.compile(r"[\s,;:()\[\]{}<>\"'«»“”‘’*!?¡¿/\\|=#]+")


def _aligned_parts(word: str) -> list[str] | None:
    """The alphanumeric parts of `word` if each could be whole groups of four, else None."""
    parts = [p for p in _SERIAL_SEPARATORS.split(word) if p]
    if not parts or any(not (p.isascii() and p.isalnum()) or len(p) % 4 for p in parts):
        return None
    return parts


# A serial written the way the registry writes it, alone: the common case of a sheet's cell.
_PLAIN_SERIAL = re.compile(r"[A-Za-z0-9]{4}(?:-[A-Za-z0-9]{4}){3}")


def find_serials(text: str) -> list[str]:
    """Every serial in `text`, normalised, in order of appearance, without repeats.

    A serial is one word of 16 letters/digits in groups of four ("AAAA-BBBB-CCCC-DDDD",
    "aaaabbbbccccdddd", "aaaa.bbbb.cccc.dddd"), or consecutive words that together make
    exactly four groups ("AAAA BBBB CCCC DDDD", "AAAA-BBBB CCCC-DDDD"). A longer run of
    four-letter words ("para esta AAAA BBBB CCCC DDDD") cannot be told apart and gives nothing.
    """
    if _PLAIN_SERIAL.fullmatch(text):
        return [text.upper()]  # what the word-by-word reading below gives, in a tenth the time
    found: list[str] = []
    run: list[list[str]] = []
    for word in [*_SERIAL_WORD_BREAK.split(text.translate(_DASH_TABLE)), ""]:
        if word and not _SERIAL_SEPARATORS.sub("", word):
            continue  # a lone "-" between groups: "AAAA - BBBB - CCCC - DDDD"
        parts = _aligned_parts(word)
        if parts is not None:
            run.append(parts)
            continue
        whole = [w for w in run if sum(map(len, w)) == 16]
        if whole:
            found.extend("".join(w) for w in whole)
        elif sum(len(p) for w in run for p in w) == 16:
            found.append("".join(p for w in run for p in w))
        run = []
    serials: list[str] = []
    for chars in found:
        serial = _format_serial(chars)
        if serial not in serials:
            serials.append(serial)
    return serials


def normalise_serial(text: str) -> str | None:
    """``AAAA-BBBB-CCCC-DDDD`` (upper case) from how a customer wrote it, or None.

    Accepts lower case, dashes (any kind), dots, underscores, spaces or no separators at all,
    and words around it ("es la aaaa bbbb cccc dddd, gracias"). None when `text` holds no
    serial (15 or 17 characters, a fifth group...) or more than one.
    """
    serials = find_serials(text)
    return serials[0] if len(serials) == 1 else None


def _format_serial(chars: str) -> str:
    chars = chars.upper()
    return "-".join(chars[i:i + 4] for i in range(0, 16, 4))


# --- e-mail addresses ---------------------------------------------------------------------------

_ANGLE_ADDRESS = re.compile(r"<\s*(?:mailto:)?([^<>\s]+@[^<>\s]+?)\s*>", re.IGNORECASE)
# Outlook's "addr[mailto:addr]" and a name in parentheses after the address.
_ASIDES = re.compile(r"\[\s*mailto:[^\]]*\]|\([^)]*\)", re.IGNORECASE)
_MAILTO = re.compile(r"^\s*mailto:", re.IGNORECASE)
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+$")
_LEADING_PUNCTUATION = "\"'([{<«“‘"
_TRAILING_PUNCTUATION = ".,;:!?\"')]}>»”’"


# A bare address (dot-atom local part, host names of letters, digits and inner hyphens) that
# starts with a letter or digit: nothing around it to take off, and `_valid_address` holds.
_ATOM_CHAR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"[A-Za-z0-9]{_ATOM_CHAR}*(?:\.{_ATOM_CHAR}+)*@"
                            rf"(?:{_HOST_LABEL}\.)+[A-Za-z0-9]{{2,}}")


def parse_email(text: str) -> str | None:
    """The one address in `text`, lower case, or None when it is not exactly one valid address.

    Understands ``Raul <RGonzalez@Empresa.com.mx>``, ``mailto:addr``, Outlook's
    ``addr[mailto:addr]``, ``addr (Raul)`` and an address followed by a full stop. Anything
    else around the address ("r gonzalez@x.com") is refused rather than guessed at.
    Internationalised domains are accepted as written; local parts must be ASCII.
    """
    if len(text) <= 254 and _PLAIN_ADDRESS.fullmatch(text):
        return text.lower()  # a sheet's e-mail column, 10,000 times: skip the unwrapping
    match = _ANGLE_ADDRESS.search(text)
    if match:
        address = match.group(1)
    else:
        address = _MAILTO.sub("", _ASIDES.sub(" ", text)).strip()
        address = address.lstrip(_LEADING_PUNCTUATION).rstrip(_TRAILING_PUNCTUATION).strip()
    address = address.lower()
    return address if _valid_address(address) else None


def _valid_address(address: str) -> bool:
    if address.count("@") != 1 or any(c.isspace() for c in address):
        return False
    local, domain = address.split("@")
    if not local or len(address) > 254 or not _LOCAL_PART.match(local):
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or len(labels[-1]) < 2:
        return False
    for label in labels:
        if not label or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isalnum() or c == "-" for c in label):
            return False
    return True


# --- labels -------------------------------------------------------------------------------------

# Words that all mean "number" in a label: "No.", "Núm.", "Nº", "N°", "Nro.", "#".
_NUMBER_WORDS = frozenset({"no", "num", "numero", "nro", "n"})
# Bullets and list numbering in front of a label: "•", "-", "*", "1.", "2)", "a)". Not ">":
# a quoted line is history, never a request.
_BULLET = re.compile(r"^[\s\u00a0]*(?:(?:[•·▪◦●○■□►➢✓✔\-–—*+]|\d{1,2}[.)]|[a-eA-E]\))[\s\u00a0]*)*")
# Emphasis that may come before a label: "*Número de serie:*", "_Serie_", "**Serie**".
_LABEL_LEAD = " \t\u00a0*_"
# What may separate a label from its value on the same line.
_SEPARATOR = re.compile(r"^(?:[\s\u00a0]*[*_]*[\s\u00a0]*[:：=|\-–—>]+[*_]*|\t|[ \u00a0]{2,})"
                        r"[\s\u00a0]*")
# "(recomendable que sea el mismo ...)" between a label and its colon.
_ASIDE = re.compile(r"^[\s\u00a0]*\([^)]{0,120}\)")
# Nothing at all after the label, or only a stray full stop / colon: the value is on the next line.
_NOTHING = re.compile(r"^[\s\u00a0]*[*_]*[:：.\-–—]*[*_]*[\s\u00a0]*$")
# A few words between a label and a colon: "Nombre completo del contacto: ...".
_FILLER = re.compile(r"^[\s\u00a0]+((?:[^\W\d_]+[\s\u00a0]+){0,2}[^\W\d_]+)"
                     r"[\s\u00a0]*[:：][\s\u00a0]*")
_MAX_FILLER_WORDS = 3


def _starts_a_word(text: str) -> bool:
    """Whether `text` begins with a character `fold` keeps (a letter or digit)."""
    return bool(text) and any(c.isalnum() for c in unicodedata.normalize("NFKD", text[0]))


def _label_key(words: list[str]) -> str:
    return "".join("numero" if w in _NUMBER_WORDS else w for w in words)


def _words(text: str) -> list[tuple[str, int, int]]:
    """Folded words of `text` with the start and end index of each in the original."""
    if text.isascii():
        return [(m.group().lower(), m.start(), m.end()) for m in _ASCII_WORD.finditer(text)]
    folded = text.translate(_FOLD_ONE_TABLE)
    if len(folded) == len(text):
        # Every character folds to one (accented letters do): a word's characters are where
        # its folded ones are, and runs of spaces are what `_fold_chars` collapses.
        return [(m.group(), m.start(), m.end()) for m in _NOT_SPACES.finditer(folded)]
    words: list[tuple[str, int, int]] = []
    current: list[str] = []
    start = end = 0
    for c, index in _fold_chars(text):
        if c == " ":
            if current:
                words.append(("".join(current), start, end))
                current = []
            continue
        if not current:
            start = index
        current.append(c)
        end = index + 1
    if current:
        words.append(("".join(current), start, end))
    return words


# A line or cell that starts with a plain ASCII word (no bullet, emphasis or accent before or in
# it, and not "a)"): its first word, as `_words` would fold it, is this match, found without
# folding. Most cells of a list (names, companies, addresses, serials) start with a word no
# label starts with, and are refused on it.
_PLAIN_FIRST_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*"
                               r"(?=[\x00-\x28\x2a-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]|\Z)")


@dataclass(frozen=True)
class LabelMatch:
    field: str
    rest: str  # the text after the label and its separator, stripped ("" = value on next line)


# A value written after a label without a colon may be only the serial: groups and separators.
_BARE_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_ \u2010-\u2015]*[A-Za-z0-9][.,;]?")


def _whole_serial(value: str) -> bool:
    """Whether `value` is one serial and nothing else ("AAAA-BBBB-CCCC-DDDD", "aaaa bbbb ...")."""
    return (bool(_BARE_SERIAL.fullmatch(value)) and sum(c.isalnum() for c in value) == 16
            and normalise_serial(value) is not None)


def _one_address(value: str) -> bool:
    return "@" in value and parse_email(value) is not None


class LabelMatcher:
    """Recognises a field label at the start of a line, spelt any of the ways in `labels`.

    Case, accents, punctuation, "No."/"Núm."/"Número" and "E-mail"/"Email" differences are
    ignored. The longest label wins, so "Nombre de la empresa" beats "Nombre". A label must be
    followed by a separator (":", "-", "–", a tab, two spaces), a short aside in parentheses, a
    few words and a colon, or nothing; that keeps prose such as "Empresa de muestra" or
    "Sistema de 1 y 2 usuarios" from being read as a label. Three more ways, for labels as
    people type them on a phone:

    - a typo ("contaco", "sitema", "seire") when `typos` allows it: word by word within the
      similarity, the field clearly ahead of every other field, and then only before a real
      separator (never with filler words, never without a colon);
    - no colon, when the rest of the line is plainly the field's value: one whole serial, one
      address, a catalogue spelling of a system (`systems`);
    - but never a one-word label whose filler names another field: "Nombre de empresa:" is not
      "Nombre" (the contact) plus filler; such a line is that variant's label or nothing.
    """

    def __init__(self, labels: Mapping[str, tuple[str, ...]], typos: LabelMatching | None = None,
                 systems: SystemMatcher | None = None) -> None:
        self._fields: dict[str, str] = {}
        self._spellings: dict[int, list[tuple[tuple[str, ...], str]]] = {}
        self._max_words = 1
        self._first: dict[str, int] = {}  # first word of a label -> its longest label's words
        own: dict[str, set[str]] = {}
        single: dict[str, set[str]] = {}
        for field_name, spellings in labels.items():
            for spelling in spellings:
                words = fold(spelling).split()
                if not words:
                    continue
                self._fields.setdefault(_label_key(words), field_name)
                key_words = tuple(_key_word(w) for w in words)
                self._spellings.setdefault(len(words), []).append((key_words, field_name))
                self._first[key_words[0]] = max(self._first.get(key_words[0], 0), len(words))
                self._max_words = max(self._max_words, len(words))
                own.setdefault(field_name, set()).update(key_words)
                if len(words) == 1:
                    single.setdefault(field_name, set()).add(key_words[0])
        min_length = typos.min_word_length if typos else 5
        # Words that name some other field, which a one-word label's filler may not hold.
        self._foreign = {
            name: frozenset(w for other, words in own.items() if other != name for w in words
                            if (len(w) >= min_length or w in single.get(other, ())
                                ) and w not in own[name])
            for name in own}
        self._typos = typos if typos and typos.min_similarity < 100 else None
        self._typo_cache: dict[tuple[str, ...], str | None] = {}
        self._known_words = sorted({w for words in own.values() for w in words})
        self._near_cache: dict[str, frozenset[str]] = {}
        self._header_cache: dict[str, str | None] = {}
        self._starts_cache: dict[str, bool] = {}
        self._values: dict[str, Callable[[str], bool]] = {
            "serial": _whole_serial, "contact_email": _one_address}
        if systems is not None:
            self._values["system"] = lambda value: systems.exact(value) is not None

    def match(self, text: str) -> tuple[str, str] | None:
        """``(field, rest_of_line)`` when `text` (one line) starts with a label, else None."""
        found = self._match(text, header=False)
        return (found.field, found.rest) if found else None

    def match_header(self, text: str) -> str | None:
        """The field a spreadsheet header cell names, or None.

        A header cell is a label alone, possibly with an aside or a couple of extra words
        ("Número de serie (actual)", "Correo electrónico del cliente").
        """
        if text in self._header_cache:
            return self._header_cache[text]  # a list repeats its systems, companies, addresses
        found = self._match(text, header=True)
        field_name = found.field if found and not found.rest else None
        if len(text) <= 200:
            if len(self._header_cache) > 8192:
                self._header_cache.clear()
            self._header_cache[text] = field_name
        return field_name

    def could_name(self, text: str) -> bool:
        """False when `text` surely starts with no label (`match` and `match_header` give None).

        A cheap test on the first word, without folding, for the common case: a sheet's data
        rows are each tried as a header (a second list may start further down), and their
        names, companies, addresses and serials start with no label's word.
        """
        plain = _PLAIN_FIRST_WORD.match(text, 0, 40)
        if plain is not None:
            return self._could_start(plain.group().lower())
        return not (text.isascii() and text.isdigit())  # no label starts with a digit

    def _match(self, text: str, *, header: bool) -> LabelMatch | None:
        if not self.could_name(text):
            return None  # the common case, decided as the folding path below would decide it
        line = text.split("\n", 1)[0]
        offset = _BULLET.match(line)
        body = line[offset.end():] if offset else line
        lead = body[:200].lstrip(_LABEL_LEAD)
        if not _starts_a_word(lead) or lead[0].isdigit():
            return None  # cheap, before folding: ", , , ..." is tried at every comma; no label
            # starts with a digit (list numbering "1." is the bullet, already skipped)
        # Only as many words as the longest label that starts with this word (or a word it
        # could be a typo of): most lines and cells start with no label's word and stop here,
        # having folded a few characters (a label's first word is far shorter than 40).
        start = _words(body[:40])
        if not start or body[:start[0][1]].strip(_LABEL_LEAD):
            return None  # something other than emphasis before the first word: "> ...", "(..."
        first = _key_word(start[0][0])
        longest = self._longest(first)
        if not longest:
            return None
        words = _words(body[:200])  # labels are short; never fold a whole long line
        # Try the longest candidate first; stop at the first that is a label with a proper ending.
        for count in range(min(len(words), longest), 0, -1):
            head = [w for w, _, _ in words[:count]]
            after = body[words[count - 1][2]:]
            field_name = self._fields.get(_label_key(head))
            if field_name is not None:
                rest = self._value_after(field_name, count, after, header=header)
                if rest is not None:
                    return LabelMatch(field_name, rest)
            if self._typos is None or not any(len(w) >= self._typos.min_word_length
                                              for w in head):
                continue
            rest = self._value_after_typo(after)  # cheaper than the typo, and as necessary
            if rest is not None:
                field_name = self._typo(tuple(_key_word(w) for w in head))
                if field_name is not None:
                    return LabelMatch(field_name, rest)
        return None

    def _longest(self, first: str) -> int:
        """Words in the longest label starting with `first` (a key word) or a word it could be
        a typo of; 0 when no label can start with it."""
        longest = self._first.get(first, 0)
        if self._typos is not None:
            longest = max([longest, *(self._first.get(w, 0) for w in self._near(first))])
        return longest

    def _could_start(self, word: str) -> bool:
        """Whether a label can start with `word` (folded), cached: a reseller's list of 10,000
        rows is 60,000 cells, every one tried as a header, and their first words repeat."""
        if not word.isalpha():
            return word in self._first  # no typo of a label has a digit: nothing to cache
        could = self._starts_cache.get(word)
        if could is None:
            could = bool(self._longest(_key_word(word)))
            if len(self._starts_cache) > 8192:
                self._starts_cache.clear()  # bounded, whatever a mail holds
            self._starts_cache[word] = could
        return could

    def _value_after(self, field_name: str, count: int, after: str, *,
                     header: bool) -> str | None:
        aside = _ASIDE.match(after)
        if aside:
            after = after[aside.end():]
        if _NOTHING.match(after):
            return ""
        separator = _SEPARATOR.match(after)
        if separator:
            return after[separator.end():].strip()
        filler = _FILLER.match(after)
        if filler and len(filler.group(1).split()) <= _MAX_FILLER_WORDS:
            value = after[filler.end():].strip()
            if count > 1 or not self._names_other_field(field_name, filler.group(1)):
                return value
            validates = self._values.get(field_name)
            return value if validates is not None and validates(value) else None
        if header and len(after.split()) <= 2 and not any(c.isdigit() for c in after):
            if count == 1 and self._names_other_field(field_name, after):
                return None
            return ""
        validates = self._values.get(field_name)
        if not header and validates is not None and after[:1].isspace():
            value = after.strip()
            if validates(value):
                return value  # "Serie AAAA-BBBB-CCCC-DDDD", "Sistema Contabilidad"
        return None

    @staticmethod
    def _value_after_typo(after: str) -> str | None:
        if _NOTHING.match(after):
            return ""
        separator = _SEPARATOR.match(after)
        return after[separator.end():].strip() if separator else None

    def _names_other_field(self, field_name: str, words: str) -> bool:
        foreign = self._foreign.get(field_name, frozenset())
        for word in fold(words).split():
            word = _key_word(word)
            if word in foreign:
                return True
            if self._typos is not None and len(word) >= self._typos.min_word_length and any(
                    _similarity(word, f, self._typos) >= self._typos.min_similarity
                    for f in foreign):
                return True
        return False

    def _near(self, word: str) -> frozenset[str]:
        """The label words that `word` could be a typo of, down to the similarity less the
        margin (a field scoring lower cannot change a decision). Every spreadsheet cell is tried
        as a header, so this is cached per word and skips words no label could be."""
        near = self._near_cache.get(word)
        if near is None:
            assert self._typos is not None
            floor = self._typos.min_similarity - self._typos.min_margin
            near = frozenset() if not word.isalpha() else frozenset(
                known for known in self._known_words
                if abs(len(known) - len(word)) <= len(known) // 2
                and _similarity(word, known, self._typos) >= floor)
            if len(self._near_cache) > 8192:
                self._near_cache.clear()  # bounded, whatever a mail holds
            self._near_cache[word] = near
        return near

    def _typo(self, head: tuple[str, ...]) -> str | None:
        """The one field whose label `head` is a typo of, by a clear margin, else None."""
        if head in self._typo_cache:
            return self._typo_cache[head]
        assert self._typos is not None
        near = [self._near(w) for w in head]
        best: dict[str, float] = {}
        for spelling, field_name in self._spellings.get(len(head), ()):
            if not all(s in n for s, n in zip(spelling, near, strict=True)):
                continue  # some word is far from this spelling's: it scores below the floor
            score = min(_similarity(w, s, self._typos) for w, s in zip(head, spelling,
                                                                        strict=True))
            if score > best.get(field_name, -1.0):
                best[field_name] = score
        ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)
        found = None
        if ranked and ranked[0][1] >= self._typos.min_similarity and (
                len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= self._typos.min_margin):
            found = ranked[0][0]
        if len(self._typo_cache) > 4096:
            self._typo_cache.clear()  # bounded: a hostile mail may try many different lines
        self._typo_cache[head] = found
        return found


def _key_word(word: str) -> str:
    return "numero" if word in _NUMBER_WORDS else word


def _similarity(word: str, known: str, typos: LabelMatching) -> float:
    """0-100: how alike two folded words are; short words are alike only when equal."""
    if word == known:
        return 100.0
    if min(len(word), len(known)) < typos.min_word_length:
        return 0.0
    return OSA.normalized_similarity(word, known) * 100


# --- systems ------------------------------------------------------------------------------------

# Two systems scoring within this many points of each other are too close to call.
AMBIGUITY_MARGIN = 5.0


def _compact(text: str) -> str:
    return fold(text).replace(" ", "")


class SystemMatcher:
    """Finds the catalogue's canonical name for what a customer wrote as "Tipo de sistema".

    First an exact comparison of the folded, space-free spelling against every name and alias
    ("CONTPAQ i – Factura electrónica" = "CONTPAQi factura electronica"); then fuzzy matching
    (rapidfuzz token-set ratio) at the catalogue's `min_score`, refusing a guess when two
    systems score almost the same ("CONTPAQ i" alone, "Contabilidad y Bancos").
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self._min_score = catalogue.min_score
        self._exact: dict[str, str] = {}
        self._spellings: list[tuple[str, str]] = []  # (folded spelling, canonical name)
        for system in catalogue.systems:
            for spelling in (system.name, *system.aliases):
                self._exact.setdefault(_compact(spelling), system.name)
                self._spellings.append((fold(spelling), system.name))
        self._explained: dict[str, tuple[str | None, str]] = {}

    def match(self, text: str) -> str | None:
        return self.explain(text)[0]

    def exact(self, text: str) -> str | None:
        """The canonical name when `text` is a catalogue spelling (no fuzzy guess), else None."""
        folded = fold(text)
        return self._exact.get(folded.replace(" ", "")) if folded else None

    def explain(self, text: str) -> tuple[str | None, str]:
        """The canonical name (or None) and why, for operators reading the log.

        Cached per spelling: a reseller's list writes the same few systems thousands of times,
        and the fuzzy comparison against every catalogue spelling is the dear part of a row.
        """
        explained = self._explained.get(text)
        if explained is None:
            explained = self._explain(text)
            if len(text) <= 200:
                if len(self._explained) > 4096:
                    self._explained.clear()  # bounded, whatever a mail holds
                self._explained[text] = explained
        return explained

    def _explain(self, text: str) -> tuple[str | None, str]:
        folded = fold(text)
        if not folded:
            return None, "no system written"
        exact = self._exact.get(folded.replace(" ", ""))
        if exact:
            return exact, f"{text!r} is a catalogue spelling of {exact!r}"
        best: dict[str, float] = {}
        for spelling, name in self._spellings:
            score = fuzz.token_set_ratio(folded, spelling)
            if score > best.get(name, -1.0):
                best[name] = score
        ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)
        if not ranked or ranked[0][1] < self._min_score:
            return None, f"{text!r} is not like any catalogue system"
        name, score = ranked[0]
        if len(ranked) > 1 and ranked[1][1] >= score - AMBIGUITY_MARGIN:
            return None, (f"{text!r} could be {name!r} or {ranked[1][0]!r} "
                          f"({score:.0f} vs {ranked[1][1]:.0f})")
        return name, f"{text!r} is close to {name!r} (score {score:.0f})"
