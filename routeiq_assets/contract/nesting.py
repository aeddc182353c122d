"""One nesting limit for every JSON text the platform parses, the same on every path.

JSON parsers recurse once a level (json, msgspec, pydantic's own limit aside), and Python's
recursion budget is what is left of ``sys.getrecursionlimit()`` below the caller's stack: the
same line could parse on one ingest path and fail on another. :func:`bounded` makes the answer
depend on the text alone: a text nested deeper than :data:`MAX_NESTING` levels is refused
(:class:`TooDeep`), anything else parses.

How, without a scan of every byte: a text with at most ``MAX_NESTING`` opening brackets cannot
be deeper, and parses at once. A longer one is parsed with the stack padded so that no more
than ``MAX_NESTING`` levels of recursion are left: success proves it is shallow enough; a
RecursionError sends it to an exact count (:func:`nesting_depth`), which refuses it or parses
it again at the caller's own depth.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

MAX_NESTING = 256  # levels of arrays and objects; far below the interpreter's recursion limit
_KEEP = b'"{}[]'
_DELETE = bytes(b for b in range(256) if b not in _KEEP)
LONG_TEXT = 1 << 16
T = TypeVar("T")


class TooDeep(ValueError):
    """A JSON text nested deeper than :data:`MAX_NESTING` levels."""


def nesting_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not
    count). Exact for valid JSON; for broken text, an estimate."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    # escaped backslashes first, then escaped quotes: what is left of the strings holds no quote
    structure = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DELETE)
    if not structure:
        return 0
    chars = np.frombuffer(structure, np.uint8)
    outside = (np.cumsum(chars == ord('"'), dtype=np.int64) & 1) == 0
    opens = outside & ((chars == ord("{")) | (chars == ord("[")))
    closes = outside & ((chars == ord("}")) | (chars == ord("]")))
    return int(np.cumsum(opens.astype(np.int64) - closes, dtype=np.int64).max(initial=0))


def _openers(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _stack_depth() -> int:
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def _at_depth(levels: int, parse: Callable[[Any], T], data: Any) -> T:
    if levels <= 0:
        return parse(data)
    return _at_depth(levels - 1, parse, data)


def bounded(parse: Callable[[Any], T], data: bytes | str) -> T:
    """``parse(data)``, or :class:`TooDeep` when ``data`` is nested deeper than
    :data:`MAX_NESTING` levels; other errors of ``parse`` propagate."""
    # (a long text is all but sure to hold more brackets than the limit: not counted)
    if len(data) <= LONG_TEXT and _openers(data) <= MAX_NESTING:
        return parse(data)
    padding = sys.getrecursionlimit() - MAX_NESTING - _stack_depth()
    try:
        return _at_depth(padding, parse, data)
    except RecursionError:
        depth = nesting_depth(data)
        if depth > MAX_NESTING:
            raise TooDeep(
                f"nested {depth} levels deep, more than the limit of {MAX_NESTING}"
            ) from None
    return parse(data)
