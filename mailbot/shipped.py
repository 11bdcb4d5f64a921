"""Where the default rules, templates and example config that ship with mailbot live.

The repository keeps them at the top level (an admin finds them beside the code); the wheel
carries them inside the package, under `mailbot/defaults/` (see `pyproject.toml`). Looking in
both places lets a checkout, an editable install and an installed wheel run from any directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The shipped `rules`, `templates` or `config.example.toml` (it may not exist)."""
    installed = PACKAGE / "defaults" / name
    if installed.exists():
        return installed
    return PACKAGE.parent / name
