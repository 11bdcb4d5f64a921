"""Admin-edited templates run in a sandbox: no Python internals, bounded time and memory."""

from __future__ import annotations

import pytest

from mailbot.answer.render import Renderer
from mailbot.errors import TemplateError


def test_autoescape_only_in_html_templates(tmp_path):
    (tmp_path / "x.txt.j2").write_text("{{ v }}\n")
    (tmp_path / "x.html.j2").write_text("{{ v }}\n")
    rendered = Renderer(tmp_path).render("x", {"v": "<a & b>"})
    assert rendered.text == "<a & b>\n"
    assert rendered.html == "&lt;a &amp; b&gt;\n"


def test_html_part_escapes_macros_imported_from_text_files(tmp_path):
    """Escaping follows the part being rendered, not the file the macro lives in."""
    (tmp_path / "_m.txt.j2").write_text("{% macro show(v) %}[{{ v }}]{% endmacro %}")
    (tmp_path / "x.txt.j2").write_text('{% from "_m.txt.j2" import show %}{{ show(v) }}\n')
    (tmp_path / "x.html.j2").write_text('{% from "_m.txt.j2" import show %}{{ show(v) }}\n')
    rendered = Renderer(tmp_path).render("x", {"v": '<img src=x onerror="a()">'})
    assert rendered.text == '[<img src=x onerror="a()">]\n'
    assert rendered.html == "[&lt;img src=x onerror=&#34;a()&#34;&gt;]\n"


def test_html_part_keeps_literal_markup_marked_safe(tmp_path):
    (tmp_path / "x.txt.j2").write_text("{{ v }}\n")
    (tmp_path / "x.html.j2").write_text(
        "{% set td = 'style=\"padding:6px\"'|safe %}<td {{ td }}>{{ '<b>'|safe }}{{ v }}</td>\n")
    rendered = Renderer(tmp_path).render("x", {"v": "<i>"})
    assert rendered.html == '<td style="padding:6px"><b>&lt;i&gt;</td>\n'


@pytest.mark.parametrize("source", [
    "{{ ('<b>{}</b>'|safe).format(v) }}", "{{ '<b>%s</b>'|safe % v }}", "{{ '<b>'|safe ~ v }}",
    "{{ '<b>'|safe + v }}", "{{ ['<b>'|safe, v]|join('<br>'|safe) }}",
    "{{ v|replace('x', '<b>'|safe) }}", "{{ '<b>'|safe }}{{ v|format }}",
])
def test_literal_markup_combined_with_a_value_still_escapes_the_value(tmp_path, source):
    (tmp_path / "x.txt.j2").write_text("{{ v }}\n")
    (tmp_path / "x.html.j2").write_text(source + "\n")
    html = Renderer(tmp_path).render("x", {"v": "<img src=x>"}).html
    assert "<b>" in html and "&lt;img src=" in html and "<img" not in html


@pytest.mark.parametrize("source, problem", [
    ("{{ v|safe }}", "'safe' is allowed in HTML templates only on literal text"),
    ("{{ ('<b>' ~ v)|safe }}", "'safe' is allowed in HTML templates only on literal text"),
    ("{% filter safe %}{{ v }}{% endfilter %}", "only on literal text"),
    ("{% autoescape false %}{{ v }}{% endautoescape %}", "autoescape cannot be turned off"),
    ("{{ [v]|map('safe')|join }}", "No filter named 'safe'"),
    ("{{ v|urlize }}", "No filter named 'urlize'"),
    ('<td title="{{ v|tojson }}">', "No filter named 'tojson'"),
    ("<td {{ {v: 1}|xmlattr }}>", "No filter named 'xmlattr'"),
])
def test_html_part_cannot_mark_a_value_safe(tmp_path, source, problem):
    (tmp_path / "x.txt.j2").write_text("{{ v }}\n")
    (tmp_path / "x.html.j2").write_text("<p>\n" + source + "\n")
    renderer = Renderer(tmp_path)
    with pytest.raises(TemplateError) as err:
        renderer.render("x", {"v": "<img src=x onerror=alert(1)>"})
    assert str(err.value).startswith(str(tmp_path / "x.html.j2") + ", line 2")
    assert problem in str(err.value)


def test_a_text_macro_marking_a_value_safe_is_refused_in_the_html_part(tmp_path):
    (tmp_path / "_m.txt.j2").write_text("{% macro show(v) %}\n{{ v|safe }}{% endmacro %}")
    (tmp_path / "x.txt.j2").write_text('{% from "_m.txt.j2" import show %}{{ show(v) }}\n')
    (tmp_path / "x.html.j2").write_text('{% from "_m.txt.j2" import show %}{{ show(v) }}\n')
    with pytest.raises(TemplateError) as err:
        Renderer(tmp_path).render("x", {"v": "<img>"})
    assert str(err.value).startswith(f"{tmp_path / '_m.txt.j2'}, line 2 (included from "
                                     "x.html.j2): syntax error: 'safe' is allowed")


