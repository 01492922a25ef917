"""Limits on a body's JSON shape that no rule on its fields can see (hostile input).

- Nesting deeper than ``MAX_DEPTH`` is a 400: serializers recurse, and a few hundred levels
  already broke canonical JSON (a 500 with the connection dropped).
- A key twice in one object is a 400 naming it: parsers disagree on which value wins (orjson and
  ``json`` keep the last, others the first), so peers would hash different snapshots.

Both are checked on the parsed document and the raw bytes together: the document's objects are
counted while walking it (lists of numbers are skipped at C speed), the raw text's key ends with one
regular expression; only when the counts differ is the body parsed again, to find the duplicate.
"""

from __future__ import annotations

import json
import re
from typing import Any

from riskhub.errors import MalformedRequest

MAX_DEPTH = 64
# Every key of an object ends with a quote, optional white space and a colon; a string value can
# only add such a match (an escaped quote before a colon), never hide one. So the count is at
# least the number of keys, and equal to the number of members parsed only without duplicates.
_KEY_END = re.compile(rb'"\s*:')
_SPACES_AS_ONE = bytes.maketrans(b"\t\n\r", b"   ")
_CONTAINERS = frozenset({dict, list})


def check_shape(raw: bytes, doc: Any) -> None:
    """400 for a body nested deeper than ``MAX_DEPTH`` or with a key twice in an object."""
    depth, entries = _depth_and_entries(doc)
    if depth > MAX_DEPTH:
        raise MalformedRequest(f"body: JSON nested deeper than {MAX_DEPTH} levels", field="body")
    if _key_ends(raw) != entries:  # a duplicate, or a string holding an escaped quote and a colon
        key = _duplicate_key(raw)
        if key is not None:
            raise MalformedRequest(f"{key}: the key appears twice in one JSON object", field=key)


def _key_ends(raw: bytes) -> int:
    """How many times a quote is followed by (white space and) a colon: at least the number of keys."""
    if b'" ' in raw.translate(_SPACES_AS_ONE):  # each byte search is a pass: one, not four
        return _KEY_END.subn(b"", raw)[1]
    return raw.count(b'":')  # no white space after any quote: a plain count finds every one


def _depth_and_entries(doc: Any) -> tuple[int, int]:
    """The nesting depth (stopping past ``MAX_DEPTH``) and how many members all objects have."""
    deepest, entries = 0, 0
    stack: list[tuple[Any, int]] = [(doc, 1)] if type(doc) in _CONTAINERS else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = node.values() if type(node) is dict else node
        entries += len(node) if type(node) is dict else 0
        if _CONTAINERS.isdisjoint(set(map(type, children))):  # a series of numbers: no descent
            continue
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return deepest, entries


def _duplicate_key(raw: bytes) -> str | None:
    """The first key found twice in one object, if any (cut to a loggable length)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return found[0][:200] if found else None
