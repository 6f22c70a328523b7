"""Columnar parsing of metrics answers (``MetricsCompositeResponse``) into Arrow tables.

``parse_measurements`` turns one answer into a table with the columns

    metric_type: string, labels_json: string, ts: timestamp[us, tz=UTC], value: float64

``labels_json`` is ``json.dumps(labels, sort_keys=True, separators=(",", ":"))``, or null when a
series has no labels. Timestamps are accepted in both forms the spec uses
(``2024-12-20T14:30:00Z`` and ``2023-06-06 12:09:18.211``), with or without fractional seconds
and offsets; a timestamp without an offset is UTC. Samples whose timestamp or value is null or
unparsable are not dropped silently: they come back in ``rejects`` with a reason, for the
normaliser to quarantine.

Work is done per column with pyarrow compute (one Arrow conversion per series, then regex
checks and casts over whole columns); only the rare rows that pass the shape checks but still
fail a cast are looked at one by one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.runai.errors import MeasurementsParseError

MEASUREMENTS_SCHEMA = pa.schema(
    [
        pa.field("metric_type", pa.string(), nullable=False),
        pa.field("labels_json", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
    ]
)
_TS_TYPE = pa.timestamp("us", tz="UTC")
_SAMPLE_TYPE = pa.struct([("value", pa.string()), ("timestamp", pa.string())])

_TS_SHAPE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?$"
_HAS_OFFSET = r"(Z|z|[+-]\d{2}:?\d{2})$"
_HAS_OFFSET_RE = re.compile(_HAS_OFFSET)
_NUMBER_SHAPE = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[Nn]a[Nn]|[Ii]nf(inity)?)$"


@dataclass
class ParsedMeasurements:
    """A parsed answer: the good samples as a table, the bad ones as reasons with records."""

    table: pa.Table
    rejects: list[dict[str, Any]] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # metric types present in the answer


def empty_table() -> pa.Table:
    return MEASUREMENTS_SCHEMA.empty_table()


def canonical_labels(labels: Any) -> str | None:
    if not labels:
        return None
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _load(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MeasurementsParseError(f"metrics body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MeasurementsParseError("metrics body is not a JSON object")
    return data


def _samples_array(values: list[Any]) -> tuple[pa.StructArray, list[dict[str, Any]]]:
    """The samples of one series as struct<value, timestamp> strings, plus unusable samples."""
    try:
        return pa.array(values, type=_SAMPLE_TYPE), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # Slow path, only for series with odd items (numbers instead of strings, non-objects).
    good: list[dict[str, str | None]] = []
    bad: list[dict[str, Any]] = []
    for item in values:
        if not isinstance(item, dict):
            bad.append({"reason": "sample is not an object", "sample": item})
            continue
        v, t = item.get("value"), item.get("timestamp")
        if isinstance(v, bool) or not isinstance(v, str | int | float | type(None)):
            bad.append({"reason": "value is not a string or number", "sample": item})
            continue
        if t is not None and not isinstance(t, str):
            bad.append({"reason": "timestamp is not a string", "sample": item})
            continue
        good.append({"value": None if v is None else str(v), "timestamp": t})
    return pa.array(good, type=_SAMPLE_TYPE), bad


def _normalise_timestamps(ts: pa.Array) -> pa.Array:
    """ISO-shaped strings -> strings Arrow casts to timestamp[us, UTC] (``Z`` added to naive
    ones, fractions beyond microseconds cut)."""
    ts = pc.replace_substring_regex(ts, pattern=r"(\.\d{6})\d+", replacement=r"\1")
    ts = pc.replace_substring_regex(ts, pattern=r"z$", replacement="Z")
    has_offset = pc.match_substring_regex(ts, _HAS_OFFSET)
    return pc.if_else(has_offset, ts, pc.binary_join_element_wise(ts, pa.scalar("Z"), ""))


def _cast_each(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Element-wise fallback, used only when a whole-column cast failed on shape-valid strings;
    elements that do not cast become null."""
    out: list[Any] = []
    for i in range(len(arr)):
        try:
            out.append(pc.cast(arr.slice(i, 1), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
    return pa.array(out, type=target)


def _to_timestamps(raw: pa.Array) -> pa.Array:
    """timestamp[us, UTC] per string; null where missing or unparsable."""
    # Fast path: all strings in the form of the first one (a failed Arrow cast is costly, so
    # only the likely form is tried before the general path).
    first = next((v for v in raw.drop_null().slice(0, 1).to_pylist()), None)
    if first is not None:
        try:
            if _HAS_OFFSET_RE.search(first):
                return pc.cast(raw, _TS_TYPE)
            return pc.cast(pc.cast(raw, pa.timestamp("us")), _TS_TYPE)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    shaped = pc.if_else(
        pc.fill_null(pc.match_substring_regex(raw, _TS_SHAPE), False),
        raw,
        pa.scalar(None, pa.string()),
    )
    normalised = _normalise_timestamps(shaped)
    try:
        return pc.cast(normalised, _TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(normalised, _TS_TYPE)


def _to_floats(raw: pa.Array) -> pa.Array:
    """float64 per string; null where missing or unparsable."""
    try:
        return pc.cast(raw, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    shaped = pc.if_else(
        pc.fill_null(pc.match_substring_regex(raw, _NUMBER_SHAPE), False),
        raw,
        pa.scalar(None, pa.string()),
    )
    try:
        return pc.cast(shaped, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(shaped, pa.float64())


def parse_measurements(body: str | bytes | dict[str, Any]) -> ParsedMeasurements:
    """Parse one ``MetricsCompositeResponse`` (text, bytes or decoded JSON)."""
    data = _load(body)
    measurements = data.get("measurements")
    if not isinstance(measurements, list):
        raise MeasurementsParseError("metrics body has no 'measurements' array")

    rejects: list[dict[str, Any]] = []
    chunks: list[pa.StructArray] = []
    type_chunks: list[pa.Array] = []
    label_chunks: list[pa.Array] = []
    types: list[str] = []
    for m in measurements:
        if not isinstance(m, dict) or not isinstance(m.get("type"), str):
            rejects.append({"reason": "measurement without a string 'type'", "record": m})
            continue
        mtype: str = m["type"]
        labels = m.get("labels")
        if labels is not None and not isinstance(labels, dict):
            rejects.append({"reason": "measurement labels are not an object", "record": m})
            continue
        if mtype not in types:
            types.append(mtype)
        values = m.get("values")
        if values is None:
            continue
        if not isinstance(values, list):
            rejects.append({"reason": "measurement values are not an array", "record": m})
            continue
        arr, bad = _samples_array(values)
        labels_json = canonical_labels(labels)
        rejects.extend(
            {
                "reason": b["reason"],
                "record": {"metric_type": mtype, "labels_json": labels_json, **_sample(b)},
            }
            for b in bad
        )
        n = len(arr)
        if n == 0:
            continue
        chunks.append(arr)
        type_chunks.append(pa.repeat(pa.scalar(mtype, pa.string()), n))
        label_chunks.append(pa.repeat(pa.scalar(labels_json, pa.string()), n))

    if not chunks:
        return ParsedMeasurements(empty_table(), rejects, types)

    samples = pa.concat_arrays(chunks)
    metric_type = pa.concat_arrays(type_chunks)
    labels_col = pa.concat_arrays(label_chunks)
    raw_value = samples.field("value")
    raw_ts = samples.field("timestamp")

    ts = _to_timestamps(raw_ts)
    value = _to_floats(raw_value)
    ts_ok = pc.is_valid(ts)
    val_ok = pc.is_valid(value)
    good = pc.and_(ts_ok, val_ok)
    table = pa.table(
        {"metric_type": metric_type, "labels_json": labels_col, "ts": ts, "value": value}
    )
    if pc.all(good).as_py():
        return ParsedMeasurements(table.cast(MEASUREMENTS_SCHEMA), rejects, types)

    bad_mask = pc.invert(good)
    for mt, lj, t, v, tok, vok in zip(
        pc.filter(metric_type, bad_mask).to_pylist(),
        pc.filter(labels_col, bad_mask).to_pylist(),
        pc.filter(raw_ts, bad_mask).to_pylist(),
        pc.filter(raw_value, bad_mask).to_pylist(),
        pc.filter(ts_ok, bad_mask).to_pylist(),
        pc.filter(val_ok, bad_mask).to_pylist(),
        strict=True,
    ):
        reasons = []
        if not tok:
            reasons.append("null timestamp" if t is None else "unparsable timestamp")
        if not vok:
            reasons.append("null value" if v is None else "unparsable value")
        rejects.append(
            {
                "reason": "; ".join(reasons),
                "record": {"metric_type": mt, "labels_json": lj, "timestamp": t, "value": v},
            }
        )
    table = table.filter(good)
    return ParsedMeasurements(table.cast(MEASUREMENTS_SCHEMA), rejects, types)


def _sample(bad: dict[str, Any]) -> dict[str, Any]:
    s = bad.get("sample")
    if isinstance(s, dict):
        return {"timestamp": s.get("timestamp"), "value": s.get("value")}
    return {"timestamp": None, "value": s}


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def merge_windows(tables: Iterable[pa.Table], start: datetime, end: datetime) -> pa.Table:
    """Concatenate window tables, keep ``start <= ts < end``, drop repeated
    ``(metric_type, labels_json, ts)`` keeping the first occurrence, and sort."""
    parts = [t.cast(MEASUREMENTS_SCHEMA) for t in tables if t.num_rows]
    if not parts:
        return empty_table()
    table = pa.concat_tables(parts)
    lo = pa.scalar(_utc(start), _TS_TYPE)
    hi = pa.scalar(_utc(end), _TS_TYPE)
    ts = table.column("ts")
    table = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
    if table.num_rows == 0:
        return empty_table()
    # labels_json may be null; group on a non-null stand-in so nulls compare equal.
    keyed = table.append_column(
        "_labels_key", pc.fill_null(table.column("labels_json"), "\x00")
    ).append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    firsts = keyed.group_by(["metric_type", "_labels_key", "ts"], use_threads=False).aggregate(
        [("_row", "min")]
    )
    table = table.take(firsts.column("_row_min"))
    order = pc.sort_indices(
        table.append_column("_labels_key", pc.fill_null(table.column("labels_json"), "")),
        sort_keys=[("metric_type", "ascending"), ("_labels_key", "ascending"), ("ts", "ascending")],
    )
    return table.take(order)


def series(
    table: pa.Table, metric_type: str, labels_json: str | None = None
) -> list[tuple[datetime, float | None]]:
    """``(ts, value)`` pairs of one metric type (optionally one label set) of a merged table."""
    mask = pc.equal(table.column("metric_type"), metric_type)
    if labels_json is not None:
        mask = pc.and_(mask, pc.equal(table.column("labels_json"), labels_json))
    sub = table.filter(mask)
    return list(zip(sub.column("ts").to_pylist(), sub.column("value").to_pylist(), strict=True))


def present_types(table: pa.Table) -> Sequence[str]:
    return pc.unique(table.column("metric_type")).to_pylist()
