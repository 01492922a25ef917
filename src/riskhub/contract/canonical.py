"""Canonical JSON: byte-for-byte Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``.

Peers verify snapshot hashes with ``json.dumps``, so every byte matters. ``json.dumps`` spends
~400 us on a 14 KB snapshot, almost all of it in float repr; orjson needs ~20 us and writes the
same bytes except for:

* floats of magnitude in [1e-9, 1e-4): orjson writes ``0.0000393`` and ``1.5e-7`` where Python
  writes ``3.93e-05`` and ``1.5e-07``;
* non-ASCII text and DEL (0x7f), which Python escapes and orjson does not;
* values orjson refuses (integers beyond 64 bits, lone surrogates).

Real return series hold a few such tiny floats, so those tokens are rewritten one by one with
Python's own ``repr`` (many of them: ``json.dumps`` is cheaper). A rewrite must never touch
text inside a string; see ``_rewrite_numbers``. Anything else (backslashes next to a rewrite,
non-ASCII, DEL, refused values) goes to ``json.dumps``. A property test compares this module
with ``json.dumps`` on generated documents.
"""

from __future__ import annotations

import json
import math
import re
from itertools import islice
from typing import Any

import orjson

# orjson spells a number differently from Python only if it contains one of these markers.
# ``bytes.find`` locates the decimal one fast; for a two-byte needle it crawls (~1.4 GB/s), and a
# literal ``re`` is ~3x faster there: it only stops at each "e". (``re`` alternations are slow.)
_TINY_DECIMAL = b"0.0000"
_TINY_EXPONENT = re.compile(rb"e-")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_NUMBER_CHARS = frozenset(b"0123456789.")
# Past this many marker hits json.dumps is cheaper than rewriting them one by one.
MAX_REWRITES = 32


def canonical_json(obj: Any) -> bytes:
    """Return ``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` as ASCII bytes."""
    try:
        raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _reference(obj)
    if not raw.isascii() or b"\x7f" in raw:
        return _reference(obj)
    hits = _marker_positions(raw)
    if not hits:
        return raw
    if len(hits) > MAX_REWRITES or b"\\" in raw:
        return _reference(obj)
    return _rewrite_numbers(raw, hits)


def _marker_positions(raw: bytes) -> list[int]:
    """Where the markers are, sorted; past ``MAX_REWRITES`` hits, just one more."""
    hits = [match.start() for match in islice(_TINY_EXPONENT.finditer(raw), MAX_REWRITES + 1)]
    at = raw.find(_TINY_DECIMAL)
    while at != -1 and len(hits) <= MAX_REWRITES:
        hits.append(at)
        at = raw.find(_TINY_DECIMAL, at + 1)
    return sorted(hits)


def _rewrite_numbers(raw: bytes, hits: list[int]) -> bytes:
    """Replace each number token holding a marker by Python's repr of its value. Without
    backslashes no quote is escaped, so a hit is inside a string iff the quotes before it are
    odd in number; such hits are text, written alike by both, and left alone."""
    pieces: list[bytes] = []
    done = quotes = counted = 0
    for at in hits:
        quotes += raw.count(b'"', counted, at)
        counted = at
        if quotes % 2 or at < done:
            continue
        start = at
        while start > 0 and raw[start - 1] in _NUMBER_CHARS:
            start -= 1
        if start > 0 and raw[start - 1] == 0x2D:  # '-'
            start -= 1
        token = _NUMBER.match(raw, start)
        if token is None or token.end() <= at:
            continue
        pieces += (raw[done:start], repr(float(token.group())).encode())
        done = token.end()
    pieces.append(raw[done:])
    return b"".join(pieces)


def _reference(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


# orjson turns integer literals beyond 64 bits into floats (or refuses them), which json.loads
# keeps exact. Such literals need a run of 19+ digits; translate + substring search finds one at
# memory speed. False hits (long decimals, digits in strings) only cost the slower parser.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19


class NonFiniteNumber(ValueError):
    """A NaN or Infinity literal; ``path`` says where (e.g. ``weights.a``)."""

    def __init__(self, path: str, value: float) -> None:
        super().__init__(f"{path}: must be a finite number, got {value!r}")
        self.path = path


def loads_exact(raw: bytes | str, *, finite: bool = False) -> Any:
    """Parse JSON exactly as ``json.loads`` does (big integers stay integers). With ``finite``,
    a NaN or Infinity literal raises ``NonFiniteNumber`` instead of parsing."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGIT_RUN not in data.translate(_DIGITS_AS_ZERO):
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
