"""Reply templates: admins edit them, so they render in a sandbox and fail as one clear line.

Templates live in the templates directory as ``<name>.txt.j2`` (required, the text/plain part)
and ``<name>.html.j2`` (optional, the text/html part). Files starting with ``_`` are partials
and layouts (``_layout.txt.j2``, ``_installation.html.j2``, ...), never rendered on their own.
This is the only module that imports jinja2.

The context contract
====================
This is the single source of truth for what the pipeline passes to a template (it is built by
``mailbot.answer.plan.base_context`` and ``mailbot.decide.free_update.installation_offer``). Dates are
``datetime.date`` values; money amounts are numbers (MXN, before tax); templates format them
with the ``money`` and ``date_es`` filters.

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

      {serial: str, system: str, company: str, contact_name: str,
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

The text part is tidied after rendering (``tidy_text``): runs of blank lines collapse and lines
over 76 characters wrap with a hanging indent, so templates can keep one paragraph per line.

Adding a template (e.g. the unlock replies): write ``<name>.txt.j2`` (and ``.html.j2``),
extending ``_layout.*.j2``, and register sample contexts in ``SAMPLES`` so that
``check()`` covers its branches. Templates without registered samples are checked with the
common keys above.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import operator
import re
import string
import textwrap
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from mailbot.errors import TemplateError

TEXT_SUFFIX = ".txt.j2"
HTML_SUFFIX = ".html.j2"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class Rendered:
    """The two bodies of one mail; `html` is None when the template has no HTML part."""

    text: str
    html: str | None


# --------------------------------------------------------------------------------------------
# Filters (plain functions, usable outside templates too)

_MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre")
_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


def money(value: Any) -> str:
    """2500 -> "$2,500.00": the seed's notation for pesos."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"money: expected a number, got {value!r}")
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def date_es(value: Any, weekday: bool = False) -> str:
    """2026-01-05 -> "5 de enero de 2026" (with weekday: "lunes 5 de enero de 2026")."""
    if not isinstance(value, dt.date):
        raise TypeError(f"date_es: expected a date, got {value!r}")
    text = f"{value.day} de {_MONTHS[value.month - 1]} de {value.year}"
    return f"{_WEEKDAYS[value.weekday()]} {text}" if weekday else text


def datetime_es(value: Any, weekday: bool = True) -> str:
    """2026-01-05 10:30 -> "lunes 5 de enero de 2026 a las 10:30" (for due times, windows)."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"datetime_es: expected a date and time, got {value!r}")
    article = "a la" if value.hour == 1 else "a las"
    return f"{date_es(value, weekday)} {article} {value.hour}:{value.minute:02d}"


_SECOND_LEVEL = {"com", "org", "net", "gob", "gov", "edu", "ac", "co", "mil", "nom", "int"}


def mask_email(value: Any) -> str:
    """rgonzalez@empresamuestra.com.mx -> rg*******@em***.com.mx: recognisable, not harvestable."""
    if value is None:
        return ""
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, ""
    keep = 1 if len(local) <= 3 else 2
    masked = local[:keep] + "*" * max(len(local) - keep, 1)
    if not domain:
        return masked
    labels = domain.split(".")
    suffix_len = 2 if len(labels) >= 3 and labels[-2].lower() in _SECOND_LEVEL else 1
    if len(labels) <= suffix_len:
        return f"{masked}@{labels[0][:2]}***"
    suffix = ".".join(labels[-suffix_len:])
    return f"{masked}@{labels[0][:2]}***.{suffix}"


_ATTACHMENT_SOURCE = re.compile(r"attachment:(?P<file>.*?)(?::row (?P<row>\d+))?\Z")


def source_es(value: Any) -> str:
    """Where a request was read, for the customer: "cuerpo del correo", "archivo x.xlsx, fila 3"."""
    if value is None or value == "":
        return ""
    text = str(value)
    if text == "body":
        return "cuerpo del correo"
    if text == "message":
        return "tu correo"
    match = _ATTACHMENT_SOURCE.match(text)
    if match:
        where = f"archivo {match['file']}" if match["file"] else "archivo adjunto"
        return f"{where}, fila {match['row']}" if match["row"] else where
    return "tu correo"  # "message", internal step names: nothing a customer should read


def pad(value: Any, width: int = 0) -> str:
    """Left-justify for plain-text tables (width capped: a template cannot blow up memory)."""
    return str(value).ljust(min(int(width), 200))


# --------------------------------------------------------------------------------------------
# The sandbox, with limits on time, loop steps and the size of values and output


class _LimitExceeded(SecurityError):
    """A template ran too long or built too large a value."""


@dataclass
class _Budget:
    deadline: float
    steps_left: int
    max_value: int

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise _LimitExceeded("template loops too long (too many steps)")
        if time.monotonic() > self.deadline:
            raise _LimitExceeded("template takes too long to render")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("mailbot_render_budget",
                                                                         default=None)


def _check_size(value: Any) -> Any:
    budget = _budget.get()
    if budget is not None and isinstance(value, (str, list, tuple)) \
            and len(value) > budget.max_value:
        raise _LimitExceeded(f"template builds a value of more than {budget.max_value} characters")
    return value


def _step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step()


def _guarded_iter(iterable: Any) -> Iterable[Any]:
    """Every `for` loop in a template iterates through this: one step per item."""
    for item in iterable:
        _step()
        yield item


@jinja2.pass_eval_context
def _guarded_concat(eval_ctx: Any, parts: list[Any]) -> str:
    """The `~` operator, with the result's size checked before it is built."""
    budget = _budget.get()
    strings = [p if isinstance(p, str) else str(p) for p in parts]
    if budget is not None and sum(len(s) for s in strings) > budget.max_value:
        raise _LimitExceeded(f"template builds a value of more than {budget.max_value} characters")
    if eval_ctx.autoescape and any(hasattr(p, "__html__") for p in parts):
        return Markup("").join(parts)  # as jinja's markup_join: escape the plain parts
    return "".join(strings)


