"""Mail bodies as plain text a field parser can read: HTML converted, quoted history removed.

Customers write from Outlook, Gmail and phones; the field parser downstream reads lines such as
``Label: value`` or ``Label<TAB>value``. This module is where every client's layout is turned
into such lines, and where the history of a reply is cut off so that a serial quoted from an
earlier mail is never read as a new request. Only this module imports inscriptis and
mailparser_reply.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from lxml import etree
from lxml.html import HtmlElement, document_fromstring
from mailparser_reply.parser import EmailMessage

# The strict profile does not indent blocks, so a value keeps the column its label gave it.
_CONFIG = ParserConfig(css=CSS_PROFILES["strict"])

# Stands in for a tab while inscriptis renders: it collapses real tabs to one space.
_TAB = "\ue000"
_SHORT_CELL = 200  # characters: longer cells are layout, not a label or a value

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


# --- HTML to text -------------------------------------------------------------------------------

def html_to_text(html: str) -> str:
    """Render an HTML body as lines of text; never raises.

    Beyond what inscriptis does, three things matter for request mails: a ``mailto:`` link
    keeps its address even when its text is a name; the two cells of a label/value table row
    come out on one line as ``label<TAB>value``; and quoted history (Gmail's ``gmail_quote``,
    Apple/Thunderbird ``type="cite"``) comes out with ``> `` in front of every line, as a
    plain-text client writes it, so that `strip_quoted` removes it.
    """
    if not html or not html.strip():
        return ""
    last_html, last_text = _LAST_RENDERED[0]
    if last_html is html:
        return last_text  # the same part again: the body is chosen from both alternatives
    text = _html_to_text(html)
    _LAST_RENDERED[0] = (html, text)
    return text


# The last HTML rendered (the very same string object) and its text: reading a mail renders
# an HTML-only body once in mime.py and may ask again when read/forwards.py weighs the
# alternatives; a 20 MB part is not rendered twice. One entry, replaced by the next mail's.
_LAST_RENDERED: list[tuple[str | None, str]] = [(None, "")]


def _html_to_text(html: str) -> str:
    try:
        tree = _parse_html(html)
        if tree is None:
            return ""
        _show_mailto_addresses(tree)
        _outlook_paragraphs(tree)
        _mark_quoted_blocks(tree)
        _flatten_tables(tree)
        text = _render(tree)
    except Exception:  # lxml/inscriptis on hostile input: fall back to crude tag stripping
        text = _strip_tags(html)
    return _tidy(text.replace(_TAB, "\t"))


def _parse_html(html: str) -> HtmlElement | None:
    html = html.encode("utf-8", "replace").decode("utf-8")  # lone surrogates stop lxml
    html = html.replace("\x00", "").strip()
    html = re.sub(r"^<\?xml[^>]*\?>", "", html)  # lxml refuses a str with an encoding declaration
    if not html:
        return None
    for candidate in (html, f"<html><body>{html}</body></html>"):
        try:
            return document_fromstring(candidate)
        except (etree.ParserError, ValueError):
            continue  # e.g. only a comment: "Document is empty"
    return document_fromstring("<pre>" + html_lib.escape(html) + "</pre>")


def _render(element: HtmlElement) -> str:
    return Inscriptis(element, _CONFIG).get_text()


def _show_mailto_addresses(tree: HtmlElement) -> None:
    """``<a href="mailto:x@y">Raúl</a>`` -> ``Raúl <x@y>``: the address is the data."""
    for anchor in tree.iter("a"):
        href = (anchor.get("href") or "").strip()
        if not href.lower().startswith("mailto:"):
            continue
        address = unquote(href[7:].split("?", 1)[0]).strip()
        if not address:
            continue
        shown = anchor.text_content().strip()
        if address.casefold() in shown.casefold():
            continue
        addition = f" <{address}>" if shown else address
        anchor.tail = addition + (anchor.tail or "")


def _outlook_paragraphs(tree: HtmlElement) -> None:
    """Outlook's ``MsoNormal`` paragraphs have no margin: one line each, as the customer saw it.

    Its empty ``<p>&nbsp;</p>`` is the blank line the customer typed, kept as one, so blocks
    (two requests, a signature) stay apart while a label and the value below it stay adjacent.
    """
    for paragraph in list(tree.iter("p")):
        if not (paragraph.get("class") or "").lower().startswith(("msonormal", "msoplaintext")):
            continue
        paragraph.tag = "div"
        has_text = paragraph.text_content().replace("\xa0", " ").strip()
        if has_text or paragraph.find(".//img") is not None:
            continue
        tail = paragraph.tail
        for child in list(paragraph):
            paragraph.remove(child)
        paragraph.text = None
        paragraph.append(paragraph.makeelement("br", {}))
        paragraph.tail = tail


def _is_quote(element: HtmlElement) -> bool:
    """A quoting blockquote, not Gmail's "indent" button (a blockquote with border:none)."""
    if (element.get("type") or "").lower() == "cite":
        return True
    if "quote" in (element.get("class") or "").lower():
        return True
    style = (element.get("style") or "").replace(" ", "").lower()
    return "border-left:" in style and not ("border-left:none" in style or "border:none" in style)


