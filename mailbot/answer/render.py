"""Reply templates: admins edit them, so they render in a sandbox and fail as one clear line.

Templates live in the templates directory as ``<name>.txt.j2`` (required, the text/plain part)
and ``<name>.html.j2`` (optional, the text/html part). Files starting with ``_`` are partials
and layouts (``_layout.txt.j2``, ``_installation.html.j2``, ...), never rendered on their own.
Everything the HTML part prints is escaped, also through macros imported from ``.txt.j2``
files, and ``|safe`` is for literal markup only (see `mailbot.answer.sandbox.make_environment`).
The sandbox they run in is `mailbot.answer.sandbox`; the filters are `mailbot.answer.filters`;
the data `check()` and `preview()` render is `mailbot.answer.samples`, built from the rules.

The context contract
====================
This is the single source of truth for what the pipeline passes to a template (it is built by
``mailbot.answer.plan.base_context`` and ``mailbot.ruleset.Installation.offer``).
Dates are ``datetime.date`` values; money amounts are numbers (MXN, before tax); templates
format them with the ``money`` and ``date_es`` filters.

Every customer reply receives:

- ``reference``: str, the request reference, e.g. ``"CLV-000042"``; quoted in every reply.
- ``kind_title``: str, the kind's title from rules/kinds.toml, e.g.
  ``"Claves para actualización sin costo"``.
- ``original_subject``: str, the subject of the customer's mail (never put in headers here).
- ``requester``: ``{email: str, name: str | None}``, who wrote to us; ``name`` may be empty.
- ``today``: date, the run's date (tests and previews inject it).
- ``target_version``: str, e.g. ``"2012"``.
- ``phone``: str, the support phone from the rules.
- ``eligible_from``: date, first purchase date eligible for the free update.
- ``bot_name``: str, the configured bot name ([mailbot] from_name), used in the sign-off.
- ``rows``: list of the requests this message is about (may be empty), each::

      {serial: str, system: str, company: str, contact_name: str, contact_email: str,
       outcome: "issued" | "not_eligible" | "review" | "pending",
       key: str | None,               # only set when this message may show the key
       recipient_masked: str | None,  # where the keys went, masked
       redirected: bool,              # keys went to the registered address, not the requester
       source: str,                   # "body" or "attachment:<file>:row <n>"
       reasons: list[str],            # for operators; customer templates do not show them
       purchase_date: date | None,
       installation: dict | None}     # set for issued and pending rows

  ``installation``::

      {has_support: bool, support_until: date | None, phone: str, currency: str,
       tax_note: str, multi_system_note: str, january: bool,
       policies: [{name: str, price: number, discount_percent: int,
                   discounted_price: number | None}],   # discount only set in January
       per_event: [{label: str, price: number}],
       above_max_label: str, above_max_text: str,
       users: int | None,
       suggested_per_event: str | None}  # label of the matching per_event row, or
                                         # above_max_label when users exceed every row

- ``problems``: list of what kept requests out, each
  ``{code: str, field: str | None, field_label: str | None, source: str | None,
  detail: str}``; codes: missing_field, invalid_serial, unknown_system, invalid_email,
  unreadable_attachment, unsupported_attachment, no_request_data (others get a generic line).
  ``detail`` is operator-facing text and is not shown to customers.

The seed's example request is part of the templates (``_example.*.j2``), not of the context.

Templates and which rows they show:

- ``keys_issued``: issued rows with their keys, plus the installation section. Sent to the
  address the keys belong to; a row with ``redirected`` true adds a note that someone else
  asked for these keys.
- ``results``: one line per row with its outcome (keys only where ``key`` is set), the
  installation section for the rows that have one, and the problems.
- ``results_summary``: a message about more than [answers] rows_in_text requests
  (rules/free_update.toml), whatever their outcomes: counts, what to do, and the attached
  results spreadsheet, never one block per row. It receives ``attachment`` (str, the
  spreadsheet's file name; every reply receives it, None without a spreadsheet) and
  ``summary``, built by ``mailbot.answer.plan.summary``::

      {total: int, outcomes: [{outcome: str, label: str, count: int}],  # label: [answers]
       counts: {issued: int, not_eligible: int, review: int, pending: int},
       keys: int,                   # rows whose key this message carries (in the sheet)
       redirected: int,             # issued rows whose key went to the registered address
       to_registered_contact: bool, # the keys of someone else's request, to their contact
       with_support: int, without_support: int,   # rows with an installation section
       installation: dict | None}   # one of those rows' ``installation``
- ``missing_data``: the problems, how to write the request, the example, the spreadsheet option.
- ``not_eligible``, ``under_review`` (rows may be empty), ``pending_keys``,
  ``keys_redirected`` (where the keys went, masked; never the keys).
- ``operator_alert`` (to operators): ``alerts: [{title, detail, reference | None}]``,
  ``bot_name``, ``today``.

Every customer reply also receives ``identify_help``: str, how to find the serial and its
modality (rules/unlock.toml; "" without unlock rules). The unlock replies (``unlocked``,
``unlock_review``, ``documents_needed``, ``documents_received``, ``unlock_rejected``) receive
``unlock`` (built by ``mailbot.answer.plan.unlock_context``; a fact that does not apply is None)::

      {serial: str, system: str, outcome: "unlocked" | "review" | "documents_needed" | ...,
       modality: "suscripcion" | "electronico" | "fisico" | None, modality_label: str | None,
       number: int | None, number_text: str | None,      # 2, "segundo"
       minutes_text: str | None,   # "inmediato o puede demorar de 10 a 15 minutos"
       hours_text: str | None,     # "de 24 a 48 horas hábiles"
       window_text: str | None,    # "entre el martes 1 de ... 14:00 h y el ... (hora del ...)"
       window_start_text, window_end_text, due_text: str | None,  # one moment each
       documents_required: str | None, document_types_text: str | None,  # "PDF, JPG o PNG"
       documents: list[str], ignored_documents: list[str],  # attached file names
       review_reason: str | None,  # policy, documents_to_check, other_requester, ...
       repeat: bool,               # a repetition of an unlock already approved / in review
       approved_by: str | None}    # the operator, when an operator approved it

``unlock_missing_data`` is ``missing_data`` for unlocks. The rejection templates an operator
picks (``review_rejected``, ``unlock_rejected``) also receive ``note``: str, the operator's
words to the customer; ``kind_title`` is "" when the mail was no request at all.

Filters: ``money`` (2500 -> "$2,500.00"), ``date_es`` (date -> "5 de enero de 2026";
``weekday=true`` prefixes the day name), ``datetime_es`` ("lunes 5 de enero de 2026 a las
10:30"), ``mask_email``, ``source_es`` ("attachment:x.xlsx:row 3" -> "archivo x.xlsx, fila 3"),
``pad(width)`` (left-justify, for text tables).

Templates are compiled once and kept (no file is looked at while a pass renders): a template an
admin edits is picked up by the next pass, which calls `Renderer.refresh()` first.

The text part is tidied after rendering (``tidy_text``): runs of blank lines collapse and lines
over 76 characters wrap with a hanging indent, so templates can keep one paragraph per line.

Adding a template (e.g. the unlock replies): write ``<name>.txt.j2`` (and ``.html.j2``),
extending ``_layout.*.j2``, and register sample contexts in ``mailbot.answer.samples.SAMPLES``
so that ``check()`` covers its branches. Templates without registered samples are checked with
the common keys above.
"""