_MAX_WIDTH = 1000
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*" or (number and int(number) > _MAX_WIDTH):
                raise _LimitExceeded(f"format width or precision too large in {match.group(0)!r}")


def _check_brace_format(fmt: str) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises its own error
    for _, _, spec, _ in parsed:
        if spec and ("{" in spec or any(int(n) > _MAX_WIDTH for n in re.findall(r"\d+", spec))):
            raise _LimitExceeded(f"format width or precision too large in {spec!r}")


_PADDING_METHODS = {"ljust", "rjust", "center", "zfill"}


def _precheck_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """Refuse str methods that would allocate far more than their input before they run."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    wrapped = getattr(method, "__wrapped__", None)
    if wrapped is not None and isinstance(getattr(wrapped, "__self__", None), str) \
            and name in ("format", "format_map"):
        _check_brace_format(wrapped.__self__)
        return
    if not isinstance(owner, str):
        return
    budget = _budget.get()
    limit = budget.max_value if budget else 10**7
    if name in _PADDING_METHODS and args and isinstance(args[0], int) and args[0] > limit:
        raise _LimitExceeded(f"{name}() width too large")
    if name == "expandtabs" and args and isinstance(args[0], int) \
            and owner.count("\t") * args[0] > limit:
        raise _LimitExceeded("expandtabs() result too large")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) \
            and isinstance(args[1], str):
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        if len(owner) + count * max(len(args[1]) - len(args[0]), 0) > limit:
            raise _LimitExceeded("replace() result too large")


def _safe_binop(op: str, left: Any, right: Any) -> Any:
    budget = _budget.get()
    limit = budget.max_value if budget else 10**7
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > limit:
                raise _LimitExceeded("template multiplies a value beyond the size limit")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 \
                and max(abs(left).bit_length(), 1) * right > 4096:
            raise _LimitExceeded("template computes too large a power")
    elif op == "%":
        if isinstance(left, str):
            _check_percent_format(left)
    elif op == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                and len(left) + len(right) > limit:
            raise _LimitExceeded("template builds a value beyond the size limit")
    return _check_size(_BINOPS[op](left, right))


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "**": operator.pow, "%": operator.mod,
}


def _size_checked(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so that what it returns is size-checked (keeps jinja's pass_* marks)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _step()
        return _check_size(func(*args, **kwargs))
    return wrapper


def _capped_width(func: Callable[..., Any], position: int, keyword: str) -> Callable[..., Any]:
    """Refuse a width-like argument that would make the filter allocate without bound."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        width = args[position] if len(args) > position else kwargs.get(keyword)
        if isinstance(width, int) and width > _MAX_WIDTH:
            raise _LimitExceeded(f"{keyword} {width} too large")
        return func(*args, **kwargs)
    return wrapper


