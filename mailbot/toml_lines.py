"""Where a key sits in a TOML file: the line an admin should open to fix a rules problem.

`tomllib` gives a line only for syntax errors; a value of the wrong kind ("2500" in quotes, a
date written as text) is found only after parsing, when the line is gone. This scan of the text
maps each key path the rules loader names ("installation.policies[1].price") to its line. It
reads the subset of TOML rules files use (tables, arrays of tables, dotted and quoted keys,
inline tables, multi-line strings and arrays) and answers None rather than guess.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*(\]\]?)\s*(?:#.*)?\Z")
_KEY = re.compile(r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                  r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")
_PART = re.compile(r"[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


def key_lines(text: str) -> dict[str, int]:
    """Every table and key of `text` by its path as the loader writes it, with its line (1-based).

    Arrays of tables are numbered from 0 ("policies[1]"), as the loader numbers them.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    in_string: str | None = None  # the quotes of an open multi-line string
    depth = 0  # open brackets of a multi-line array value
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        if depth > 0:
            depth = max(depth + line.count("[") - line.count("]"), 0)
            continue
        header = _HEADER.match(line)
        if header and len(header.group(1)) == len(header.group(3)):
            path = ".".join(_parts(header.group(2)))
            if header.group(1) == "[[":
                index = counts.get(path, 0)
                counts[path] = index + 1
                path = f"{path}[{index}]"
            table = path
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if not key:
            continue
        path = ".".join(p for p in (table, ".".join(_parts(key.group(1)))) if p)
        lines.setdefault(path, number)
        value = line[key.end():]
        for quotes in ('"""', "'''"):
            if value.count(quotes) % 2 == 1:
                in_string = quotes
                break
        else:
            depth = max(value.count("[") - value.count("]"), 0)
    return lines


def line_of(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, else of the nearest enclosing key or table that has one
    ("document_types[2]" -> "document_types"; a key inside an inline table -> its table)."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return None
        path = path[:cut]
    return None
