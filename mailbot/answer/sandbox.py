"""The Jinja2 sandbox for admin-edited templates: no Python internals, and bounded work.

Jinja's immutable sandbox already refuses attribute tricks (``__class__``, ``__globals__``);
this module adds what it lacks: a budget of loop steps, time and value size per render, so a
hostile or buggy template fails as a `LimitExceeded` instead of hanging the bot or filling its
memory. Every allocation a template can ask for (``*``, ``**``, ``%``, ``~``, ``+``, string
methods, width-taking filters, ``join``) is checked before it happens, and every result after.

It also keeps hostile values out of the HTML part (`make_environment`'s ``html``): escaping is
chosen per rendering, not per file, so a macro a ``.html.j2`` imports from a ``.txt.j2`` file is
compiled escaping too, and nothing in an HTML rendering can mark a value as markup.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import operator
import re
import string
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

try:  # markupsafe 3: the C function `escape` wraps in a Markup (see `_escape_output`)
    from markupsafe import _escape_inner as _escape_str
except ImportError:  # markupsafe 2: `escape` is the C function itself, nothing to gain
    _escape_str = None


class LimitExceeded(SecurityError):
    """A template ran too long or built too large a value."""


@dataclass(slots=True)
class _Budget:
    """What is left of one render's allowance; every loop item, call and operator spends a step."""

    deadline: float
    steps_left: int
    max_value: int

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise LimitExceeded(_TOO_MANY_STEPS)
        if time.monotonic() > self.deadline:
            raise LimitExceeded(_TOO_LONG)


_TOO_MANY_STEPS = "template loops too long (too many steps)"
_TOO_LONG = "template takes too long to render"


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("mailbot_render_budget",
                                                                         default=None)


class limits:
    """Give the renders inside a fresh budget (a context variable, so threads do not share it);
    the clock starts on entering. A class rather than a generator: it wraps every part of
    every reply, and contextlib's machinery cost more than setting the variable."""

    __slots__ = ("_time_limit", "_max_steps", "_max_value", "_token")

    def __init__(self, *, time_limit: float, max_steps: int, max_value: int) -> None:
        self._time_limit, self._max_steps, self._max_value = time_limit, max_steps, max_value

    def __enter__(self) -> None:
        self._token = _budget.set(_Budget(deadline=time.monotonic() + self._time_limit,
                                          steps_left=self._max_steps, max_value=self._max_value))

    def __exit__(self, *exc_info: object) -> None:
        _budget.reset(self._token)


def _check_size(value: Any) -> Any:
    budget = _budget.get()
    if budget is not None and isinstance(value, (str, list, tuple)) \
            and len(value) > budget.max_value:
        raise LimitExceeded(f"template builds a value of more than {budget.max_value} characters")
    return value


def _step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step()


def _guarded_iter(iterable: Any) -> Iterable[Any]:
    """Every `for` loop in a template iterates through this: one step per item (the budget is
    looked up once per loop: a loop runs inside one render, whose budget does not change)."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    step = budget.step
    for item in iterable:
        step()
        yield item


@jinja2.pass_eval_context
def _guarded_concat(eval_ctx: Any, parts: list[Any]) -> str:
    """The `~` operator, with the result's size checked before it is built."""
    budget = _budget.get()
    strings = [p if isinstance(p, str) else str(p) for p in parts]
    if budget is not None and sum(len(s) for s in strings) > budget.max_value:
        raise LimitExceeded(f"template builds a value of more than {budget.max_value} characters")
    if eval_ctx.autoescape and any(hasattr(p, "__html__") for p in parts):
        return Markup("").join(parts)  # as jinja's markup_join: escape the plain parts
    return "".join(strings)


_MAX_WIDTH = 1000
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*" or (number and int(number) > _MAX_WIDTH):
                raise LimitExceeded(f"format width or precision too large in {match.group(0)!r}")


def _check_brace_format(fmt: str) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises its own error
    for _, _, spec, _ in parsed:
        if spec and ("{" in spec or any(int(n) > _MAX_WIDTH for n in re.findall(r"\d+", spec))):
            raise LimitExceeded(f"format width or precision too large in {spec!r}")


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
        raise LimitExceeded(f"{name}() width too large")
    if name == "expandtabs" and args and isinstance(args[0], int) \
            and owner.count("\t") * args[0] > limit:
        raise LimitExceeded("expandtabs() result too large")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) \
            and isinstance(args[1], str):
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        if len(owner) + count * max(len(args[1]) - len(args[0]), 0) > limit:
            raise LimitExceeded("replace() result too large")