def _join_checked(func: Callable[..., Any]) -> Callable[..., Any]:
    """`join` of many references to one big string would allocate before any post-check."""
    @functools.wraps(func)
    def wrapper(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        if isinstance(value, (list, tuple)) and attribute is None:
            budget = _budget.get()
            limit = budget.max_value if budget else 10**7
            total = len(str(d)) * max(len(value) - 1, 0)
            for item in value:
                total += len(item) if isinstance(item, str) else 20
                if total > limit:
                    raise _LimitExceeded("join() result too large")
        return func(eval_ctx, value, d, attribute)
    return wrapper


def _undefined_fails(func: Callable[..., Any]) -> Callable[..., Any]:
    """Our filters report an undefined input as "'x' is undefined", not as a type error."""
    @functools.wraps(func)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return func(value, *args, **kwargs)
    return wrapper


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    text = str(value)
    _check_percent_format(text)
    return text % (kwargs or args)


class _GuardLoops(NodeTransformer):
    """Route every `for` loop and every `~` through the budgeted filters above."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_mailbot_iter", [], [], None, None,
                                 lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(list(node.nodes), lineno=node.lineno), "_mailbot_concat",
                            [], [], None, None, lineno=node.lineno)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox plus step, time and size limits (a hostile or buggy template cannot hang us)."""

    intercepted_binops = frozenset(_BINOPS)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _GuardLoops().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        _step()
        return _safe_binop(op, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _step()
        _precheck_str_method(__obj, args)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def _make_environment(templates_dir: Path) -> _Environment:
    env = _Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir), encoding="utf-8"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            disabled_extensions=(), default_for_string=False,
                                            default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.globals.pop("lipsum", None)  # generates unbounded text; templates have no use for it
    filters = dict(env.filters)
    filters["center"] = _capped_width(filters["center"], 1, "width")
    filters["indent"] = _capped_width(filters["indent"], 1, "width")
    filters["slice"] = _capped_width(filters["slice"], 1, "slices")
    filters["format"] = _format_filter
    filters["join"] = _join_checked(filters["join"])
    ours = dict(money=money, date_es=date_es, datetime_es=datetime_es, mask_email=mask_email,
                source_es=source_es, pad=pad)
    filters.update({name: _undefined_fails(func) for name, func in ours.items()})
    env.filters = {name: _size_checked(func) for name, func in filters.items()}
    env.filters.update(_mailbot_iter=_guarded_iter, _mailbot_concat=_guarded_concat)
    return env


# --------------------------------------------------------------------------------------------
# The renderer


class Renderer:
    """Renders `templates/<name>.txt.j2` (+ `.html.j2`) into a Rendered, or one-line errors."""

    def __init__(self, templates_dir: Path, *, max_output: int = 500_000,
                 max_steps: int = 200_000, time_limit: float = 5.0) -> None:
        self.templates_dir = Path(templates_dir)
        self.max_output = max_output
        self.max_steps = max_steps
        self.time_limit = time_limit
        self._env = _make_environment(self.templates_dir)

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
        if not self.templates_dir.is_dir():
            raise TemplateError(f"{self.templates_dir}: templates directory not found")
        text_file = name + TEXT_SUFFIX
        html_file = name + HTML_SUFFIX
        if not (self.templates_dir / text_file).is_file():
            raise TemplateError(f"{self.templates_dir / text_file}: template not found")
        text = tidy_text(self._render_file(text_file, context))
        html = None
        if (self.templates_dir / html_file).is_file():
            html = self._render_file(html_file, context)
        return Rendered(text=text, html=html)

    def preview(self, name: str, variant: str | None = None, *,
                from_address: str = "claves@example.com",
                from_name: str = "Claves de actualización") -> str:
        """A rendered mail, readable in a terminal (`mailbot templates preview NAME`).

        Uses the sample context `variant` (default: the first one) with the configured bot
        name, so admins see what customers would get.
        """
        from mailbot.answer.message import reply_subject  # stdlib only; keeps the import graph one-way

        variants = sample_contexts(name)
        label = variant if variant is not None else next(iter(variants))
        if label not in variants:
            raise TemplateError(f"{name}: no sample {label!r}; samples: {', '.join(variants)}")
        context = dict(variants[label], bot_name=from_name)
        rendered = self.render(name, context)
        if "reference" in context:
            to = context.get("requester", {}).get("email", "")
            subject = reply_subject(str(context.get("original_subject", "")),
                                    str(context["reference"]))
        else:
            to, subject = "(operadores)", "Avisos para operadores"
        others = [v for v in variants if v != label]
        lines = [f"From: {from_name} <{from_address}>", f"To: {to}", f"Subject: {subject}",
                 f"X-Mailbot-Template: {name}",
                 f"X-Mailbot-Sample: {label}"
                 + (f" (otros: {'; '.join(others)})" if others else ""),
                 "", rendered.text.rstrip("\n")]
        if rendered.html is not None:
            lines += ["", "----- text/html -----", rendered.html.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def check(self) -> list[str]:
        """Render every public template with every sample context; return the error lines."""
        if not self.templates_dir.is_dir():
            return [f"{self.templates_dir}: templates directory not found"]
        errors: list[str] = []
        broken: set[str] = set()
        for path in sorted(self.templates_dir.iterdir()):
            if not path.is_file() or not path.name.endswith(".j2"):
                continue
            if path.name.endswith(HTML_SUFFIX) and not path.name.startswith("_"):
                text_part = path.name[: -len(HTML_SUFFIX)] + TEXT_SUFFIX
                if not (self.templates_dir / text_part).is_file():
                    errors.append(f"{path}: HTML part without a text part ({text_part})")
            try:  # syntax errors, also in partials that no template includes
                self._env.get_template(path.name)
            except Exception as exc:  # noqa: BLE001 - reported as a line
                errors.append(self._describe(exc, path.name))
                broken.add(path.name)
        seen: set[str] = set()
        for name in self.names():
            if {name + TEXT_SUFFIX, name + HTML_SUFFIX} & broken:
                continue
            for label, context in sample_contexts(name).items():
                try:
                    self.render(name, context)
                except TemplateError as exc:
                    if str(exc) not in seen:  # one line per error, not one per sample
                        seen.add(str(exc))
                        errors.append(f"{exc} [sample: {label}]")
        return _unique(errors)

    # ----------------------------------------------------------------------------------------

    def _render_file(self, file: str, context: Mapping[str, Any]) -> str:
        budget = _Budget(deadline=time.monotonic() + self.time_limit, steps_left=self.max_steps,
                         max_value=self.max_output)
        token = _budget.set(budget)
        try:
            template = self._env.get_template(file)
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(dict(context)):
                size += len(chunk)
                if size > self.max_output:
                    raise _LimitExceeded(f"output larger than {self.max_output} characters")
                chunks.append(chunk)
            return "".join(chunks)
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line
            raise TemplateError(self._describe(exc, file)) from None
        finally:
            _budget.reset(token)

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
            elif isinstance(exc, _LimitExceeded):
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
        mark = _LIST_MARK.match(line) or _COLUMN.match(line)
        indent = line[: len(line) - len(line.lstrip())]
        hanging = " " * len(mark.group(0)) if mark else indent
        out.extend(textwrap.wrap(line.strip(), width=width, initial_indent=indent,
                                 subsequent_indent=hanging, break_long_words=False,
                                 break_on_hyphens=False))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


# --------------------------------------------------------------------------------------------
# Sample contexts: realistic data for `check()` and `preview`, following the contract above

SAMPLE_TODAY = dt.date(2026, 3, 10)
SAMPLE_JANUARY = dt.date(2026, 1, 14)

_POLICIES = (("Trimestral", 2500, 0), ("Semestral", 4000, 20), ("Anual", 6500, 20))
_PER_EVENT = (("Sistema de 1 y 2 usuarios", 2, 800), ("Sistema de 5 usuarios", 5, 1200),
              ("Sistema de 10 usuarios", 10, 1900), ("Sistema de 20 usuarios", 20, 2200))
_ABOVE_MAX = ("Mayor a 20 usuarios", "Se cotizará por proyecto.")


def sample_installation(*, has_support: bool, today: dt.date, users: int | None = 2,
                        support_until: dt.date | None = None) -> dict[str, Any]:
    """An installation dict as the pipeline builds it, with the seed's prices."""
    january = today.month == 1
    suggested = None
    if users is not None:
        suggested = next((label for label, top, _ in _PER_EVENT if users <= top), _ABOVE_MAX[0])
    return {
        "has_support": has_support,
        "support_until": support_until if support_until else (
            dt.date(today.year, 12, 31) if has_support else None),
        "phone": "5141-5110",
        "currency": "MXN",
        "tax_note": "más IVA",
        "multi_system_note": "Si tiene más de 1 sistema pregunte por los precios de promoción.",
        "january": january,
        "policies": [{"name": n, "price": p, "discount_percent": pct if january else 0,
                      "discounted_price": round(p * (100 - pct) / 100) if january and pct else None}
                     for n, p, pct in _POLICIES],
        "per_event": [{"label": label, "price": price} for label, _, price in _PER_EVENT],
        "above_max_label": _ABOVE_MAX[0],
        "above_max_text": _ABOVE_MAX[1],
        "users": users,
        "suggested_per_event": suggested,
    }


def _row(serial: str, system: str, outcome: str, *, key: str | None = None,
         installation: dict[str, Any] | None = None, redirected: bool = False,
         recipient: str | None = "rg*******@em***.com.mx", source: str = "body",
         purchase_date: dt.date | None = dt.date(2011, 9, 12)) -> dict[str, Any]:
    return {
        "serial": serial, "system": system, "company": "Empresa de muestra S.A. de C.V.",
        "contact_name": "Raúl González Rivera", "outcome": outcome, "key": key,
        "recipient_masked": recipient if outcome == "issued" else None,
        "redirected": redirected, "source": source, "reasons": [],
        "purchase_date": purchase_date, "installation": installation,
    }


def _base(today: dt.date = SAMPLE_TODAY) -> dict[str, Any]:
    return {
        "reference": "CLV-000042",
        "kind_title": "Claves para actualización sin costo",
        "original_subject": "Solicitud de claves para actualización sin costo",
        "requester": {"email": "rgonzalez@empresamuestra.com.mx", "name": "Raúl González Rivera"},
        "today": today,
        "target_version": "2012",
        "phone": "5141-5110",
        "eligible_from": dt.date(2011, 7, 1),
        "bot_name": "Claves de actualización",
        "rows": [],
        "problems": [],
    }


def _ctx(today: dt.date = SAMPLE_TODAY, **extra: Any) -> dict[str, Any]:
    ctx = _base(today)
    ctx.update(extra)
    return ctx


_FE = "CONTPAQ i Factura electrónica"
_CO = "CONTPAQ i Contabilidad"
_NO = "CONTPAQ i Nóminas"
_BA = "CONTPAQ i Bancos"
_XLSX = "attachment:Relacion de sistemas sin costo.xlsx:row {}"

_PROBLEMS = [
    {"code": "missing_field", "field": "serial", "field_label": "Número de serie",
     "source": "body", "detail": "no value for serial"},
    {"code": "invalid_serial", "field": "serial", "field_label": "Número de serie",
     "source": _XLSX.format(4), "detail": "'AAAA-BBBB-CC' is not four groups of four"},
    {"code": "unknown_system", "field": "system", "field_label": "Tipo de sistema",
     "source": _XLSX.format(5), "detail": "'Contpaq Ultra' is not in the catalogue"},
    {"code": "invalid_email", "field": "contact_email",
     "field_label": "Correo electrónico del contacto", "source": "body",
     "detail": "'rgonzalez@' is not an e-mail address"},
    {"code": "unreadable_attachment", "field": None, "field_label": None,
     "source": "attachment:claves.xlsx", "detail": "encrypted workbook"},
    {"code": "unsupported_attachment", "field": None, "field_label": None,
     "source": "attachment:claves.pdf", "detail": "application/pdf"},
    {"code": "no_request_data", "field": None, "field_label": None, "source": None,
     "detail": "no labelled fields found"},
    {"code": "too_many_rows", "field": None, "field_label": None,
     "source": "attachment:claves.xlsx", "detail": "more than 2000 rows"},
]


def _keys_issued() -> dict[str, dict[str, Any]]:
    with_support = sample_installation(has_support=True, today=SAMPLE_TODAY)
    without = sample_installation(has_support=False, today=SAMPLE_TODAY, users=5)
    january = sample_installation(has_support=False, today=SAMPLE_JANUARY, users=10)
    return {
        "con póliza vigente": _ctx(rows=[_row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=with_support)]),
        "sin póliza, marzo": _ctx(rows=[_row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=without)]),
        "sin póliza, enero": _ctx(SAMPLE_JANUARY, rows=[_row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=january)]),
        "varios sistemas, con y sin póliza, usuarios desconocidos y más de 20": _ctx(rows=[
            _row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
                 installation=with_support, source=_XLSX.format(2)),
            _row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", key="CO12-3HHT-8WQ1-L0VE",
                 installation=sample_installation(has_support=False, today=SAMPLE_TODAY,
                                                  users=None), source=_XLSX.format(3)),
            _row("AAAA-BBBB-CCCC-FFFF", _NO, "issued", key="NO12-55RT-ZX8C-1MPA",
                 installation=sample_installation(has_support=False, today=SAMPLE_TODAY,
                                                  users=35), source=_XLSX.format(4)),
        ]),
        "enviadas al contacto registrado": _ctx(
            requester={"email": "compras@otrodominio.com", "name": ""},
            rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
                       installation=without, redirected=True)]),
    }


