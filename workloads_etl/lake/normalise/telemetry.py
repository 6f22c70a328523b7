"""Telemetry answers (``GET /api/v1/workloads/telemetry``) -> one row per value, group keys
flattened (``group1_*``, ``group2_*``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from workloads_etl.lake.bounds import COUNT, Limits
from workloads_etl.lake.normalise.records import (
    Normalised,
    Quarantine,
    RecordError,
    decode_body,
    dumps,
    observed_at,
    typed,
)
from workloads_etl.lake.schemas import TELEMETRY, TELEMETRY_KEY
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_timestamps

# The key of a telemetry value within a day's partition (the partition key aside).
_KEY = TELEMETRY_KEY[1:]
# Telemetry values count workloads or GPUs of a whole cluster: never negative.
TELEMETRY_KIND = COUNT
DEFAULT_LIMITS = Limits()


def normalise_telemetry(
    dataset: str,
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Normalised:
    """The telemetry answers of one raw run -> rows and quarantine."""
    quarantine = Quarantine(dataset, day, run_id)
    cols: dict[str, list[Any]] = {name: [] for name in TELEMETRY.names}
    raws: list[tuple[Any, datetime]] = []
    records = 0
    for resp in responses:
        at = observed_at(resp)
        doc, problem = decode_body(resp, "values")
        ttype = resp.params.get("telemetryType") or (doc or {}).get("type")
        if problem is None and not isinstance(ttype, str):
            problem = "telemetry type missing from request and body"
        if problem is None and not isinstance(doc.get("timestamp"), str | None):
            problem = "timestamp is not a string"
        if problem is not None:
            records += 1
            quarantine.add(f"unparsable telemetry response: {problem}", resp.text, at)
            continue
        group_by = resp.params.get("groupBy") or None
        for item in doc["values"]:
            records += 1
            try:
                if not isinstance(item, dict):
                    raise RecordError("telemetry value is not an object")
                value = item.get("value")
                if not isinstance(value, str):
                    raise RecordError("value missing or not a string")
                try:
                    number = float(value)
                except ValueError as exc:
                    raise RecordError(f"value is not numeric: {value!r}") from exc
                if not math.isfinite(number):
                    raise RecordError(f"value is not finite: {value!r}")
                problem = limits.problem(number, TELEMETRY_KIND)
                if problem is not None:
                    raise RecordError(f"value {problem}")
                groups = item.get("groups") or []
                if not isinstance(groups, list) or len(groups) > 2:
                    raise RecordError("groups must be an array of at most 2 items")
                flat: list[str | None] = []
                for g in groups:
                    if not isinstance(g, dict):
                        raise RecordError("group is not an object")
                    for key in ("key", "value", "name"):
                        flat.append(typed(g.get(key), "string", f"groups.{key}"))
                flat += [None] * (6 - len(flat))
            except RecordError as exc:
                quarantine.add(str(exc), dumps(item), at)
                continue
            for name, v in zip(
                (
                    "fetched_at",
                    "telemetry_type",
                    "group_by",
                    "timestamp",
                    "value",
                    "group1_key",
                    "group1_value",
                    "group1_name",
                    "group2_key",
                    "group2_value",
                    "group2_name",
                ),
                (at, ttype, group_by, doc.get("timestamp"), number, *flat),
                strict=True,
            ):
                cols[name].append(v)
            raws.append((item, at))
    n = len(raws)
    ts, bad = parse_timestamps(pa.array(cols["timestamp"], pa.string()))
    cols["snapshot_date"] = [day] * n
    cols["run_id"] = [run_id] * n
    arrays = {f.name: pa.array(cols[f.name], f.type) for f in TELEMETRY if f.name != "timestamp"}
    arrays["timestamp"] = ts
    table = pa.table(arrays).select(TELEMETRY.names).cast(TELEMETRY)
    keep = np.ones(n, dtype=bool)
    for bad_pos in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
        keep[bad_pos] = False
        quarantine.add(
            f"unparsable timestamp {cols['timestamp'][bad_pos]!r}",
            dumps(raws[bad_pos][0]),
            raws[bad_pos][1],
        )
    # Duplicate keys: keep the first received.
    seen: set[tuple[Any, ...]] = set()
    keys: list[tuple[Any, ...]] = (
        list(zip(*(table[c].to_pylist() for c in _KEY), strict=True)) if n else []
    )
    for i, pk in enumerate(keys):
        if not keep[i]:
            continue
        if pk in seen:
            keep[i] = False
            quarantine.add(
                "duplicate telemetry value (first received kept)", dumps(raws[i][0]), raws[i][1]
            )
        seen.add(pk)
    return Normalised(table.filter(pa.array(keep)), quarantine.table(), records, len(quarantine))