def _mark_quoted_blocks(tree: HtmlElement) -> None:
    # Innermost first, so a quote inside a quote ends up with "> > ".
    for block in reversed(list(tree.iter("blockquote"))):
        if not _is_quote(block) or block.getparent() is None:
            continue
        lines = _tidy(_render(block).replace(_TAB, "\t")).split("\n")
        pre = block.makeelement("pre", {})
        pre.text = "\n" + "\n".join(("> " + line).rstrip() for line in lines) + "\n"
        pre.tail = block.tail
        block.getparent().replace(block, pre)


def _cell_lines(cell: HtmlElement) -> list[str]:
    rendered = _plain_cell_text(cell)
    text = _tidy(_render(cell) if rendered is None else rendered)
    return [" ".join(line.split()) for line in text.split("\n") if line.strip()]


# A table cell made only of these (Outlook's <td><p class=MsoNormal><b>Empresa<o:p>, Gmail's
# <td><div><span>...) renders, line by line, as `_plain_cell_text` writes it; Inscriptis
# builds a whole document per cell (the benchmark's 4,000 cells: 115 ms, this way 45 ms).
_PLAIN_INLINE = frozenset({"a", "abbr", "b", "big", "em", "font", "i", "o:p", "s", "small",
                           "span", "strike", "strong", "sub", "sup", "u"})
_PLAIN_BLOCKS = frozenset({"div", "p"})  # display:block in the strict profile, no bullet
_PLAIN_CELLS = frozenset({"td", "th"})  # inline outside a table, as a cell is rendered
_PLAIN_DEPTH = 20  # deeper cells go to Inscriptis, recursion and all
# Style keys Inscriptis acts on that change text, not only blank lines and indentation.
_TEXT_STYLES = frozenset({"display", "white_space", "style"})
_WHITESPACE_RUN = re.compile(r"\s+")


def _plain_cell_text(cell: HtmlElement) -> str | None:
    """What Inscriptis renders for `cell`, up to blank lines and runs of spaces (which
    `_cell_lines` drops and joins), when the cell holds only the elements above with no style
    that hides text or keeps its whitespace; None for any other cell.

    As Inscriptis does: a block element or a <br> starts a new line, a comment is skipped but
    not its tail, the cell's own tail is written too, every other node (a processing
    instruction) is left out with its tail (here: None, Inscriptis decides), and each piece of
    text has its whitespace collapsed to spaces and is then unescaped on its own (a character
    reference may make a line break; a run of spaces never does).
    """
    lines: list[list[str]] = [[]]

    def walk(element: HtmlElement, depth: int) -> bool:
        tag = element.tag
        if not isinstance(tag, str):
            if tag is not etree.Comment:
                return False
            if element.tail:
                lines[-1].append(element.tail)
            return True
        if depth > _PLAIN_DEPTH or not (tag in _PLAIN_INLINE or tag in _PLAIN_BLOCKS
                                        or tag == "br" or (depth == 0 and tag in _PLAIN_CELLS)):
            return False
        if not _style_keeps_text(element.get("style")):
            return False
        if tag in _PLAIN_BLOCKS or tag == "br":
            lines.append([])
        if element.text:
            lines[-1].append(element.text)
        for child in element:
            if not walk(child, depth + 1):
                return False
        if tag in _PLAIN_BLOCKS:
            lines.append([])
        if element.tail:
            lines[-1].append(element.tail)
        return True

    if not walk(cell, 0):
        return None
    return "\n".join("".join(html_lib.unescape(_WHITESPACE_RUN.sub(" ", piece))
                              for piece in line) for line in lines)


