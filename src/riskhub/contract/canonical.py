"""Canonical JSON: byte-for-byte Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``.

Peers verify snapshot hashes with ``json.dumps``, so every byte matters. ``json.dumps`` spends
~300 us on a numpy producer's 16 KB snapshot, almost all of it in float repr; orjson needs ~15 us.
Both write a float's shortest round-trip digits, and orjson writes the same bytes except for:

* floats of magnitude in [1e-5, 1e-4): orjson writes ``0.0000393``, Python ``3.93e-05``;
* floats of magnitude in [1e-10, 1e-5): orjson writes ``1.5e-7``, Python ``1.5e-07``;
* non-ASCII text and DEL (0x7f), which Python escapes and orjson does not;
* values orjson refuses (integers beyond 64 bits, lone surrogates).

Daily variances and covariances are mostly such tiny floats (hundreds per snapshot), so they are
respelled as text, never as numbers and never one by one in Python: the digits stay, only their
layout changes (``0.0000`` + ``393`` -> ``3`` ``.`` ``93`` ``e-05``). Text inside strings must not
be touched: without backslashes every other quote opens a string, so splitting on quotes isolates
the text between strings, and only that is rewritten. A tiny float starts a number: ``0.0000``
after a digit is the middle of one (``10.00001``), which both spell alike. Anything else (a
backslash, non-ASCII, DEL, a refused value) goes to ``json.dumps``. A property test compares this
module with ``json.dumps`` on generated documents.
"""

from __future__ import annotations

import json
import math
import re
from itertools import repeat
from typing import Any

import orjson

# The two spellings orjson gives tiny floats, as ``re.split`` patterns: the groups are the pieces
# Python's spelling rearranges. A literal prefix keeps each search at memchr speed; the lookbehind
# after it skips a ``0.0000`` inside a number (10.00001).
_DECIMAL_TINY = re.compile(rb"0\.0000(?<!\d0\.0000)([1-9])(\d*)")  # 0.0000393 -> ("3", "93")
_SHORT_EXPONENT = re.compile(rb"e-([1-9])(?!\d)")  # e-7 -> ("7",)
_NOT_BETWEEN_STRINGS = b"\0"  # joins the text between strings; JSON text never holds a raw NUL
_DOT_UNLESS_EMPTY = {b"": b""}  # .get(rest, b".")


def canonical_json(obj: Any) -> bytes:
    """Return ``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` as ASCII bytes."""
    try:
        raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _reference(obj)
    if not raw.isascii() or b"\x7f" in raw:
        return _reference(obj)
    if b"0.0000" not in raw and b"e-" not in raw:
        return raw
    if b"\\" in raw:
        return _reference(obj)  # an escaped quote would break the quote parity below
    pieces = raw.split(b'"')
    between_strings = _NOT_BETWEEN_STRINGS.join(pieces[0::2])
    pieces[0::2] = _respell_tiny_floats(between_strings).split(_NOT_BETWEEN_STRINGS)
    return b'"'.join(pieces)


def _respell_tiny_floats(text: bytes) -> bytes:
    """orjson's tiny floats in ``text`` (no strings in it) spelled as Python spells them."""
    if b"e-" in text:  # first: the decimals respelled below add an "e-05" each
        parts = _SHORT_EXPONENT.split(text)  # [before, digit, between, digit, ..., after]
        spelled = [b"e-0"] * (3 * (len(parts) // 2) + 1)
        spelled[0::3] = parts[0::2]
        spelled[2::3] = parts[1::2]
        text = b"".join(spelled)
    if b"0.0000" in text:
        # [before, first, rest, between, first, rest, ..., after] -> before first . rest e-05 ...
        parts = _DECIMAL_TINY.split(text)
        firsts, rests = parts[1::3], parts[2::3]
        spelled = [b"e-05"] * (5 * len(firsts) + 1)
        spelled[0::5] = parts[0::3]
        spelled[1::5] = firsts
        spelled[2::5] = map(_DOT_UNLESS_EMPTY.get, rests, repeat(b"."))
        spelled[3::5] = rests
        text = b"".join(spelled)
    return text


def _reference(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


# orjson turns integer literals beyond 64 bits into floats (or refuses them), which json.loads
# keeps exact. Such a literal is a run of 19+ digits that starts a number: not after a '.' (the
# fraction of a full-precision float, 0.0012345678901234567, has runs that long) and not inside
# a word. Mapping digits to '0', the '.' to itself and every other byte to ' ' lets one substring
# search find it at memory speed. False hits (an exponent or a string with such a run) only cost
# the slower parser.
_DIGITS_AS_ZERO = bytes(
    0x30 if 0x30 <= byte <= 0x39 else byte if byte == 0x2E else 0x20 for byte in range(256)
)
_LONG_DIGIT_RUN = b"0" * 19
_LONG_INTEGER = b" " + _LONG_DIGIT_RUN


def _may_hold_big_integer(data: bytes) -> bool:
    """True when ``data`` may hold an integer literal orjson cannot keep exact."""
    digits = data.translate(_DIGITS_AS_ZERO)
    return _LONG_INTEGER in digits or digits.startswith(_LONG_DIGIT_RUN)


class NonFiniteNumber(ValueError):
    """A NaN or Infinity literal; ``path`` says where (e.g. ``weights.a``)."""

    def __init__(self, path: str, value: float) -> None:
        super().__init__(f"{path}: must be a finite number, got {value!r}")
        self.path = path


def loads_exact(raw: bytes | str, *, finite: bool = False) -> Any:
    """Parse JSON exactly as ``json.loads`` does (big integers stay integers). With ``finite``,
    a NaN or Infinity literal raises ``NonFiniteNumber`` instead of parsing."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not _may_hold_big_integer(data):
        try:
            return orjson.loads(data)  # refuses NaN/Infinity itself
        except orjson.JSONDecodeError:
            pass  # NaN/Infinity, lone surrogates, deep nesting: json.loads decides
    doc = json.loads(data)
    if finite:
        _reject_non_finite(doc)
    return doc


def _reject_non_finite(doc: Any) -> None:
    # Iterative: a body may nest deeper than the recursion limit allows.
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
        elif type(value) is float and not math.isfinite(value):
            raise NonFiniteNumber(where, value)


def merge_objects(first: bytes, second: bytes) -> bytes:
    """Two serialized JSON objects with distinct keys as one, without parsing either (the
    members of ``first``, then those of ``second``)."""
    head, tail = first.rstrip()[:-1].rstrip(), second.lstrip()[1:].lstrip()
    if head == b"{" or tail == b"}":
        return head + tail
    return head + b"," + tail


def dumps_compact(obj: Any) -> bytes:
    """Compact JSON bytes (key order kept); ``json.dumps`` for what orjson cannot write
    (integers beyond 64 bits, lone surrogates, nesting deeper than 255)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")