def _safe_binop(op: str, left: Any, right: Any) -> Any:
    """An arithmetic operator, refused when its result would be huge (checked before computing)."""
    budget = _budget.get()
    limit = budget.max_value if budget else 10**7
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > limit:
                raise LimitExceeded("template multiplies a value beyond the size limit")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 \
                and max(abs(left).bit_length(), 1) * right > 4096:
            raise LimitExceeded("template computes too large a power")
    elif op == "%":
        if isinstance(left, str):
            _check_percent_format(left)
    elif op == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                and len(left) + len(right) > limit:
            raise LimitExceeded("template builds a value beyond the size limit")
    return _check_size(_BINOPS[op](left, right))


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "**": operator.pow, "%": operator.mod,
}


def _size_checked(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so that what it returns is size-checked (keeps jinja's pass_* marks)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()  # once per call: filters run thousands of times per reply
        if budget is None:
            return func(*args, **kwargs)
        budget.steps_left -= 1  # budget.step(), inlined: the most frequent step of a render
        if budget.steps_left < 0:
            raise LimitExceeded(_TOO_MANY_STEPS)
        if time.monotonic() > budget.deadline:
            raise LimitExceeded(_TOO_LONG)
        value = func(*args, **kwargs)
        if isinstance(value, (str, list, tuple)) and len(value) > budget.max_value:
            raise LimitExceeded(f"template builds a value of more than {budget.max_value} "
                                f"characters")
        return value
    return wrapper


def _capped_width(func: Callable[..., Any], position: int, keyword: str) -> Callable[..., Any]:
    """Refuse a width-like argument that would make the filter allocate without bound."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        width = args[position] if len(args) > position else kwargs.get(keyword)
        if isinstance(width, int) and width > _MAX_WIDTH:
            raise LimitExceeded(f"{keyword} {width} too large")
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
                    raise LimitExceeded("join() result too large")
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
    """jinja's `format` filter, with "%999999999s"-style widths refused before formatting."""
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


class _RefuseUnescaped(NodeTransformer):
    """HTML renderings only: ``|safe`` applies to literal text, and escaping cannot be turned off.

    Markup written in a template (``'style="..."'|safe``) is the admin's; a value that came from
    a mail never is, so ``x|safe``, ``{% filter safe %}`` and ``{% autoescape false %}`` are
    refused when the template is compiled, and ``'<b>'|safe`` becomes a literal Markup node
    (the ``safe`` filter itself is removed, so ``map("safe")`` cannot reach it either).
    """

    def __init__(self, name: str | None, filename: str | None) -> None:
        self.name, self.filename = name, filename

    def _refuse(self, node: nodes.Node, message: str) -> None:
        raise jinja2.TemplateSyntaxError(message, node.lineno, self.name, self.filename)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        self.generic_visit(node)
        if node.name != "safe":
            return node
        if not isinstance(node.node, nodes.Const) or not isinstance(node.node.value, str):
            self._refuse(node, "'safe' is allowed in HTML templates only on literal text "
                               "('<b>'|safe), never on a value: values are always escaped")
        return nodes.MarkSafe(node.node, lineno=node.lineno)

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier) -> nodes.Node:
        self.generic_visit(node)
        for option in node.options:
            if option.key == "autoescape" and not (isinstance(option.value, nodes.Const)
                                                   and option.value.value is True):
                self._refuse(node, "autoescape cannot be turned off in HTML templates")
        return node

    visit_ScopedEvalContextModifier = visit_EvalContextModifier


# Filters whose Markup result is built from a value: links from a customer's text (urlize),
# JSON that may close a quoted attribute (tojson), attribute names from a mapping (xmlattr).
_MARKUP_FROM_VALUES = ("urlize", "tojson", "xmlattr")


def _escape_output(value: Any) -> Any:
    """What ``{{ value }}`` prints in an HTML rendering: markupsafe's `escape`, the same
    characters, without building a Markup object around a plain string's escaped text.

    Compiled templates call ``escape`` only on what they print, and what they print is only
    joined into the output (or into a macro's, block's or ``set``'s buffer, which jinja marks
    as Markup itself), never used as a value: so only the characters matter, and the Markup
    object markupsafe builds per printed value (a Python-level constructor) buys nothing."""
    if type(value) is str:
        return _escape_str(value)  # type: ignore[misc]  # only installed with markupsafe 3
    if type(value) is Markup:
        return value  # escape(m) is Markup(m.__html__()): the same characters
    return escape(value)


class _Template(jinja2.Template):
    """A compiled template whose printed values go through `_escape_output`."""

    @classmethod
    def from_code(cls, environment: jinja2.Environment, code: Any,
                  globals: Any, uptodate: Any = None) -> jinja2.Template:
        template = super().from_code(environment, code, globals, uptodate)
        if _escape_str is not None:  # the module the compiled code runs in: its ``escape``
            template.root_render_func.__globals__["escape"] = _escape_output
        return template


# The names a plain dict has as attributes (from its class and object; instances have no
# __dict__, and builtin types cannot gain attributes): any other name is an item or nothing.
_DICT_ATTRIBUTES = frozenset(name for cls in dict.__mro__ for name in vars(cls))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox plus step, time and size limits (a hostile or buggy template cannot hang us)."""

    intercepted_binops = frozenset(_BINOPS)
    template_class = _Template

    def make_globals(self, d: Any) -> dict[str, Any]:
        """A template's globals as a plain dict, not jinja's ChainMap over the environment's:
        every render copies them into its context, and a ChainMap is copied key by key in
        Python (a few percent of a reply). The environment's globals are final when
        `make_environment` returns, so the copy has the same names and values."""
        return {**self.globals, **(d or {})}

    def call_test(self, name: str, value: Any, args: Any = None, kwargs: Any = None,
                  context: Any = None, eval_ctx: Any = None) -> Any:
        """A test by name (``selectattr("outcome", "equalto", "issued")`` calls it per item):
        one that takes no context, environment or eval context is called directly, as
        jinja's `_filter_test_common` would call it; anything else goes through jinja."""
        func = self.tests.get(name)
        if func is not None and not hasattr(func, "jinja_pass_arg"):
            return func(value, *(args if args is not None else ()),
                        **(kwargs if kwargs is not None else {}))
        return super().call_test(name, value, args, kwargs, context, eval_ctx)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``row.serial`` on a plain dict (every context value is one) decided as jinja does,
        without the AttributeError jinja's getattr raises and catches first: a dict has the
        attributes in `_DICT_ATTRIBUTES` (those still go through the sandbox) and no other."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _GuardLoops().visit(super()._parse(source, name, filename))
        if self.autoescape:
            tree = _RefuseUnescaped(name, filename).visit(tree)
        tree.set_environment(self)
        return tree

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        _step()
        return _safe_binop(op, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        if type(__obj) is not Macro:  # a template's macro is no str method (nor str.format)
            _precheck_str_method(__obj, args)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


class _TemplateCache(dict):  # type: ignore[type-arg]
    """The compiled templates by name, as jinja's default cache holds them: at most `capacity`
    (jinja's default cache size), since a template can name one file many ways
    (``include "./" * i ~ "x.txt.j2"``) and each name is compiled and kept. A dict to read,
    because jinja's LRU cache takes a lock and reorders itself on every lookup (seven per
    reply); when full it is emptied rather than pruned, which costs only recompiling."""

    capacity = 400  # jinja's Environment(cache_size=400); jinja's overlay() reads it

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self and len(self) >= self.capacity:
            self.clear()
        super().__setitem__(key, value)


def _synchronous(func: Callable[..., Any]) -> Callable[..., Any]:
    """The synchronous function behind a jinja filter written for both modes (``list``,
    ``map``, ``selectattr``...), which is what that filter calls in a synchronous environment."""
    sync = getattr(func, "__wrapped__", None) if getattr(func, "jinja_async_variant", False) \
        else None
    return sync if callable(sync) and not getattr(sync, "jinja_async_variant", False) else func


def make_environment(templates_dir: Path, filters: Mapping[str, Callable[..., Any]], *,
                     html: bool) -> ImmutableSandboxedEnvironment:
    """The sandbox over `templates_dir`, with jinja's filters hardened and `filters` added.

    One environment per kind of part, chosen by the part being rendered and not by file name:
    with ``html`` every file it loads (the ``.html.j2``, its layout, and any ``.txt.j2`` whose
    macros it imports) is compiled with autoescape on, so every value reaching the HTML part is
    escaped wherever the macro that prints it lives; and no value can be marked safe there
    (`_RefuseUnescaped`), nor turned into markup (`_MARKUP_FROM_VALUES` are gone).
    Without ``html`` nothing is escaped: the text part keeps "<" and "&" as written.
    """
    env = _Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir), encoding="utf-8"),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # compiled once; `Renderer.refresh` picks up edits between passes
    )
    env.cache = _TemplateCache()  # type: ignore[assignment]
    env.globals.pop("lipsum", None)  # generates unbounded text; templates have no use for it
    # jinja's async-capable filters ask on every call whether the environment is async; this
    # one never is, so they are their synchronous functions. That also puts the number of
    # slices of ``slice`` at position 1, where `_capped_width` looks (jinja's dual-mode wrapper
    # takes an eval context first, so the cap used to read the value and let any count by).
    hardened = {name: _synchronous(func) for name, func in env.filters.items()}
    hardened["center"] = _capped_width(hardened["center"], 1, "width")
    hardened["indent"] = _capped_width(hardened["indent"], 1, "width")
    hardened["slice"] = _capped_width(hardened["slice"], 1, "slices")
    hardened["format"] = _format_filter
    hardened["join"] = _join_checked(hardened["join"])
    if html:  # literal |safe is a MarkSafe node instead; the others build markup from a value
        for name in ("safe", *_MARKUP_FROM_VALUES):
            del hardened[name]
    hardened.update({name: _undefined_fails(func) for name, func in filters.items()})
    env.filters = {name: _size_checked(func) for name, func in hardened.items()}
    env.filters.update(_mailbot_iter=_guarded_iter, _mailbot_concat=_guarded_concat)
    env.bytecode_cache = _CompiledOnDisk.of(env, templates_dir, html=html)
    return env