def _style_keeps_text(style: str | None) -> bool:
    """Whether a style attribute holds no key Inscriptis reads as display, white-space or a
    nested style (read the way inscriptis.model.css.CssParse.attr_style reads them)."""
    if not style:
        return True
    for directive in style.lower().split(";"):
        if ":" not in directive:
            continue
        key = directive.split(":", 1)[0].strip().replace("-webkit-", "").replace("-", "_")
        if key in _TEXT_STYLES:
            return False
    return True


def _flatten_tables(tree: HtmlElement) -> None:
    """Replace every table by one line per row, innermost tables first.

    A row of short cells becomes ``cell<TAB>cell``: a label and its value stay together (also
    when the label wraps inside its cell), and a pasted spreadsheet keeps its columns (empty
    cells included, when some row has more than two). A row holding one cell, or a long one
    (layout tables around a whole mail or a signature), becomes its lines one after the other,
    never two columns interleaved side by side.
    """
    for table in reversed(list(tree.iter("table"))):
        parent = table.getparent()
        if parent is None:
            continue
        rows = [
            [_cell_lines(c) for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]
            for row in table.iter("tr")
        ]
        positional = any(sum(1 for lines in row if lines) > 2 for row in rows)
        block = table.makeelement("div", {})
        for caption in table.iter("caption"):
            for line in _cell_lines(caption):
                _add_line(block, line)
        for row in rows:
            filled = [lines for lines in row if lines]
            if len(filled) >= 2 and all(len(" ".join(lines)) <= _SHORT_CELL for lines in filled):
                values = [" ".join(lines) for lines in row]
                while values and not values[-1]:
                    values.pop()
                while values and not values[0]:
                    values.pop(0)
                if not positional:
                    values = [v for v in values if v]  # spacer cells between label and value
                _add_line(block, _TAB.join(values))
            else:
                for lines in row:
                    for line in lines:
                        _add_line(block, line)
        block.tail = table.tail
        parent.replace(table, block)


def _add_line(block: HtmlElement, line: str) -> None:
    div = block.makeelement("div", {})
    div.text = line
    block.append(div)


def _strip_tags(html: str) -> str:
    html = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
    html = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)\s*>", "\n", html)
    html = re.sub(r"(?i)</t[dh]\s*>", "\t", html)
    return html_lib.unescape(re.sub(r"<[^>]*>", "", html))