def _results() -> dict[str, dict[str, Any]]:
    without = sample_installation(has_support=False, today=SAMPLE_TODAY, users=2)
    with_support = sample_installation(has_support=True, today=SAMPLE_TODAY)
    rows = [
        _row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
             installation=without, source=_XLSX.format(2)),
        _row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", key=None, installation=with_support,
             redirected=True, recipient="co*******@em***.com.mx", source=_XLSX.format(3)),
        _row("AAAA-BBBB-CCCC-FFFF", _NO, "not_eligible", purchase_date=dt.date(2010, 11, 3),
             source=_XLSX.format(4)),
        _row("AAAA-BBBB-CCCC-GGGG", _BA, "review", source=_XLSX.format(5)),
        _row("AAAA-BBBB-CCCC-HHHH", _FE, "pending", installation=without,
             source=_XLSX.format(6)),
    ]
    return {
        "resultados mixtos con filas ilegibles": _ctx(rows=rows, problems=_PROBLEMS[1:3]),
        "resultados en enero sin problemas": _ctx(
            SAMPLE_JANUARY,
            rows=[dict(rows[0], installation=sample_installation(
                has_support=False, today=SAMPLE_JANUARY, users=20)), rows[2]]),
    }


def _missing_data() -> dict[str, dict[str, Any]]:
    return {
        "todos los problemas": _ctx(problems=_PROBLEMS),
        "sin datos": _ctx(requester={"email": "rgonzalez@empresamuestra.com.mx", "name": ""},
                          problems=[_PROBLEMS[6]]),
    }


