"""The guards around each step of reading a mail: an unexpected exception in one step becomes
an ``internal_error`` problem naming the step (and is logged), never a failed mail; and the
stand-ins used when a mail cannot be parsed at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from mailbot.model import ParsedMail, Problem

log = logging.getLogger("mailbot.read.extract")


T = TypeVar("T")


class Step:
    """Runs one step of reading; an unexpected exception becomes an internal_error problem."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def run(self, name: str, fallback: T, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as exc:  # the read step must never fail a mail
            log.exception("read_mail: step %s failed", name)
            self.problems.append(Problem("internal_error",
                                         f"mailbot failed while reading the mail ({name}: "
                                         f"{type(exc).__name__}); an operator must look at it",
                                         source=name))
            return fallback


def empty_parsed(data: bytes) -> ParsedMail:
    return ParsedMail(subject="", sender=None, from_addresses=(), message_id=None, references=(),
                      headers={}, text="", html="", attachments=(), defects=("unparsed",),
                      size=len(data))


def header_bytes(data: bytes) -> bytes:
    """The header block of a raw message, for classifying a mail too large to parse."""
    limit = min(len(data), 256 * 1024)
    head = data[:limit]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    end = min(ends) if ends else limit
    return head[:end] + b"\r\n\r\n"