@pytest.mark.parametrize("source, problem", [
    ("{{ ''.__class__.__mro__ }}", "not allowed in templates"),
    ("{{ cycler.__init__.__globals__ }}", "not allowed in templates"),
    ("{{ namespace.__init__.__globals__['os'] }}", "not allowed in templates"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     "limit exceeded"),
    ("{% for a in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "limit exceeded"),
    ("{{ 'x' * 1000000000 }}", "limit exceeded"),
    ("{{ 10 ** 1000000 }}", "limit exceeded"),
    ("{{ '{:>999999999}'.format(1) }}", "limit exceeded"),
    ("{{ 'x'.ljust(999999999) }}", "limit exceeded"),
    ("{{ 'x'|center(999999999) }}", "limit exceeded"),
    # A count of slices is a count of lists made: the cap once read the wrong argument, and
    # this printed 5000 (a bigger count exhausts memory).
    ("{{ [1]|slice(5000)|list|length }}", "limit exceeded"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "limit exceeded"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", "recursion"),
    ("{{ lipsum(100000) }}", "undefined"),
    ("{% include '/etc/passwd' %}", "not found"),
])
def test_hostile_templates_raise_template_error(tmp_path, source, problem):
    (tmp_path / "evil.txt.j2").write_text("Hola\n" + source + "\n")
    renderer = Renderer(tmp_path, time_limit=2.0)
    with pytest.raises(TemplateError) as err:
        renderer.render("evil", {})
    message = str(err.value)
    assert message.startswith(str(tmp_path / "evil.txt.j2"))
    assert problem in message
    assert "\n" not in message


def test_time_limit_stops_a_slow_template(tmp_path):
    (tmp_path / "slow.txt.j2").write_text(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\n")
    renderer = Renderer(tmp_path, max_steps=10**12, time_limit=0.2)
    with pytest.raises(TemplateError, match="takes too long"):
        renderer.render("slow", {})


def test_every_loop_item_filter_operator_and_call_spends_one_step(tmp_path):
    """The budget is exact: 3 loop items + 3 filters, 4 filters, one `*` and one call = 12."""
    (tmp_path / "x.txt.j2").write_text(
        "{% for r in rows %}{{ r.n|abs }}{% endfor %} "
        "{{ rows|selectattr('n')|map(attribute='n')|list|length }} {{ (2 * 3) ~ 'x'.upper() }}\n")
    context = {"rows": [{"n": 1}, {"n": 0}, {"n": 3}]}
    assert Renderer(tmp_path, max_steps=12).render("x", context).text == "103 2 6X\n"
    with pytest.raises(TemplateError, match="too many steps"):
        Renderer(tmp_path, max_steps=11).render("x", context)


def test_dict_values_are_read_as_items_and_dict_methods_stay_sandboxed(tmp_path):
    """`row.serial` reads the item; a name dict has as an attribute is that attribute, and the
    sandbox still refuses the ones that modify the dict."""
    (tmp_path / "x.txt.j2").write_text(
        "{{ d.a }} {{ d['items'] }} {{ d.items()|list|length }} {{ d.nothing is undefined }}"
        " {{ d.__dict__ is undefined }}\n")
    (tmp_path / "y.txt.j2").write_text("{{ d.pop }}\n")
    (tmp_path / "z.txt.j2").write_text("{{ d.nothing }}\n")
    renderer = Renderer(tmp_path)
    d = {"a": 1, "items": 2, "pop": 3}
    assert renderer.render("x", {"d": d}).text == "1 2 3 True True\n"
    with pytest.raises(TemplateError, match="not allowed in templates: access to attribute 'pop'"):
        renderer.render("y", {"d": d})
    with pytest.raises(TemplateError, match="'dict object' has no attribute 'nothing'"):
        renderer.render("z", {"d": d})


def test_the_attributes_a_dict_has_are_the_ones_the_sandbox_looks_up():
    from mailbot.answer.sandbox import _DICT_ATTRIBUTES

    for name in [*dir(dict), *dir(object), "a", "serial", "__dict__", "__name__", "mro"]:
        assert hasattr({}, name) == (name in _DICT_ATTRIBUTES), name


def test_html_part_prints_every_kind_of_value_as_markupsafe_escapes_it(tmp_path):
    from markupsafe import Markup, escape

    class Shown:
        def __str__(self) -> str:
            return "<shown & 'q'>"

    class Html:
        def __html__(self) -> str:
            return "<i>own markup</i>"

    class Text(str):
        pass

    values = ["<a & 'b' \"c\">", "", "plain", Markup("<b>kept</b>"), 42, 2.5, None, True,
              Shown(), Html(), Text("<sub & class>")]
    (tmp_path / "x.txt.j2").write_text("-\n")
    (tmp_path / "x.html.j2").write_text(
        "{% for v in values %}[{{ v }}]{% endfor %}{% macro m(v) %}({{ v }}){% endmacro %}"
        "{% for v in values %}{{ m(v) }}{% endfor %}\n")
    html = Renderer(tmp_path).render("x", {"values": values}).html
    shown = "".join(f"[{escape(v)}]" for v in values) + "".join(f"({escape(v)})" for v in values)
    assert html == shown  # (trim_blocks eats the newline after the last tag)


def test_naming_one_file_many_ways_keeps_the_compiled_templates_bounded(tmp_path):
    """Each name of a file is compiled and kept: a template cannot grow that without bound."""
    (tmp_path / "_x.txt.j2").write_text("x")
    (tmp_path / "x.txt.j2").write_text(
        '{% for i in range(450) %}{% include "./" * i ~ "_x.txt.j2" %}{% endfor %}\n')
    renderer = Renderer(tmp_path, time_limit=60)
    assert renderer.render("x", {}).text == "x" * 450 + "\n"
    assert len(renderer._text_env.cache) <= 400  # type: ignore[arg-type]
