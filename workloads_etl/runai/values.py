"""How the Run:ai API writes values, and the one parser of each form.

Shared by the client (metrics answers, Retry-After) and the lake normaliser (workload
records, telemetry, server dates), so a value is read the same way wherever it is read:

- date-times in both forms the spec uses, ``2024-12-20T14:30:00Z`` and
  ``2023-06-06 12:09:18.211`` (no offset: UTC), with or without fractions and offsets, ``Z``
  in either case; parsed column-wise with pyarrow (:func:`parse_timestamps`);
- numbers sent as strings (metric values), parsed column-wise (:func:`to_floats`);
- HTTP dates (``Date``, ``Retry-After``): :func:`parse_http_date`;
- instants sent to the API: :func:`iso_z`; any datetime made UTC-aware: :func:`utc`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("us", tz="UTC")

_TS_SHAPE = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
_HAS_OFFSET = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
_HAS_OFFSET_RE = re.compile(_HAS_OFFSET)
_NUMBER_SHAPE = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[Nn]a[Nn]|[Ii]nf(inity)?)$"


def utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive value is taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso_z(dt: datetime) -> str:
    """An instant as the API takes it: ``2024-12-20T14:30:00.000Z`` (milliseconds, UTC)."""
    return utc(dt).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=64)
def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Sun, 06 Nov 1994 08:49:37 GMT``) as an aware UTC datetime, or None.
    Remembered for the last few values: every answer of a second carries the same date."""
    if not value:
        return None
    try:
        return utc(parsedate_to_datetime(value.strip()))
    except (TypeError, ValueError, IndexError):
        return None


def cast_tolerant(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast, turning the elements that do not cast into nulls. Whole-column cast first; when
    it fails, halve the failing part until the culprits are found (a few casts per bad
    element instead of one per element)."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    n = len(arr)
    if n <= 16:
        out: list[Any] = []
        for i in range(n):
            try:
                out.append(pc.cast(arr.slice(i, 1), target)[0].as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                out.append(None)
        return pa.array(out, type=target)
    half = n // 2
    return pa.concat_arrays(
        [cast_tolerant(arr.slice(0, half), target), cast_tolerant(arr.slice(half), target)]
    )


def _same_form_cast(shaped: pa.Array) -> pa.Array | None:
    """One cast for a column whose strings all have the form of its first one, else None."""
    first = next(iter(shaped.drop_null().slice(0, 1).to_pylist()), None)
    if first is None:
        return None
    try:
        if _HAS_OFFSET_RE.search(first):
            return pc.cast(shaped, TS)
        return pc.cast(pc.cast(shaped, pa.timestamp("us")), TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def parse_timestamps(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """ISO 8601 strings -> ``timestamp[us, UTC]``; returns ``(timestamps, invalid)``.

    ``invalid`` marks non-null strings that are not a date-time of the API's forms (they are
    null in ``timestamps``). Fractions beyond microseconds are cut; no offset means UTC.
    A column in one form (the usual case) costs one shape check and one cast.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    if len(values) == 0:
        return pa.array([], TS), pa.array([], pa.bool_())
    well_shaped = pc.fill_null(pc.match_substring_regex(values, _TS_SHAPE), False)
    shaped = (
        values
        if pc.all(well_shaped).as_py() is not False
        else pc.if_else(well_shaped, values, pa.scalar(None, pa.string()))
    )
    ts = _same_form_cast(shaped)
    if ts is None:
        shaped = pc.replace_substring_regex(shaped, r"(\.\d{6})\d+", r"\1")
        shaped = pc.replace_substring_regex(shaped, r"[Zz]$", "Z")
        shaped = pc.replace_substring_regex(shaped, r"^(.{10})[t ]", r"\1T")
        zoned = pc.if_else(
            pc.match_substring_regex(shaped, _HAS_OFFSET),
            shaped,
            pc.binary_join_element_wise(shaped, pa.scalar("Z"), ""),
        )
        ts = cast_tolerant(zoned, TS)
    invalid = pc.and_(pc.is_valid(values), pc.is_null(ts))
    return ts, invalid


@lru_cache(maxsize=4096)
def parse_timestamp(text: str) -> datetime | None:
    """One date-time string, read by :func:`parse_timestamps` (the same rules); None when it
    is not a date-time. Cached: the values that repeat (metrics windows) are parsed once."""
    ts, _ = parse_timestamps(pa.array([text], pa.string()))
    value = ts[0].as_py()
    return value if isinstance(value, datetime) else None


def to_floats(raw: pa.Array) -> pa.Array:
    """float64 per numeric string; null where missing or unparsable."""
    try:
        return pc.cast(raw, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    shaped = pc.if_else(
        pc.fill_null(pc.match_substring_regex(raw, _NUMBER_SHAPE), False),
        raw,
        pa.scalar(None, pa.string()),
    )
    return cast_tolerant(shaped, pa.float64())