from __future__ import annotations

import functools
import os
import re
import textwrap
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SecurityError

from mailbot.answer.filters import FILTERS
from mailbot.answer.parts import missing_html_parts
from mailbot.answer.samples import sample_contexts
from mailbot.answer.sandbox import LimitExceeded, limits, make_environment
from mailbot.errors import TemplateError
from mailbot.ruleset import Ruleset

TEXT_SUFFIX = ".txt.j2"
HTML_SUFFIX = ".html.j2"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class Rendered:
    """The two bodies of one mail; `html` is None when the template has no HTML part."""

    text: str
    html: str | None


class Renderer:
    """Renders `templates/<name>.txt.j2` (+ `.html.j2`) into a Rendered, or one-line errors."""

    def __init__(self, templates_dir: Path, *, max_output: int = 500_000,
                 max_steps: int = 200_000, time_limit: float = 5.0) -> None:
        self.templates_dir = Path(templates_dir)
        self.max_output = max_output
        self.max_steps = max_steps
        self.time_limit = time_limit
        self._text_env = make_environment(self.templates_dir, FILTERS, html=False)
        self._html_env = make_environment(self.templates_dir, FILTERS, html=True)
        self._stamp: tuple[tuple[str, int, int], ...] | None = None  # the files, last refresh
        self._files: frozenset[str] | None = None  # their names; None: no directory

    def refresh(self) -> bool:
        """Pick up the templates as they are on disk now (the pipeline calls it before each
        pass): when a file was added, removed or changed since the last refresh, every
        compiled template is dropped and compiled again when next used. True if so.

        Between refreshes a render looks at no file: the environments do not check each
        template's modification time on every use (auto_reload is off), and which files exist
        is known from the last refresh."""
        stamp = _stamp(self.templates_dir)
        if self._files is not None and stamp == self._stamp:
            return False
        self._stamp = stamp
        self._files = (frozenset(name for name, _, _ in stamp) if stamp is not None
                       else None)
        self._text_env.cache.clear()  # type: ignore[union-attr]
        self._html_env.cache.clear()  # type: ignore[union-attr]
        return True

    def names(self) -> list[str]:
        """Public templates: every `<name>.txt.j2` not starting with "_"."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(p.name[: -len(TEXT_SUFFIX)] for p in self.templates_dir.iterdir()
                      if p.name.endswith(TEXT_SUFFIX) and not p.name.startswith("_")
                      and p.is_file())

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        if not isinstance(name, str) or not _NAME.match(name) or name.startswith("_"):
            raise TemplateError(f"{self.templates_dir}: {name!r} is not a template name "
                                f"(letters, digits, '_' and '-', not starting with '_')")
        if self._stamp is None:
            self.refresh()  # the first render: see which files there are
        files = self._files
        if files is None:
            raise TemplateError(f"{self.templates_dir}: templates directory not found")
        text_file = name + TEXT_SUFFIX
        html_file = name + HTML_SUFFIX
        if text_file not in files:
            raise TemplateError(f"{self.templates_dir / text_file}: template not found")
        text = tidy_text(self._render_file(self._text_env, text_file, context))
        html = None
        if html_file in files:
            html = self._render_file(self._html_env, html_file, context)
        return Rendered(text=text, html=html)

    def check(self, rules: Ruleset) -> list[str]:
        """Render every public template with every sample context built from `rules`; return
        the error lines (a template must work with the prices and texts the admin set)."""
        if not self.templates_dir.is_dir():
            return [f"{self.templates_dir}: templates directory not found"]
        self.refresh()  # check the files as they are now
        errors: list[str] = missing_html_parts(self.templates_dir)
        broken: set[str] = set()
        for path in sorted(self.templates_dir.iterdir()):
            if not path.is_file() or not path.name.endswith(".j2"):
                continue
            if path.name.endswith(HTML_SUFFIX) and not path.name.startswith("_"):
                text_part = path.name[: -len(HTML_SUFFIX)] + TEXT_SUFFIX
                if not (self.templates_dir / text_part).is_file():
                    errors.append(f"{path}: HTML part without a text part ({text_part})")
            env = self._html_env if path.name.endswith(HTML_SUFFIX) else self._text_env
            try:  # syntax errors, also in partials that no template includes
                env.get_template(path.name)
            except Exception as exc:  # reported as a line
                errors.append(self._describe(exc, path.name))
                broken.add(path.name)
        seen: set[str] = set()
        for name in self.names():
            if {name + TEXT_SUFFIX, name + HTML_SUFFIX} & broken:
                continue
            for label, context in sample_contexts(name, rules).items():
                try:
                    self.render(name, context)
                except TemplateError as exc:
                    if str(exc) not in seen:  # one line per error, not one per sample
                        seen.add(str(exc))
                        errors.append(f"{exc} [sample: {label}]")
        return _unique(errors)

    # ----------------------------------------------------------------------------------------

    def _render_file(self, env: jinja2.Environment, file: str,
                     context: Mapping[str, Any]) -> str:
        """`env` is the part's (`make_environment`): the HTML part escapes every file it uses."""
        max_output = self.max_output
        with limits(time_limit=self.time_limit, max_steps=self.max_steps,
                    max_value=max_output):
            try:
                template = env.get_template(file)
                chunks: list[str] = []
                append = chunks.append
                size = 0
                try:  # jinja's Template.generate, without its generator around every chunk
                    for chunk in template.root_render_func(template.new_context(dict(context))):
                        size += len(chunk)
                        if size > max_output:
                            raise LimitExceeded(f"output larger than {max_output} characters")
                        append(chunk)
                except Exception:
                    env.handle_exception()  # raises it again, with the templates' lines
                return "".join(chunks)
            except TemplateError:
                raise
            except Exception as exc:  # every failure becomes one line
                raise TemplateError(self._describe(exc, file)) from None

    def _describe(self, exc: BaseException, file: str) -> str:
        """One line: the file, the line if known, the problem."""
        where_file, line = file, None
        if isinstance(exc, jinja2.TemplateSyntaxError):
            where_file = self._relative(exc.filename) or exc.name or file
            line = exc.lineno
            problem = f"syntax error: {exc.message}"
        else:
            for frame in traceback.extract_tb(exc.__traceback__):
                rel = self._relative(frame.filename)
                if rel is not None:
                    where_file, line = rel, frame.lineno
            if isinstance(exc, jinja2.TemplateNotFound):
                problem = f"included template {exc.name!r} not found"
            elif isinstance(exc, jinja2.UndefinedError):
                problem = f"undefined: {exc.message}"
            elif isinstance(exc, LimitExceeded):
                problem = f"limit exceeded: {exc}"
            elif isinstance(exc, SecurityError):
                problem = f"not allowed in templates: {exc}"
            elif isinstance(exc, RecursionError):
                problem = "recursion too deep"
            elif isinstance(exc, MemoryError):
                problem = "out of memory"
            else:
                problem = f"{type(exc).__name__}: {exc}"
        location = str(self.templates_dir / where_file)
        if line:
            location += f", line {line}"
        if where_file != file:
            location += f" (included from {file})"
        return _one_line(f"{location}: {problem}")

    def _relative(self, filename: str | None) -> str | None:
        if not filename or not filename.endswith(".j2"):
            return None
        try:
            return str(Path(filename).resolve().relative_to(self.templates_dir.resolve()))
        except ValueError:
            return None