def _tidy(text: str) -> str:
    """Spaces made plain, trailing blanks gone, at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    text = text.translate(_ZERO_WIDTH)
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


# --- Quoted history -----------------------------------------------------------------------------

# mailparser_reply knows Outlook's "De:/Enviado:" and "From:/Sent:" header blocks, "On ... wrote:"
# and "-----Original Message-----"; we take its pattern and add what it misses below.
_REPLY_HEADERS = EmailMessage(text="", languages=["es", "en"]).HEADER_REGEX

_HEADER_NAMES = (
    r"de|from|enviado(?: el)?|sent|fecha|date|para|to|asunto|subject|cc|cco|bcc|"
    r"responder a|reply-to|importancia|importance|datum|von|an|betreff|gesendet|"
    r"message-id|id del mensaje"
)
_HEADER_LINE = re.compile(rf"^[*_ ]*(?:{_HEADER_NAMES})[*_ ]*:", re.IGNORECASE)
_FROM_LINE = re.compile(r"^[*_ ]*(?:de|from|von)[*_ ]*:[*_ ]*\S", re.IGNORECASE)
_DATE_LINE = re.compile(
    r"^[*_ ]*(?:enviado(?: el)?|sent|fecha|date|datum|gesendet)[*_ ]*:", re.IGNORECASE
)

_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(?:mensaje original|original message|mensagem original|message d'origine|"
    r"urspr[üu]ngliche nachricht)\s*-{2,}$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^(?:-{2,}\s*(?:forwarded message|mensaje reenviado|forwarded message follows|"
    r"mensaje reenviado original|mensagem encaminhada)\s*-{2,}"
    r"|(?:begin forwarded message|inicio del mensaje reenviado|comienza el mensaje reenviado|"
    r"mensaje reenviado)\s*:)$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^_{10,}$")
_ATTRIBUTION_END = re.compile(
    r"(?:escribi[óo]|wrote|a [ée]crit|schrieb|escreveu|ha scritto)\s*:\s*$", re.IGNORECASE
)
_ATTRIBUTION_START = re.compile(r"^(?:el|on|en|le|am|em|il)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """A stretch of a body: what the sender wrote (no `headers`), or a mail forwarded inline
    with the header lines it came under ("De: ...", "Enviado: ...", "Asunto: ...").

    Who wrote a forwarded mail is in its headers, so a reader can leave out the forwarded
    mails that are not the customer's (our own answers sent back to us).
    """

    headers: tuple[str, ...]
    text: str
    # How the forward was marked: "marker" (a line such as Gmail's "---------- Mensaje
    # reenviado ---------", named by `client` when the rules know it) or "header_block"
    # (Outlook's De:/Enviado el: block under a forward subject); "" for the sender's own text.
    how: str = ""
    client: str = ""

    @property
    def from_lines(self) -> tuple[str, ...]:
        """The header lines that name the forwarded mail's sender."""
        return tuple(h for h in self.headers if _FROM_LINE.match(h))


# Names the client of a forward marker line (rules/reading.toml), or None for another line.
MarkerReader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Scan:
    """A body cut into what the sender wrote and the mails forwarded inline (`parts`), and
    whether quoted history (a reply's) was left out: what tells a forward from a reply."""

    parts: tuple[Part, ...]
    history: bool


def strip_quoted(text: str, *, forwarded: bool = False, markers: MarkerReader | None = None,
                 ) -> str:
    """Keep only what the sender wrote in this mail, never the quoted history.

    Removes ``>``-quoted lines wherever they are (top or bottom posting), and cuts the text at
    the first history marker: an Outlook header block (``De:/Enviado:/Para:/Asunto:``, also
    ``From:/Sent:`` and ``*De:*``), ``-----Mensaje original-----``, or an attribution line
    such as Gmail's ``El lun, 3 oct 2022 a las 10:00, Fulano (<x@y>) escribió:`` (even when it
    wraps). A forwarded message (``---------- Forwarded message ---------``, Apple's ``Inicio
    del mensaje reenviado:``) is content, not history: only its header block goes. With
    ``forwarded=True`` (the subject says RV:/Fwd:) the first Outlook header block is also taken
    as a forward, since Outlook writes forwards and replies alike.

    Signatures are left alone: a signature often holds "Correo: x@y" that a request needs.
    iOS and Apple Mail quote the forwarded text with ``>``: under a forward marker that quote
    is the forwarded mail, read one level unquoted. `markers` names the marker lines the rules
    add (rules/reading.toml) beside the built-in ones.
    """
    if not text:
        return ""
    lines, drop, cut, _, _ = _scan_quoted(text, forwarded, markers)
    return _kept_text(lines, range(cut), drop)


def split_quoted(text: str, *, forwarded: bool = False, markers: MarkerReader | None = None,
                 ) -> list[Part]:
    """`strip_quoted`'s text in parts: what the sender wrote, then each mail forwarded inline
    with its header lines. The same lines are kept as `strip_quoted` keeps."""
    return list(scan_quoted(text, forwarded=forwarded, markers=markers).parts)


