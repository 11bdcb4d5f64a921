"""Compiled templates kept on disk between processes (mailbot.answer.sandbox._CompiledOnDisk):
a new renderer loads them instead of compiling, never the other part's code, and compiles again
whatever changed."""

from __future__ import annotations

import tempfile

import pytest

from mailbot.answer import sandbox
from mailbot.answer.render import Renderer


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """jinja's per-user folder under a temporary directory of this test's own."""
    home = tmp_path / "tmp"
    home.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(home))
    return home


@pytest.fixture
def compiles(monkeypatch):
    """How many template files the sandbox parsed (compiled) since the test began."""
    count = {"n": 0}
    real = sandbox._Environment._parse

    def counted(self, source, name, filename):
        count["n"] += 1
        return real(self, source, name, filename)

    monkeypatch.setattr(sandbox._Environment, "_parse", counted)
    return count


def _templates(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "_m.txt.j2").write_text("{% macro show(v) %}[{{ v }}]{% endmacro %}")
    (folder / "x.txt.j2").write_text('{% from "_m.txt.j2" import show %}{{ show(v) }}\n')
    (folder / "x.html.j2").write_text('{% from "_m.txt.j2" import show %}<p>{{ show(v) }}</p>\n')
    return folder


def test_a_new_renderer_loads_what_an_earlier_one_compiled(tmp_path, cache_home, compiles):
    folder = _templates(tmp_path)
    first = Renderer(folder).render("x", {"v": "a"})
    assert compiles["n"] == 4  # x and _m for the text part, x and _m again for the HTML part
    assert any(cache_home.glob("_jinja2-cache-*/__jinja2_*.cache"))
    again = Renderer(folder).render("x", {"v": "a"})
    assert compiles["n"] == 4 and again == first


def test_the_html_part_never_runs_the_text_parts_code_of_the_same_file(tmp_path, cache_home):
    folder = _templates(tmp_path)
    hostile = {"v": '<img src=x onerror="a()">'}
    Renderer(folder).render("x", hostile)  # both parts compiled and kept
    rendered = Renderer(folder).render("x", hostile)  # both loaded from the folder
    assert rendered.text == '[<img src=x onerror="a()">]\n'
    assert rendered.html == "<p>[&lt;img src=x onerror=&#34;a()&#34;&gt;]</p>\n"


def test_an_edited_template_is_compiled_again(tmp_path, cache_home, compiles):
    folder = _templates(tmp_path)
    Renderer(folder).render("x", {"v": "a"})
    (folder / "_m.txt.j2").write_text("{% macro show(v) %}({{ v }}){% endmacro %}")
    rendered = Renderer(folder).render("x", {"v": "a"})
    assert rendered.text == "(a)\n" and rendered.html == "<p>(a)</p>\n"
    assert compiles["n"] == 6  # _m, once for each part


def test_without_a_usable_folder_templates_are_compiled_in_each_process(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "tmp"
    not_a_folder.write_text("a file where the temporary folder should be")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    rendered = Renderer(_templates(tmp_path)).render("x", {"v": "<b>"})
    assert rendered.text == "[<b>]\n" and rendered.html == "<p>[&lt;b&gt;]</p>\n"


def test_a_folder_that_cannot_be_written_only_means_compiling(tmp_path, cache_home, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    rendered = Renderer(_templates(tmp_path)).render("x", {"v": "a"})
    assert rendered.text == "[a]\n"
    assert not any(cache_home.glob("_jinja2-cache-*/__jinja2_*.cache"))


def test_a_templates_copy_in_the_temporary_folder_keeps_nothing(tmp_path, cache_home, compiles):
    """An edit being checked, a preview or a version kept aside: a new path every time."""
    copy = cache_home / "mailbot-templates-edit-x"
    copy.mkdir()
    for file in _templates(tmp_path).iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    Renderer(copy).render("x", {"v": "a"})
    Renderer(copy).render("x", {"v": "a"})
    assert compiles["n"] == 8
    assert not any(cache_home.glob("_jinja2-cache-*/__jinja2_*.cache"))
