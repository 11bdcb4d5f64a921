"""build_reply's quoted-printable encoder is the standard library's, character for character."""

from __future__ import annotations

import random
from email import quoprimime

import pytest

from mailbot.answer.message import _body_encode

PIECES = ["a", " ", "\t", "=", "é", "\r", "\n", "\r\n", "x" * 70, "ñ".encode().decode("latin-1"),
          "\x00", "\x7f", "~", "<", ">", "=3D", "Ω".encode().decode("latin-1"), "  \n", "\t\n"]


@pytest.mark.parametrize("width", [4, 10, 76, 78])
def test_every_body_is_encoded_as_quoprimime_encodes_it(width):
    """Line splits next to a quoted character, whitespace at the end of a line with 0-3
    characters of room, CR and LF line ends, characters quoted and not."""
    rng = random.Random(width)
    for _ in range(5000):
        body = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30)))
        assert _body_encode(body, width) == quoprimime.body_encode(body, width), repr(body)


@pytest.mark.parametrize("width", [4, 10, 76, 78])
def test_bodies_with_only_line_feeds_are_encoded_as_quoprimime_encodes_them(width):
    """The usual reply (its lines end in LF only): only the lines that are too long or end in
    whitespace go through the line loop, the others are kept as they are."""
    rng = random.Random(100 + width)
    pieces = [p for p in PIECES if "\r" not in p] + ["y" * (width - 1), "z" * (width + 1)]
    for _ in range(5000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert _body_encode(body, width) == quoprimime.body_encode(body, width), repr(body)
