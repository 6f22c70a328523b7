"""Decoding JSON bodies from the control plane, whatever their nesting.

The standard library's decoder recurses once per nesting level, so a body nested a hundred
thousand levels deep raises ``RecursionError`` instead of decoding. :func:`loads` never does:
when the decoder gives up, every value that opens deeper than :data:`CUT_DEPTH` levels is
replaced by an empty object (``{}``) and the rest of the body is decoded as sent. The data
contract allows no value deeper than :data:`MAX_VALUE_DEPTH` (:func:`too_deep`), so a cut
value is always found and quarantined by the normalisers, while the records beside it, and
the ids the client pages with, survive.

:func:`depth` measures a body's nesting without decoding it (vectorised with numpy), so the
normalisers only look into records when a body is deeper than any record may be.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson

# A JSON value of a record (a field kept as JSON, a label map) may nest this deep.
MAX_VALUE_DEPTH = 32
# Where a body the standard decoder cannot take is cut: deep enough that a record's own
# structure (a page, a record, a nested object, a value) is never touched.
CUT_DEPTH = 64

_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("{"), ord("[")]] = 1
_CLOSE = np.zeros(256, dtype=np.int8)
_CLOSE[[ord("}"), ord("]")]] = 1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _levels(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per byte: whether it opens or closes a container outside strings, and the nesting
    level after it."""
    b = np.frombuffer(data, dtype=np.uint8)
    n = b.size
    quote = b == _QUOTE
    if quote.any():
        # A quote is escaped when an odd number of backslashes precedes it.
        idx = np.arange(n)
        not_bs = np.where(b != _BACKSLASH, idx, -1)
        last_not_bs = np.maximum.accumulate(not_bs)
        q = np.flatnonzero(quote)
        preceding = np.where(q > 0, (q - 1) - last_not_bs[np.maximum(q - 1, 0)], 0)
        real = q[(preceding % 2) == 0]
        toggles = np.zeros(n, dtype=np.int8)
        toggles[real] = 1
        # Inside a string: an odd number of real quotes before this byte.
        inside = (np.cumsum(toggles) - toggles) % 2 == 1
    else:
        inside = np.zeros(n, dtype=bool)
    opens = (_OPEN[b] == 1) & ~inside
    closes = (_CLOSE[b] == 1) & ~inside
    level = np.cumsum(opens.astype(np.int32) - closes.astype(np.int32))
    return opens, closes, level


def depth(body: str | bytes) -> int:
    """The deepest nesting of containers in a JSON text (0 for a scalar)."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if not data:
        return 0
    _, _, level = _levels(data)
    return int(level.max(initial=0))


def _cut(data: bytes, limit: int) -> bytes:
    """``data`` with every container opening below ``limit`` levels replaced by ``{}``."""
    opens, closes, level = _levels(data)
    starts = np.flatnonzero(opens & (level == limit + 1))
    ends = np.flatnonzero(closes & (level == limit))
    out: list[bytes] = []
    pos = 0
    j = 0
    for start in starts.tolist():
        if start < pos:
            continue
        while j < ends.size and ends[j] < start:
            j += 1
        end = int(ends[j]) if j < ends.size else len(data) - 1
        out += [data[pos:start], b"{}"]
        pos = end + 1
    out.append(data[pos:])
    return b"".join(out)


def loads(body: str | bytes) -> Any:
    """Decode a JSON body; values nested deeper than :data:`CUT_DEPTH` levels become ``{}``.

    Raises ``ValueError`` for text that is not JSON. Integers beyond 64 bits stay exact.
    orjson decodes the usual body (several times faster); what it refuses (bare ``NaN``,
    integers beyond 64 bits, lone surrogates, other encodings, deep nesting, invalid JSON)
    is decoded by the standard library, as before; so is a body with a run of 19 digits or
    more, where an integer may exceed 64 bits (orjson would make it a float).
    """
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if data.translate(_DIGITS).find(_LONG_NUMBER) < 0:  # orjson would round longer integers
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except RecursionError:
        return json.loads(_cut(data, CUT_DEPTH))


# Every digit as "1", anything else as "0": a run of 19 "1"s is a number orjson may round.
_DIGITS = bytes(49 if 48 <= i <= 57 else 48 for i in range(256))
_LONG_NUMBER = b"1" * 19
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode: JSON's ``\\ud800`` escapes can decode to lone
    surrogates, which no UTF-8 file (Parquet, DuckDB, a terminal) can hold."""
    return text.isascii() or _SURROGATE.search(text) is None


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text of a decoded value that is always valid UTF-8: non-ASCII text is
    kept as is, unless it holds a lone surrogate, when the whole text is ASCII-escaped (the
    same JSON value, losslessly)."""
    text = json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"))
    return (
        text if valid_text(text) else json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))
    )


def too_deep(value: Any, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether a decoded value nests containers more than ``limit`` levels deep."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return False
