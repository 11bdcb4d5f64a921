"""Logging: one line per event, readable by a person, parseable by a machine.

Messages are written as `event=name key=value ...`; `--log-format json` turns every line into
one JSON object with the same fields, for log collectors.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from datetime import UTC, datetime


def _fields(message: str) -> dict[str, str]:
    """`event=x a=1 b='two words'` -> {"event": "x", "a": "1", "b": "two words"}."""
    try:
        parts = shlex.split(message)
    except ValueError:
        return {"message": message}
    out: dict[str, str] = {}
    loose = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key.isidentifier():
            out[key] = value
        else:
            loose.append(part)
    if loose:
        out["message"] = " ".join(loose)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        data = {"ts": created.isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name}
        data.update(_fields(record.getMessage()))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(*, verbose: bool, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("apscheduler", "imapclient", "alembic", "mail-parser", "mailparser"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