class _CompiledOnDisk(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between processes, in jinja's own per-user folder (created
    0700 and refused if anyone else owns it), each written whole before it is seen.

    Why: compiling the shipped templates costs about 0.3 s of CPU, which every process that
    renders paid again (each `run --once`, each console preview) for the same files. A
    template is still compiled again whenever its source changes (jinja keeps the source's
    checksum with it), and the key of each also holds what compiled it: the part (the HTML
    part compiles the same file escaping, so it must never load the text part's code), this
    module's source, jinja's version and the filter and test names, so new mailbot code never
    runs code an older one compiled. A folder that cannot be used, or a file that cannot be
    written, only means compiling as before; so does a templates folder inside the temporary
    folder (an edit being checked, a preview, a version kept aside): its path is new each
    time, so what it compiled would never be loaded again."""

    def __init__(self, salt: str) -> None:
        super().__init__()
        self.salt = salt

    @classmethod
    def of(cls, env: jinja2.Environment, templates_dir: Path, *,
           html: bool) -> _CompiledOnDisk | None:
        try:
            if Path(templates_dir).resolve().is_relative_to(
                    Path(tempfile.gettempdir()).resolve()):
                return None
        except OSError:
            return None
        if _OWN_SOURCE is None:
            return None
        salt = hashlib.sha256()
        for part in ("html" if html else "text", jinja2.__version__, _OWN_SOURCE,
                     *sorted(env.filters), "|", *sorted(env.tests)):
            salt.update(part.encode() + b"\0")
        try:
            return cls(salt.hexdigest())
        except (OSError, RuntimeError):  # no usable folder: compile in each process
            return None

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return super().get_cache_key(f"{self.salt}|{name}", filename)

    def dump_bytecode(self, bucket: Any) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:  # a full or read-only disk: the template is compiled, just not kept
            pass


def _own_source() -> str | None:
    """This module's source, hashed; None when it cannot be read (nothing is kept then: code
    compiled by another version could not be told apart)."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    except OSError:
        return None


_OWN_SOURCE = _own_source()
