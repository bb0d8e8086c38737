"""Cheap facts about a raw JSON body, found before it is parsed into Python objects.

Parsing builds every list item as a Python object (a 30 MB body of labels grows the process by
hundreds of MB) before any length check runs, so the longest array or object is counted on the bytes:
numpy finds the quotes that open and close strings, drops the structural characters inside strings,
and counts the commas each container holds directly. Positions are int32 and found chunk by chunk, so
the scan needs a small fraction of what parsing would.
"""

import json
import re
from dataclasses import dataclass

import numpy as np

CHUNK_BYTES = 1 << 22
QUOTE, BACKSLASH = ord('"'), ord("\\")
OPENERS, CLOSERS, COMMA = b"[{", b"]}", ord(",")
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[list(b"[]{},")] = True
_QUOTES = np.zeros(256, dtype=bool)
_QUOTES[QUOTE] = True
_BACKSLASHES = np.zeros(256, dtype=bool)
_BACKSLASHES[BACKSLASH] = True
# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate reaches a parsed string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# The member name written right before a container: "name" then a colon.
_KEY_BEFORE = re.compile(rb'"((?:[^"\\]|\\.){1,200})"\s*:\s*\Z')


@dataclass(frozen=True)
class Shape:
    """What the scan found: only a body over the limit or nested too deeply gets one."""

    items: int
    """Items of the longest array or object (an upper bound for a body that is not valid JSON)."""
    field: str
    """The top-level member holding it, or "body"."""
    depth: int
    """Deepest nesting of arrays and objects."""


def _positions(buf: np.ndarray, table: np.ndarray) -> np.ndarray:
    parts = [
        np.flatnonzero(table[buf[i : i + CHUNK_BYTES]]).astype(np.int32) + i for i in range(0, len(buf), CHUNK_BYTES)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _string_quotes(buf: np.ndarray) -> np.ndarray:
    """Positions of the quotes that delimit strings (those not escaped by an odd run of backslashes)."""
    quotes = _positions(buf, _QUOTES)
    slashes = _positions(buf, _BACKSLASHES)
    if slashes.size == 0:
        return quotes
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [slashes.size - 1]])
    odd_run_ends = slashes[ends[(ends - starts + 1) % 2 == 1]]
    return quotes[~np.isin(quotes - 1, odd_run_ends)]


def _field_of(body: bytes, position: int) -> str:
    match = _KEY_BEFORE.search(body, max(0, position - 256), position)
    if match is None:
        return "body"
    try:
        name = json.loads(match.group(0).rsplit(b":", 1)[0])
        name.encode("utf-8")
    except ValueError:
        return "body"
    return str(name)


def shape(body: bytes, limit: int, max_depth: int) -> Shape | None:
    """The longest container when it holds more than ``limit`` items or nesting passes ``max_depth``, else None.

    Cheap when it cannot: a body with fewer commas than ``limit`` has no container over it.
    """
    if body.count(b",") < limit:
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    quotes = _string_quotes(buf)
    structural = _positions(buf, _STRUCTURAL)
    inside = np.searchsorted(quotes, structural)  # odd: after an opening quote, inside a string
    del quotes
    np.bitwise_and(inside, 1, out=inside)
    structural = structural[inside == 0]
    del inside
    kinds = buf[structural]
    opens = np.isin(kinds, np.frombuffer(OPENERS, np.uint8))
    closes = np.isin(kinds, np.frombuffer(CLOSERS, np.uint8))
    depth = np.cumsum(opens.astype(np.int8) - closes.astype(np.int8), dtype=np.int32)
    deepest = int(depth.max()) if depth.size else 0
    if deepest > max_depth:
        return Shape(0, "body", deepest)
    commas = kinds == COMMA
    items, opener = 0, -1
    for level in np.unique(depth[commas]):
        # A comma belongs to the last container opened at its depth before it.
        openers = np.flatnonzero(opens & (depth == level))
        owners = np.searchsorted(openers, np.flatnonzero(commas & (depth == level))) - 1
        counts = np.bincount(owners[owners >= 0])
        if counts.size and counts.max() + 1 > items:
            items, opener = int(counts.max()) + 1, int(openers[int(np.argmax(counts))])
    if items <= limit:
        return None
    top = np.flatnonzero(opens[: opener + 1] & (depth[: opener + 1] == 2))
    return Shape(items, _field_of(body, int(structural[top[-1]])) if top.size else "body", deepest)


def may_hold_surrogates(body: bytes) -> bool:
    """False when no string in the body can hold a surrogate, without parsing it."""
    return _SURROGATE_ESCAPE.search(body) is not None


def lone_surrogate_path(value: object) -> str | None:
    """The dotted path (as problem documents name fields) of a string holding a lone surrogate, if any."""
    stack: list[tuple[object, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                return ".".join(path) or "body"
            continue
        members = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in members:
            if _has_lone_surrogate(str(key)):
                return ".".join(path) or "body"
            if isinstance(child, str):
                if _has_lone_surrogate(child):
                    return ".".join((*path, str(key)))
            elif isinstance(child, dict | list):
                stack.append((child, (*path, str(key))))
    return None


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
