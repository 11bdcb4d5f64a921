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