def _not_eligible() -> dict[str, dict[str, Any]]:
    return {
        "un sistema": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "not_eligible",
                                      purchase_date=dt.date(2010, 11, 3))]),
        "sin fecha de compra": _ctx(rows=[
            _row("AAAA-BBBB-CCCC-DDDD", _FE, "not_eligible", purchase_date=None),
            _row("AAAA-BBBB-CCCC-EEEE", _CO, "not_eligible", purchase_date=dt.date(2009, 2, 1)),
        ]),
    }


def _under_review() -> dict[str, dict[str, Any]]:
    return {
        "con sistemas": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "review")]),
        "desbloqueo, sin filas": _ctx(kind_title="Desbloqueo",
                                      original_subject="Solicitud de desbloqueo"),
    }


def _pending_keys() -> dict[str, dict[str, Any]]:
    return {
        "sin póliza": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "pending", installation=(
            sample_installation(has_support=False, today=SAMPLE_TODAY, users=1)))]),
        "con póliza": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "pending", installation=(
            sample_installation(has_support=True, today=SAMPLE_TODAY)))]),
    }


def _keys_redirected() -> dict[str, dict[str, Any]]:
    requester = {"email": "compras@otrodominio.com", "name": "Laura Pérez"}
    return {
        "un sistema": _ctx(requester=requester, rows=[_row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", redirected=True,
            installation=sample_installation(has_support=True, today=SAMPLE_TODAY))]),
        "dos destinatarios": _ctx(requester=requester, rows=[
            _row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", redirected=True,
                 installation=sample_installation(has_support=False, today=SAMPLE_TODAY)),
            _row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", redirected=True,
                 recipient="co*******@em***.com.mx",
                 installation=sample_installation(has_support=False, today=SAMPLE_TODAY)),
        ]),
    }


