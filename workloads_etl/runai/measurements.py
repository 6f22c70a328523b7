"""Columnar parsing of metrics answers (``MetricsCompositeResponse``) into Arrow tables.

``parse_measurements`` turns one answer into a table with the columns

    metric_type: string, labels_json: string, ts: timestamp[us, tz=UTC], value: float64

``labels_json`` is ``json.dumps(labels, sort_keys=True, separators=(",", ":"))``, or null when a
series has no labels. Timestamps and values are read by :mod:`workloads_etl.runai.values`
(both timestamp forms of the spec; values are numeric strings). Samples whose timestamp or
value is null or unparsable are not dropped silently: they come back in ``rejects`` with a
reason, for the normaliser to quarantine.

:class:`SampleCollector` is the engine, shared with the lake normaliser: it takes any number of
decoded answers, gathers the sample strings of each series with one list comprehension per
series (never per-sample Python work on the usual path), and converts whole columns at once
with pyarrow compute (one timestamp cast, one float cast). Only series with odd items
(numbers instead of strings, non-objects) and the rare strings that pass the shape checks but
still fail a cast are looked at one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.runai import body as body_codec
from workloads_etl.runai.errors import MeasurementsParseError
from workloads_etl.runai.values import TS, parse_timestamps, to_floats, utc

MEASUREMENTS_SCHEMA = pa.schema(
    [
        pa.field("metric_type", pa.string(), nullable=False),
        pa.field("labels_json", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
    ]
)
# Per-sample state codes of :attr:`Samples.ts_code` / :attr:`Samples.value_code`.
OK, NULL, WRONG_TYPE, UNPARSABLE = 0, 1, 2, 3

MEASUREMENT_NOT_OBJECT = "measurement is not an object"
MEASUREMENT_NO_TYPE = "measurement type missing or not a valid string"
MEASUREMENT_BAD_LABELS = "measurement labels is not an object"
MEASUREMENT_DEEP_LABELS = (
    f"measurement labels nested deeper than {body_codec.MAX_VALUE_DEPTH} levels"
)
MEASUREMENT_BAD_VALUES = "measurement values is not an array"
SAMPLE_NOT_OBJECT = "sample is not an object"

_CLIENT_TS_REASON = {NULL: "null timestamp", WRONG_TYPE: "timestamp is not a string"}
_CLIENT_VALUE_REASON = {NULL: "null value", WRONG_TYPE: "value is not a string or number"}


@dataclass
class ParsedMeasurements:
    """A parsed answer: the good samples as a table, the bad ones as reasons with records."""

    table: pa.Table
    rejects: list[dict[str, Any]] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # metric types present in the answer


@dataclass(frozen=True)
class Reject:
    """A measurement or sample that yields no row: where it came from, why, and the item."""

    source: int
    reason: str
    item: Any
    metric_type: str | None = None
    labels_json: str | None = None


@dataclass
class Samples:
    """Every sample-shaped item of the collected answers, one row each, in received order.

    ``table`` columns: ``pos`` (int64, sample number, see :meth:`locate`), ``source``
    (int32, as given to :meth:`SampleCollector.add`), ``metric_type``, ``labels_json``
    (dictionary-encoded strings), ``ts`` and ``value`` (null unless parsed), ``ts_code`` and
    ``value_code`` (int8: OK, NULL, WRONG_TYPE, UNPARSABLE). ``type_rank``/``labels_rank``
    (int32) order the series keys like a string sort with null labels last, for vectorised
    sorting without comparing strings.
    """

    table: pa.Table
    items: list[Any] | None  # the sample items by ``pos``, when the collector kept them
    rejects: list[Reject]
    records: int  # sample items seen in usable measurements (rows + sample rejects)
    series_ends: np.ndarray  # per series: ``pos`` after its last sample
    series_measurement: list[int]  # per series: its index in the answer's ``measurements``

    def locate(self, pos: int) -> tuple[int, int]:
        """``(measurement index, sample index)`` of sample ``pos`` within its answer."""
        i = int(np.searchsorted(self.series_ends, pos, side="right"))
        first = int(self.series_ends[i - 1]) if i else 0
        return self.series_measurement[i], pos - first


@cache
def empty_table() -> pa.Table:
    """A table of no samples (one shared instance: Arrow tables are immutable). Made on first
    use, not at import: pyarrow would import pandas to make it."""
    return MEASUREMENTS_SCHEMA.empty_table()


def canonical_labels(labels: Any) -> str | None:
    if not labels:
        return None
    return body_codec.dumps(labels, sort_keys=True)


def loads(body: str | bytes) -> Any:
    """Decode JSON at any nesting depth (:func:`workloads_etl.runai.body.loads`). Raises
    ``ValueError``."""
    return body_codec.loads(body)


def _load(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MeasurementsParseError(f"metrics body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MeasurementsParseError("metrics body is not a JSON object")
    return data


def _strings(column: list[Any], numbers_ok: bool) -> tuple[pa.Array, list[int]]:
    """A list of JSON scalars as a string array, plus the positions of items of a wrong type
    (nulls in the array). Numbers become their text when ``numbers_ok``."""
    try:
        return pa.array(column, pa.string()), []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    out: list[str | None] = []
    wrong: list[int] = []
    for i, v in enumerate(column):  # only for answers with odd items
        if v is None or isinstance(v, str):
            out.append(v)
        elif numbers_ok and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(str(v))
        else:
            out.append(None)
            wrong.append(i)
    return pa.array(out, pa.string()), wrong


def _ranks(names: Sequence[str | None]) -> np.ndarray:
    """Rank of each name in a string sort with nulls last."""
    order = sorted(range(len(names)), key=lambda i: (names[i] is None, names[i] or ""))
    rank = np.empty(len(names), dtype=np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    return rank


def _codes(valid: pa.Array, raw: pa.Array, wrong: list[int]) -> np.ndarray:
    code = np.full(len(raw), UNPARSABLE, dtype=np.int8)
    code[raw.is_null().to_numpy(zero_copy_only=False)] = NULL
    code[valid.is_valid().to_numpy(zero_copy_only=False)] = OK
    code[wrong] = WRONG_TYPE
    return code


def _answer(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """A decoded answer with a ``measurements`` array; raises
    :class:`MeasurementsParseError` otherwise."""
    data = _load(body)
    if not isinstance(data.get("measurements"), list):
        raise MeasurementsParseError("metrics body has no 'measurements' array")
    return data


def measurement_problem(m: Any) -> str | None:
    """Why a ``measurements`` item yields no samples at all (None: it is usable)."""
    if not isinstance(m, dict):
        return MEASUREMENT_NOT_OBJECT
    mtype = m.get("type")
    if not isinstance(mtype, str) or not body_codec.valid_text(mtype):
        return MEASUREMENT_NO_TYPE
    labels = m.get("labels")
    if labels is not None and not isinstance(labels, dict):
        return MEASUREMENT_BAD_LABELS
    if body_codec.too_deep(labels):
        return MEASUREMENT_DEEP_LABELS
    values = m.get("values")
    if values is not None and not isinstance(values, list):
        return MEASUREMENT_BAD_VALUES
    return None


def answer_types(body: str | bytes | dict[str, Any]) -> list[str]:
    """The metric types of an answer's usable measurements, in order, without gathering its
    samples (what :meth:`SampleCollector.add` returns for it)."""
    data = _answer(body)
    types = [m["type"] for m in data["measurements"] if measurement_problem(m) is None]
    return list(dict.fromkeys(types))


class SampleCollector:
    """Gathers the samples of any number of decoded answers column-wise; see :class:`Samples`."""

    def __init__(self, keep_items: bool = True) -> None:
        """With ``keep_items=False`` the decoded samples are not retained (much less memory
        for many answers); :meth:`Samples.locate` finds a sample in its answer again."""
        self._keep_items = keep_items
        self._n = 0
        self._items: list[Any] = []
        self._series_measurement: list[int] = []
        self._values: list[Any] = []
        self._stamps: list[Any] = []
        self._not_object: list[tuple[int, Any]] = []  # (pos, item)
        self._series_len: list[int] = []
        self._series_source: list[int] = []
        self._series_type: list[int] = []
        self._series_labels: list[int] = []
        self._types: dict[str, int] = {}
        self._labels: dict[str | None, int] = {}
        self.rejects: list[Reject] = []

    def add(self, data: dict[str, Any], source: int = 0) -> list[str]:
        """Gather one decoded answer whose ``measurements`` is a list; return the metric types
        of its usable measurements. Unusable measurements become :class:`Reject` items."""
        types: list[str] = []
        for mi, m in enumerate(data["measurements"]):
            problem = measurement_problem(m)
            if problem is not None:
                self.rejects.append(Reject(source, problem, m))
                continue
            mtype, labels, values = m["type"], m.get("labels"), m.get("values")
            if mtype not in types:
                types.append(mtype)
            if not values:
                continue
            try:  # the usual shape: one comprehension per column and series
                vals = [s["value"] for s in values]
                stamps = [s["timestamp"] for s in values]
            except (TypeError, KeyError, IndexError):
                vals, stamps = [], []
                base = self._n
                for i, s in enumerate(values):
                    if isinstance(s, dict):
                        vals.append(s.get("value"))
                        stamps.append(s.get("timestamp"))
                    else:
                        vals.append(None)
                        stamps.append(None)
                        self._not_object.append((base + i, s))
            if self._keep_items:
                self._items.extend(values)
            self._n += len(values)
            self._series_measurement.append(mi)
            self._values.extend(vals)
            self._stamps.extend(stamps)
            self._series_len.append(len(values))
            self._series_source.append(source)
            self._series_type.append(self._types.setdefault(mtype, len(self._types)))
            lj = canonical_labels(labels)
            self._series_labels.append(self._labels.setdefault(lj, len(self._labels)))
        return types

    @property
    def samples(self) -> int:
        """Sample items gathered so far."""
        return self._n

    def item(self, pos: int) -> Any:
        """The sample item ``pos`` (only with ``keep_items``)."""
        return self._items[pos]

    def finish(self) -> Samples:
        n = self._n
        lens = np.asarray(self._series_len, dtype=np.int64)
        raw_value, wrong_value = _strings(self._values, numbers_ok=True)
        raw_ts, wrong_ts = _strings(self._stamps, numbers_ok=False)
        ts = parse_timestamps(raw_ts)[0] if n else pa.array([], TS)
        value = to_floats(raw_value) if n else pa.array([], pa.float64())
        type_names = list(self._types)
        label_names = list(self._labels)
        type_idx = np.repeat(np.asarray(self._series_type, dtype=np.int32), lens)
        label_idx = np.repeat(np.asarray(self._series_labels, dtype=np.int32), lens)
        table = pa.table(
            {
                "pos": pa.array(np.arange(n, dtype=np.int64)),
                "source": pa.array(
                    np.repeat(np.asarray(self._series_source, dtype=np.int32), lens)
                ),
                "metric_type": pa.DictionaryArray.from_arrays(
                    pa.array(type_idx), pa.array(type_names, pa.string())
                ),
                "labels_json": pa.DictionaryArray.from_arrays(
                    pa.array(label_idx), pa.array(label_names, pa.string())
                ),
                "type_rank": pa.array(_ranks(type_names)[type_idx] if n else type_idx),
                "labels_rank": pa.array(_ranks(label_names)[label_idx] if n else label_idx),
                "ts": ts,
                "value": value,
                "ts_code": pa.array(_codes(ts, raw_ts, wrong_ts)),
                "value_code": pa.array(_codes(value, raw_value, wrong_value)),
            }
        )
        rejects = list(self.rejects)
        ends = np.cumsum(lens)
        if self._not_object:
            keep = np.ones(n, dtype=bool)
            keep[[pos for pos, _ in self._not_object]] = False
            for pos, item in self._not_object:
                i = int(np.searchsorted(ends, pos, side="right"))
                rejects.append(
                    Reject(
                        self._series_source[i],
                        SAMPLE_NOT_OBJECT,
                        item,
                        type_names[self._series_type[i]],
                        label_names[self._series_labels[i]],
                    )
                )
            table = table.filter(pa.array(keep))
        items = self._items if self._keep_items else None
        return Samples(table, items, rejects, n, ends, self._series_measurement)


def _global_codes(parts: Sequence[Samples], column: str) -> tuple[pa.DictionaryArray, np.ndarray]:
    """One dictionary column over ``parts`` (each with its own dictionary) and its ranks in a
    string sort with nulls last."""
    dictionaries = [p.table[column].combine_chunks().dictionary.to_pylist() for p in parts]
    names = sorted({n for d in dictionaries for n in d}, key=lambda n: (n is None, n or ""))
    index = {n: i for i, n in enumerate(names)}
    codes = [
        np.asarray([index[n] for n in d], dtype=np.int32)[
            p.table[column].combine_chunks().indices.to_numpy(zero_copy_only=False)
        ]
        if len(d)
        else np.empty(0, dtype=np.int32)
        for p, d in zip(parts, dictionaries, strict=True)
    ]
    idx = np.concatenate(codes) if codes else np.empty(0, dtype=np.int32)
    array = pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(names, pa.string()))
    return array, idx  # names are sorted: the index is the rank


def concat_samples(
    parts: Sequence[Samples], offsets: Sequence[int]
) -> tuple[pa.Table, list[Reject]]:
    """The samples of several collections as one table, with one dictionary and one rank
    order for the metric types and the labels; and their rejects. ``source`` becomes
    ``offsets[i]`` plus the source within ``parts[i]``; ``pos`` stays the collection's own
    (:meth:`Samples.locate`)."""
    rejects = [
        replace(r, source=o + r.source)
        for o, p in zip(offsets, parts, strict=True)
        for r in p.rejects
    ]
    if not parts:
        return SampleCollector().finish().table, rejects
    metric_type, type_rank = _global_codes(parts, "metric_type")
    labels_json, labels_rank = _global_codes(parts, "labels_json")
    columns = {
        name: pa.concat_arrays([p.table[name].combine_chunks() for p in parts])
        for name in ("pos", "ts", "value", "ts_code", "value_code")
    }
    table = pa.table(
        {
            "pos": columns["pos"],
            "source": pa.array(
                np.concatenate(
                    [
                        p.table["source"].to_numpy().astype(np.int32) + o
                        for o, p in zip(offsets, parts, strict=True)
                    ]
                )
            ),
            "metric_type": metric_type,
            "labels_json": labels_json,
            "type_rank": pa.array(type_rank),
            "labels_rank": pa.array(labels_rank),
            "ts": columns["ts"],
            "value": columns["value"],
            "ts_code": columns["ts_code"],
            "value_code": columns["value_code"],
        }
    )
    return table, rejects


def _sample_record(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {"timestamp": item.get("timestamp"), "value": item.get("value")}
    return {"timestamp": None, "value": item}


def parse_measurements(body: str | bytes | dict[str, Any]) -> ParsedMeasurements:
    """Parse one ``MetricsCompositeResponse`` (text, bytes or decoded JSON)."""
    data = _answer(body)
    collector = SampleCollector()
    types = collector.add(data)
    samples = collector.finish()
    rejects: list[dict[str, Any]] = []
    for r in samples.rejects:
        if r.reason == SAMPLE_NOT_OBJECT:
            record = {
                "metric_type": r.metric_type,
                "labels_json": r.labels_json,
                **_sample_record(r.item),
            }
            rejects.append({"reason": r.reason, "record": record})
        else:
            rejects.append({"reason": r.reason, "record": r.item})
    t = samples.table
    good = pc.and_(pc.equal(t["ts_code"], OK), pc.equal(t["value_code"], OK))
    if not pc.all(good).as_py():
        bad = t.filter(pc.invert(good))
        for pos, mt, lj, tcode, vcode in zip(
            bad["pos"].to_pylist(),
            bad["metric_type"].to_pylist(),
            bad["labels_json"].to_pylist(),
            bad["ts_code"].to_pylist(),
            bad["value_code"].to_pylist(),
            strict=True,
        ):
            reasons = []
            if tcode != OK:
                reasons.append(_CLIENT_TS_REASON.get(tcode, "unparsable timestamp"))
            if vcode != OK:
                reasons.append(_CLIENT_VALUE_REASON.get(vcode, "unparsable value"))
            record = {"metric_type": mt, "labels_json": lj, **_sample_record(collector.item(pos))}
            rejects.append({"reason": "; ".join(reasons), "record": record})
        t = t.filter(good)
    table = t.select(["metric_type", "labels_json", "ts", "value"]).cast(MEASUREMENTS_SCHEMA)
    return ParsedMeasurements(table, rejects, types)


def merge_windows(tables: Iterable[pa.Table], start: datetime, end: datetime) -> pa.Table:
    """Concatenate window tables, keep ``start <= ts < end``, drop repeated
    ``(metric_type, labels_json, ts)`` keeping the first occurrence, and sort."""
    parts = [t.cast(MEASUREMENTS_SCHEMA) for t in tables if t.num_rows]
    if not parts:
        return empty_table()
    table = pa.concat_tables(parts)
    lo = pa.scalar(utc(start), TS)
    hi = pa.scalar(utc(end), TS)
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