def _stamp(directory: Path) -> tuple[tuple[str, int, int], ...] | None:
    """(name, mtime in ns, size) of every file under `directory`, by name; None when it is no
    directory. A few dozen stat calls: cheap once per pass, not on every render."""
    if not directory.is_dir():
        return None
    out = []
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:  # removed meanwhile
                continue
            out.append((os.path.relpath(path, directory).replace(os.sep, "/"),
                        st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


_LIST_MARK = re.compile(r"\s*(?:[-*•]|\d+\.)\s+")
_COLUMN = re.compile(r"\s*\S.*?\S {2,}(?=\S)")  # "   Semestral   $4,000.00": align under the value


def tidy_text(text: str, width: int = 76) -> str:
    """Blank-line runs collapsed, long lines wrapped with a hanging indent: templates stay
    readable for admins while the text part reads well in any mail client."""
    out: list[str] = []
    for line in text.splitlines():
        line = line if line == "-- " else line.rstrip()  # keep the signature separator
        if not line and (not out or not out[-1]):
            continue
        if len(line) <= width:
            out.append(line)
            continue
        out.extend(_wrapped(line, width))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=2048)  # the same boilerplate paragraphs come in every reply
def _wrapped(line: str, width: int) -> tuple[str, ...]:
    """One long line wrapped with a hanging indent (under its list mark or column)."""
    mark = _LIST_MARK.match(line) or _COLUMN.match(line)
    indent = line[: len(line) - len(line.lstrip())]
    hanging = " " * len(mark.group(0)) if mark else indent
    return tuple(textwrap.wrap(_munged(line.strip()), width=width, initial_indent=indent,
                               subsequent_indent=hanging, break_long_words=False,
                               break_on_hyphens=False, expand_tabs=False,
                               replace_whitespace=False))


_WRAP_WHITESPACE = "\t\n\x0b\x0c\r "  # textwrap's, which it turns into spaces
_TO_SPACES = str.maketrans(_WRAP_WHITESPACE, " " * len(_WRAP_WHITESPACE))
_OTHER_WHITESPACE = re.compile("[\n\x0b\x0c\r]")


def _munged(text: str) -> str:
    """TextWrapper._munge_whitespace (tabs expanded, whitespace made spaces), skipping its
    str.translate when there is nothing to translate, as in a line from splitlines(): that
    translate (a dict lookup per character) was a quarter of wrapping a line."""
    text = text.expandtabs()
    return text.translate(_TO_SPACES) if _OTHER_WHITESPACE.search(text) else text


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))