def _operator_alert() -> dict[str, dict[str, Any]]:
    return {
        "avisos": {
            "bot_name": "Claves de actualización", "today": SAMPLE_TODAY,
            "alerts": [
                {"title": "Solicitud para revisión",
                 "detail": "CLV-000042 de rgonzalez@empresamuestra.com.mx: review",
                 "reference": "CLV-000042"},
                {"title": "Sin claves disponibles",
                 "detail": "CLV-000043: no quedan claves para CONTPAQ i Nóminas",
                 "reference": "CLV-000043"},
                {"title": "Envío fallido", "detail": "<abc@example.com> a x@example.com: 550",
                 "reference": None},
            ],
        },
    }


_IDENTIFY_HELP = """¿Cómo puedo identificar la serie y su modalidad de contratación?

a. Para los sistemas en Suscripción o Electrónicos:
   1. En tu navegador entra a aspel.com, selecciona "Mi cuenta Aspel" y captura tus datos.
   2. Al ingresar, del lado izquierdo pulsa en el apartado "Mis Servicios".

b. Si adquiriste el sistema en compra física, consulta tu Certificado de Autenticidad."""
_UNLOCK_SERIAL = "R8TZ-5N1Q-6WHK-2JCE"
_COMERCIAL = "CONTPAQ i Comercial"


