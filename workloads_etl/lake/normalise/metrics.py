"""Metrics answers (``GET /api/v1/workloads/{id}/metrics``) -> long rows, one per sample.

All answers of a raw run are gathered column-wise by the client's
:class:`~workloads_etl.runai.measurements.SampleCollector` and classified at once with numpy:
a bad timestamp or value, a point of another day, or a repeat of a key is a quarantine row
(the point as received); only those are looked at one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.metric_types import metric_kinds
from workloads_etl.lake.normalise.records import (
    Normalised,
    Quarantine,
    RecordError,
    dumps,
    is_uuid,
    observed_at,
)
from workloads_etl.lake.schemas import TS, WORKLOAD_METRICS
from workloads_etl.runai.measurements import (
    NULL,
    OK,
    UNPARSABLE,
    WRONG_TYPE,
    SampleCollector,
    loads,
)
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_timestamp


def _step_seconds(params: dict[str, str]) -> int:
    start = parse_timestamp(params.get("start") or "")
    end = parse_timestamp(params.get("end") or "")
    if start is None or end is None:
        raise RecordError("request parameters start/end missing or invalid")
    raw_n = params.get("numberOfSamples")
    try:
        samples = 20 if raw_n is None or raw_n == "" else int(raw_n)
    except ValueError as exc:
        raise RecordError(f"numberOfSamples is not an integer: {raw_n!r}") from exc
    if samples <= 0:
        raise RecordError(f"numberOfSamples={samples}: sample step unknown")
    if end <= start:
        raise RecordError("request window end is not after start")
    return max(1, round((end - start).total_seconds() / samples))


_TS_REASON = {
    NULL: "missing timestamp",
    WRONG_TYPE: "timestamp is not a string",
    UNPARSABLE: "unparsable timestamp",
}
_VALUE_REASON = {
    NULL: "missing value",
    WRONG_TYPE: "value is not a string or number",
    UNPARSABLE: "value is not numeric",
}
_TS_BITS = 37  # microseconds of one day < 2**37
DEFAULT_LIMITS = Limits()


def _dense_ranks(names: Sequence[str]) -> np.ndarray:
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.fromiter((rank[n] for n in names), dtype=np.int64, count=len(names))


def normalise_metrics(
    dataset: str,
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Normalised:
    """The metrics answers of one raw run -> long rows and quarantine."""
    quarantine = Quarantine(dataset, day, run_id)
    collector = SampleCollector(keep_items=False)
    texts: list[str] = []
    wids: list[str] = []
    steps: list[int] = []
    received: list[datetime] = []
    records = 0
    for resp in responses:
        at = observed_at(resp)
        try:
            wid = resp.path_params.get("workloadId")
            if not is_uuid(wid):
                raise RecordError(f"workloadId path parameter is not a uuid: {wid!r}")
            step = _step_seconds(resp.params)
            if not 200 <= resp.status < 300:
                raise RecordError(f"HTTP status {resp.status}")
        except RecordError as exc:
            records += 1
            quarantine.add(f"unusable metrics response: {exc}", resp.text, at)
            continue
        why = None
        try:
            doc = loads(resp.text)
        except ValueError:
            why = "body is not JSON"
        else:
            if not isinstance(doc, dict):
                why = "body is not an object"
            elif not isinstance(doc.get("measurements"), list):
                why = "body has no measurements array"
        if why is not None:
            records += 1
            quarantine.add(f"unparsable metrics response: {why}", resp.text, at)
            continue
        collector.add(doc, len(wids))
        texts.append(resp.text)
        wids.append(str(wid))
        steps.append(step)
        received.append(at)

    samples = collector.finish()
    decoded: dict[int, Any] = {}

    def raw_point(src: int, p: int) -> str:
        """The point as received (its answer is decoded again, only for quarantined points)."""
        if src not in decoded:
            decoded[src] = loads(texts[src])
        mi, vi = samples.locate(p)
        return dumps(decoded[src]["measurements"][mi]["values"][vi])

    for r in samples.rejects:
        records += 1
        where = f"workload {wids[r.source]}" + (f", {r.metric_type}" if r.metric_type else "")
        quarantine.add(f"{r.reason} ({where})", dumps(r.item), received[r.source])
    t = samples.table
    records += t.num_rows
    if t.num_rows == 0:
        return Normalised(
            WORKLOAD_METRICS.empty_table(), quarantine.table(), records, len(quarantine)
        )

    # Classify every point at once: bad timestamp, outside the day, bad value, good.
    start = datetime.combine(day, time(), UTC)
    start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    day_us = 86_400_000_000
    ts_code = t["ts_code"].to_numpy()
    value_code = t["value_code"].to_numpy()
    offset = pc.fill_null(t["ts"].cast(pa.int64()), start_us).to_numpy() - start_us
    value = pc.fill_null(t["value"], 0.0).to_numpy()
    ts_ok = ts_code == OK
    in_window = ts_ok & (offset >= 0) & (offset < day_us)
    out_of_window = int(np.count_nonzero(ts_ok & ~in_window))
    mtypes = t["metric_type"].combine_chunks().dictionary.to_pylist()
    mtype_idx = t["metric_type"].combine_chunks().indices.to_numpy()
    # The physical bounds of each point's metric type (none for a type not declared).
    declared = metric_kinds()
    kinds = np.array([declared.get(m, "") for m in mtypes], dtype=object)[mtype_idx]
    finite = np.isfinite(value)
    outside = finite & limits.outside(value, kinds)
    value_ok = (value_code == OK) & finite & ~outside
    bad = ~ts_ok | (in_window & ~value_ok)
    pos = t["pos"].to_numpy()
    source = t["source"].to_numpy()
    for i in np.flatnonzero(bad).tolist():
        if ts_code[i] != OK:
            why = _TS_REASON[int(ts_code[i])]
        elif value_code[i] != OK:
            why = _VALUE_REASON[int(value_code[i])]
        elif not finite[i]:
            why = "value is not finite"
        else:
            why = f"value {limits.problem(float(value[i]), str(kinds[i]))}"
        src = int(source[i])
        quarantine.add(
            f"{why} (workload {wids[src]}, {mtypes[mtype_idx[i]]})",
            raw_point(src, int(pos[i])),
            received[src],
        )

    # Sort the good points by (workload, type, labels, ts), ties in received order, with one
    # integer key, then quarantine the repeats of a key: the first received is kept.
    good = np.flatnonzero(in_window & value_ok)
    n_types = int(t["type_rank"].to_numpy().max()) + 1
    n_labels = int(t["labels_rank"].to_numpy().max()) + 1
    group = (
        _dense_ranks(wids)[source[good]] * n_types + t["type_rank"].to_numpy()[good]
    ) * n_labels + t["labels_rank"].to_numpy()[good]
    if group.size and int(group.max()) < 2 ** (63 - _TS_BITS):
        key = (group << _TS_BITS) | offset[good]
        perm = np.argsort(key, kind="stable")
        order, key = good[perm], key[perm]
    else:
        perm = np.lexsort((offset[good], group))
        order = good[perm]
        key = np.stack([group[perm], offset[order]])
    dup = np.zeros(len(order), dtype=bool)
    if key.ndim == 1:
        dup[1:] = key[1:] == key[:-1]
    else:
        dup[1:] = (key[:, 1:] == key[:, :-1]).all(axis=0)
    if dup.any():
        first = np.maximum.accumulate(np.where(dup, 0, np.arange(len(order))))
        kept_value = value[order][first]
        for j in np.flatnonzero(dup).tolist():
            i = int(order[j])
            same = "identical copy" if value[i] == kept_value[j] else "different value"
            src = int(source[i])
            quarantine.add(
                f"duplicate point ({same}; first received kept) "
                f"(workload {wids[src]}, {mtypes[mtype_idx[i]]})",
                raw_point(src, int(pos[i])),
                received[src],
            )
    take = pa.array(order[~dup])
    kept = t.take(take)
    src_kept = kept["source"]
    n = kept.num_rows
    rows = pa.table(
        {
            "usage_date": pa.repeat(pa.scalar(day, pa.date32()), n),
            "workload_id": pa.array(wids, pa.string()).take(src_kept),
            "metric_type": kept["metric_type"].cast(pa.string()),
            "labels_json": kept["labels_json"].cast(pa.string()),
            "ts": kept["ts"],
            "value": kept["value"],
            "step_seconds": pa.array(steps, pa.int64()).take(src_kept),
            "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
            "fetched_at": pa.array(received, TS).take(src_kept),
        }
    )
    return Normalised(
        rows.cast(WORKLOAD_METRICS), quarantine.table(), records, len(quarantine), out_of_window
    )
