"""Is the store's schema already at our newest migration? Answered without Alembic.

Every start (`run`, `parse` aside, every command that opens the store) used to run Alembic's
upgrade, which imports Alembic, Mako and Pygments and loads every migration script: a few
tenths of a second for what is nearly always "nothing to do" (issue 10, §4). Here the newest
revision is read from the migration files' `revision = ...` / `down_revision = ...` lines, and
the store's from its `alembic_version` table with one SELECT; Alembic runs only when they
differ, or when anything here is not plain (several heads, a branch, an unreadable file): then
Alembic, which knows every case, decides.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import sqlalchemy as sa

_ASSIGN = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""^(['"])([^'"]+)\1$""")


@functools.cache
def head_revision(versions: Path) -> str | None:
    """The one revision no other revision builds on, or None when that is not plain to see."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        scripts = sorted(versions.glob("*.py"))
        for script in scripts:
            if script.name == "__init__.py":
                continue
            found = dict(_ASSIGN.findall(script.read_text(encoding="utf-8")))
            revision = _QUOTED.match(found.get("revision", ""))
            if revision is None:
                return None
            revisions.add(revision.group(2))
            parent = found.get("down_revision", "None")
            if parent != "None":
                quoted = _QUOTED.match(parent)
                if quoted is None:  # a merge (a tuple) or an expression: Alembic decides
                    return None
                parents.add(quoted.group(2))
    except (OSError, UnicodeDecodeError):
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_current(engine: sa.Engine, versions: Path) -> bool:
    """True when the store records exactly our newest revision; False whenever in doubt."""
    head = head_revision(versions)
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return False
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:
        return False  # Alembic's upgrade meets the same fault and words it (Store.migrate)
    return [row[0] for row in rows] == [head]