def sample_unlock(**facts: Any) -> dict[str, Any]:
    """An `unlock` dict as `mailbot.answer.plan.unlock_context` builds it (every key present)."""
    base: dict[str, Any] = {
        "serial": _UNLOCK_SERIAL, "system": _COMERCIAL, "outcome": "unlocked",
        "modality": "suscripcion", "modality_label": "Suscripción", "number": 1,
        "number_text": "primer", "minutes_text": "inmediato o puede demorar de 10 a 15 minutos",
        "hours_text": None, "window_text": None, "window_start_text": None,
        "window_end_text": None, "due_text": None, "documents_required": None,
        "document_types_text": "PDF, JPG, JPEG o PNG", "documents": [],
        "ignored_documents": [], "review_reason": None, "repeat": False, "approved_by": None,
    }
    base.update(facts)
    return base


def _unlock_ctx(unlock: dict[str, Any], **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        kind_title="Desbloqueo", original_subject="Solicitud de desbloqueo",
        requester={"email": "administracion@tallerhermanosruiz.com.mx",
                   "name": "Ernesto Ruiz Carrillo"},
        rows=[_row(unlock["serial"], unlock["system"], unlock["outcome"])],
        identify_help=_IDENTIFY_HELP, unlock=unlock)
    values.update(extra)
    return _ctx(**values)


