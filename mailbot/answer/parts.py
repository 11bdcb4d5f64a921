"""Every reply template has two parts: a customer's mail client shows the HTML one, a plain-text
client (and the archive) the text one. A part lost in an edit or a copy still renders (a reply
without HTML), so nothing would fail until a customer read the poorer mail: `templates check`,
`doctor` and `run` name the missing file instead."""

from __future__ import annotations

from pathlib import Path

TEXT_SUFFIX = ".txt.j2"
HTML_SUFFIX = ".html.j2"


def missing_html_parts(templates_dir: Path) -> list[str]:
    """One line per reply template (`<name>.txt.j2`, not a `_` partial) whose `<name>.html.j2`
    is missing. (A lone HTML part is reported by `Renderer.check`.)"""
    files = {p.name for p in templates_dir.iterdir() if p.is_file()}
    lines = []
    for file in sorted(files):
        if file.startswith("_") or not file.endswith(TEXT_SUFFIX):
            continue
        name = file[: -len(TEXT_SUFFIX)]
        if name + HTML_SUFFIX not in files:
            lines.append(f"{templates_dir / (name + HTML_SUFFIX)}: missing: template {name!r} "
                         f"has its text part ({file}) but not its HTML part; restore the file "
                         "(every reply template has both) or remove both parts")
    return lines