def scan_quoted(text: str, *, forwarded: bool = False, markers: MarkerReader | None = None,
                ) -> Scan:
    """`split_quoted`'s parts, and whether quoted history was left out (see `Scan`)."""
    if not text:
        return Scan((Part((), ""),), False)
    lines, drop, cut, starts, history = _scan_quoted(text, forwarded, markers)
    ends = [start.line for start in starts[1:]] + [cut]
    return Scan(tuple(Part(start.headers, _kept_text(lines, range(start.line, end), drop),
                           start.how, start.client)
                      for start, end in zip(starts, ends, strict=True)), history)


@dataclass(frozen=True)
class _Start:
    line: int
    headers: tuple[str, ...]
    how: str = ""
    client: str = ""


def _kept_text(lines: list[str], numbers: range, drop: set[int]) -> str:
    kept = [lines[n].rstrip() for n in numbers if n not in drop]
    return _tidy("\n".join(kept)).strip("\n")


def _scan_quoted(text: str, forwarded: bool, markers: MarkerReader | None = None,
                 ) -> tuple[list[str], set[int], int, list[_Start], bool]:
    """(lines, lines to drop, where the history begins, where each forwarded mail starts with
    its header lines, whether quoted history was dropped); see `strip_quoted`."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    bare = [_bare(line) for line in lines]
    drop: set[int] = set()
    cut = len(lines)
    starts: list[_Start] = [_Start(0, ())]
    forward_used = not forwarded
    history = False
    reply_starts = _ReplyStarts(list(bare))  # of the lines as written, before any unquoting

    i = 0
    while i < cut:
        line = bare[i]
        if not line:
            i += 1
            continue
        if line.startswith(">"):
            drop.add(i)
            history = True
            i += 1
            continue
        client = _forward_client(line, markers)
        if client is not None:
            drop.add(i)
            _unquote_forwarded(lines, bare, i + 1)
            start, i = i, _drop_header_block(bare, i + 1, drop)
            starts.append(_Start(start, _headers_between(bare, start + 1, i), "marker", client))
            continue
        if _opens_header_block(bare, i, reply_starts):
            if not forward_used:
                forward_used = True
                start, i = i, _drop_header_block(bare, i, drop)
                starts.append(_Start(start, _headers_between(bare, start, i), "header_block"))
                continue
            cut = i
            history = True
            break
        attribution = _attribution(bare, i)
        if attribution is not None:
            start, end = attribution
            history = True
            if _next_content_is_quoted(bare, end + 1):
                drop.update(range(start, end + 1))  # bottom or inline posting: keep going
                i = end + 1
                continue
            cut = start
            break
        i += 1
    return lines, drop, cut, starts, history


def _forward_client(line: str, markers: MarkerReader | None) -> str | None:
    """The client a forward marker line names ("" when only the built-in pattern knows it),
    or None when the line is no forward marker."""
    if markers is not None:
        client = markers(line)
        if client is not None:
            return client
    return "" if _FORWARD_MARKER.match(line) else None


def _unquote_forwarded(lines: list[str], bare: list[str], start: int) -> None:
    """Under a forward marker, iOS and Apple Mail ``>``-quote the forwarded mail: take one
    level of quoting off that run of lines (a quote inside it stays quoted: its history)."""
    nxt = _next_nonblank(bare, start)
    if nxt is None or not bare[nxt].startswith(">"):
        return
    for n in range(start, len(bare)):
        if bare[n] and not bare[n].startswith(">"):
            break
        if bare[n]:
            unquoted = lines[n].lstrip(" \t\xa0")[1:]
            lines[n] = unquoted[1:] if unquoted.startswith(" ") else unquoted
            bare[n] = _bare(lines[n])


def _headers_between(bare: list[str], start: int, end: int) -> tuple[str, ...]:
    return tuple(line for line in bare[start:end] if _HEADER_LINE.match(line))


def _bare(line: str) -> str:
    if line.isascii():
        return line.strip()  # no no-break space, no zero-width character: most lines
    return line.replace("\xa0", " ").translate(_ZERO_WIDTH).strip()


def _reply_header_starts(joined: str) -> set[int]:
    """Line numbers where mailparser_reply sees an Outlook-style header block begin."""
    starts: set[int] = set()
    for match in _REPLY_HEADERS.finditer(joined):
        found = match.group(0)
        if found.strip():
            offset = match.start() + len(found) - len(found.lstrip("\n"))
            starts.add(joined.count("\n", 0, offset))
    return starts


class _ReplyStarts:
    """`_reply_header_starts` of a body's lines, found the first time a header block needs
    it: most bodies have no "De:" line with a date under it, and the expression runs over
    the whole body."""

    def __init__(self, bare: list[str]) -> None:
        self._bare: list[str] | None = bare
        self._starts: set[int] = set()

    def __contains__(self, number: object) -> bool:
        if self._bare is not None:
            self._starts = _reply_header_starts("\n".join(line[:500] for line in self._bare))
            self._bare = None
        return number in self._starts


def _opens_header_block(bare: list[str], i: int, reply_starts: _ReplyStarts) -> bool:
    """Whether line i starts the header block of a quoted mail (Outlook's way of quoting).

    The block must name a sender and a date: a memo-style "De: ... / Para: ... / Asunto: ..."
    that a customer types above a request has no date, and is kept.
    """
    line = bare[i]
    if _ORIGINAL_MESSAGE.match(line):
        return True
    if _UNDERSCORES.match(line):
        # Outlook's rule above the header block; alone it is just a signature separator.
        nxt = _next_nonblank(bare, i + 1)
        if nxt is None or not _FROM_LINE.match(bare[nxt]):
            return False
        return len(_header_block(bare, nxt)) >= 2
    if not _FROM_LINE.match(line):
        return False
    block = _header_block(bare, i)
    if not any(_DATE_LINE.match(h) for h in block):
        return False
    return len(block) >= 3 or (len(block) >= 2 and i in reply_starts)


def _header_block(bare: list[str], start: int) -> list[str]:
    """The header lines from `start` on (blank lines between them allowed)."""
    block: list[str] = []
    for line in bare[start:start + 12]:
        if not line:
            continue
        if not _HEADER_LINE.match(line):
            break
        block.append(line)
    return block


def _drop_header_block(bare: list[str], start: int, drop: set[int]) -> int:
    """Drop a forwarded mail's header lines from `start`; return its first content line."""
    i = start
    while i < len(bare):
        line = bare[i]
        if _UNDERSCORES.match(line) or _ORIGINAL_MESSAGE.match(line) or _HEADER_LINE.match(line):
            drop.add(i)
        elif line:
            break
        i += 1
    return i


def _attribution(bare: list[str], i: int) -> tuple[int, int] | None:
    """Lines (first, last) of an "El ... escribió:" / "On ... wrote:" starting at line i.

    Gmail wraps the line at 78 characters, so it may end one or two lines further down; it
    starts at the nearest line above its end that begins like one ("El", "On", "En"...).
    """
    for end in range(i, min(i + 3, len(bare))):
        if not bare[end]:
            return None
        if end > i and _ATTRIBUTION_START.match(bare[end]):
            return None  # a nearer start: the attribution begins there, not at line i
        # The expression ends in "escribió:" and blanks: a line that ends otherwise is none.
        if bare[end].rstrip().endswith(":") and _ATTRIBUTION_END.search(bare[end]):
            if end > i and not _ATTRIBUTION_START.match(bare[i]):
                return None
            if len(" ".join(bare[i:end + 1])) > 300:
                return None
            return i, end
    return None


def _next_content_is_quoted(bare: list[str], start: int) -> bool:
    nxt = _next_nonblank(bare, start)
    return nxt is not None and bare[nxt].startswith(">")


def _next_nonblank(bare: list[str], start: int) -> int | None:
    for n in range(start, len(bare)):
        if bare[n]:
            return n
    return None