_WINDOW_4_24 = dict(
    hours_text="de 4 a 24 horas hábiles",
    window_text="entre el martes 10 de marzo de 2026 a las 14:00 h y el miércoles 11 de marzo "
                "de 2026 a las 10:00 h (hora del centro de México)",
    window_start_text="martes 10 de marzo de 2026 a las 14:00 h (hora del centro de México)",
    window_end_text="miércoles 11 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    due_text="miércoles 11 de marzo de 2026 a las 10:00 h (hora del centro de México)")
_WINDOW_24_48 = dict(
    hours_text="de 24 a 48 horas hábiles",
    window_text="entre el jueves 12 de marzo de 2026 a las 10:00 h y el lunes 16 de marzo de "
                "2026 a las 10:00 h (hora del centro de México)",
    window_start_text="jueves 12 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    window_end_text="lunes 16 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    due_text="lunes 16 de marzo de 2026 a las 10:00 h (hora del centro de México)")
_CERTIFICATE = ("una imagen legible (escaneo o fotografía) del Certificado de Autenticidad del "
                "sistema, que se encuentra dentro del empaque")


def _unlocked() -> dict[str, dict[str, Any]]:
    return {
        "1.er desbloqueo automático": _unlock_ctx(sample_unlock()),
        "aprobado por un operador": _unlock_ctx(sample_unlock(
            number=2, number_text="segundo", approved_by="ana")),
        "repetición de uno ya aprobado": _unlock_ctx(sample_unlock(repeat=True)),
        "sin tiempos en las reglas": _unlock_ctx(sample_unlock(
            minutes_text=None, modality_label=None, number_text=None), identify_help=""),
    }


def _unlock_review() -> dict[str, dict[str, Any]]:
    review = dict(outcome="review", minutes_text=None, number=2, number_text="segundo")
    return {
        "2.º desbloqueo de suscripción": _unlock_ctx(sample_unlock(
            review_reason="policy", **review, **_WINDOW_4_24)),
        "remitente distinto del registrado": _unlock_ctx(sample_unlock(
            review_reason="other_requester", **dict(review, number=None, number_text=None),
            due_text=_WINDOW_4_24["due_text"])),
        "ya en revisión (repetición)": _unlock_ctx(sample_unlock(
            review_reason="policy", repeat=True, **review, **_WINDOW_4_24)),
        "sin plazo": _unlock_ctx(sample_unlock(review_reason="no_unlock_rules", **review)),
    }


def _documents_needed() -> dict[str, dict[str, Any]]:
    needed = dict(outcome="documents_needed", minutes_text=None, hours_text="de 24 a 48 horas "
                  "hábiles")
    return {
        "licencia física": _unlock_ctx(sample_unlock(
            modality="fisico", modality_label="Licenciamiento físico",
            documents_required=_CERTIFICATE, **needed)),
        "2.º desbloqueo electrónico, con un archivo no aceptado": _unlock_ctx(sample_unlock(
            modality="electronico", modality_label="Licenciamiento electrónico", number=2,
            number_text="segundo", documents_required="la factura de compra",
            ignored_documents=["carta.docx"], **needed)),
    }


def _documents_received() -> dict[str, dict[str, Any]]:
    return {
        "certificado recibido": _unlock_ctx(sample_unlock(
            outcome="review", modality="fisico", modality_label="Licenciamiento físico",
            minutes_text=None, review_reason="documents_to_check",
            documents=["certificado.pdf"], **_WINDOW_24_48)),
        "con un archivo no aceptado": _unlock_ctx(sample_unlock(
            outcome="review", modality="fisico", modality_label="Licenciamiento físico",
            minutes_text=None, review_reason="documents_to_check",
            documents=["certificado.jpg"], ignored_documents=["nota.docx"],
            **_WINDOW_24_48)),
    }


def _unlock_missing_data() -> dict[str, dict[str, Any]]:
    return {
        "falta la serie": _ctx(kind_title="Desbloqueo", identify_help=_IDENTIFY_HELP,
                               original_subject="Solicitud de desbloqueo",
                               problems=[_PROBLEMS[0]]),
        "sin datos": _ctx(kind_title="Desbloqueo", identify_help=_IDENTIFY_HELP,
                          original_subject="Solicitud de desbloqueo"),
    }


def _review_rejected() -> dict[str, dict[str, Any]]:
    return {
        "con nota": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "rejected")],
                         note="La serie no corresponde a la empresa que indica en su correo."),
        "correo que no era solicitud": _ctx(kind_title="", note="Este buzón atiende solo "
                                            "solicitudes de claves y desbloqueos."),
        "sin nota": _ctx(rows=[_row("AAAA-BBBB-CCCC-DDDD", _FE, "rejected")], note=""),
    }


def _unlock_rejected() -> dict[str, dict[str, Any]]:
    return {
        "con nota": _unlock_ctx(sample_unlock(outcome="rejected", minutes_text=None),
                                note="El certificado enviado no es legible."),
        "sin nota": _unlock_ctx(sample_unlock(outcome="rejected", minutes_text=None,
                                              document_types_text=None), note=""),
    }


# Template name -> a function returning {variant label: context}; the first is the default.
SAMPLES: dict[str, Callable[[], dict[str, dict[str, Any]]]] = {
    "keys_issued": _keys_issued,
    "results": _results,
    "missing_data": _missing_data,
    "not_eligible": _not_eligible,
    "under_review": _under_review,
    "pending_keys": _pending_keys,
    "keys_redirected": _keys_redirected,
    "operator_alert": _operator_alert,
    "unlocked": _unlocked,
    "unlock_review": _unlock_review,
    "documents_needed": _documents_needed,
    "documents_received": _documents_received,
    "unlock_missing_data": _unlock_missing_data,
    "review_rejected": _review_rejected,
    "unlock_rejected": _unlock_rejected,
}


def sample_contexts(name: str) -> dict[str, dict[str, Any]]:
    """Every sample context of `name` (covering its branches); the common keys if unknown."""
    factory = SAMPLES.get(name)
    return factory() if factory else {"datos comunes": _base()}


def sample_context(name: str) -> dict[str, Any]:
    """The default sample context of `name`, for previews."""
    return next(iter(sample_contexts(name).values()))
