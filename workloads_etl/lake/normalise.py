"""Normalise raw API responses into the Arrow schemas of :mod:`workloads_etl.lake.schemas`.

Every record received ends up either as a row or as a quarantine row with a reason; a bad
record never stops a partition. Accounting per dataset:

- workloads (snapshots and deleted): a record is one item of ``workloads`` (an unparsable
  page counts as one record). ``rows + quarantined == records``.
- metrics: a record is one point of ``values`` (an unparsable response or measurement
  counts as one record). Points outside ``[day, day + 1)`` UTC belong to another day's
  partition and are counted as ``out_of_window``: ``rows + quarantined + out_of_window ==
  records``.
- telemetry: a record is one item of ``values`` (an unparsable response counts as one).

Decisions on the contract:

- Only a missing or non-uuid ``id`` quarantines a workload for a missing field; other
  required fields that are absent become nulls (older control planes omit some).
- A value of the wrong JSON type, an unparsable timestamp or quantity quarantines the record.
- Unknown enum values (``phase``, ``source``, ``sourceApi``, ``phaseReason``,
  ``gpuRequestType``) keep the row with the value as sent (newer control planes add values)
  and are counted in :attr:`NormaliseResult.unknown_enum_values` (also in the logs);
  they are not quarantined, so a row is never both kept and quarantined.
- Duplicate workload ids within one snapshot: the copy with the latest ``updatedAt`` (then
  the last received) is kept, every other copy is quarantined, with a reason saying whether
  it was identical or different. Duplicate metric points (same primary key) likewise: the
  first received is kept.
- Metric values must be finite numbers (``NaN``/``Inf`` are quarantined); a missing value
  or timestamp quarantines the point; an empty/absent ``labels`` map gives ``labels_json``
  null.
- Unknown top-level workload fields are kept in ``extra_fields_json``; unknown keys inside
  the flattened objects (resources, requestedPods) are kept there too, as ``parent.key``.
- ``quarantined_at`` is the time the offending response was received, so re-normalising the
  same raw run gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.config import DataPaths
from workloads_etl.contract import enum_values
from workloads_etl.lake.parquet import Manifest, write_partition
from workloads_etl.lake.quantity import parse_quantity_array
from workloads_etl.lake.raw import RawLanding
from workloads_etl.lake.schemas import (
    DATASETS,
    QUARANTINE,
    TELEMETRY,
    TS,
    WORKLOAD_METRICS,
    WORKLOAD_SNAPSHOTS,
)
from workloads_etl.runai.metrics import (
    NULL,
    OK,
    UNPARSABLE,
    WRONG_TYPE,
    SampleCollector,
    loads,
)
from workloads_etl.runai.models import RawResponse

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- timestamps

_TS_SHAPE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_TS_ZONE = r"(Z|[+-]\d{2}(:?\d{2})?)$"


def parse_timestamps(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Parse ISO 8601 strings to ``timestamp[us, UTC]``; return ``(timestamps, invalid)``.

    Accepts ``2024-12-20T14:30:00Z``, offsets, and the zone-less form
    ``2023-06-06 12:09:18.211`` (read as UTC). Fractions beyond microseconds are truncated.
    Nulls stay null and are valid.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    if len(values) == 0:
        return pa.array([], TS), pa.array([], pa.bool_())
    shaped_ok = pc.match_substring_regex(values, _TS_SHAPE)
    shaped = pc.if_else(shaped_ok, values, pa.scalar(None, pa.string()))
    shaped = pc.replace_substring_regex(shaped, r"(\.\d{6})\d+", r"\1")
    zoned = pc.if_else(
        pc.match_substring_regex(shaped, _TS_ZONE),
        shaped,
        pc.binary_join_element_wise(shaped, pa.scalar("Z"), pa.scalar("")),
    )
    try:
        ts = zoned.cast(TS)
    except pa.ArrowInvalid:
        # Rare: well-shaped but impossible dates (month 13). Parse distinct values one by one.
        encoded = pc.dictionary_encode(zoned)
        parsed: list[datetime | None] = []
        for text in encoded.dictionary.to_pylist():
            try:
                parsed.append(pa.array([text]).cast(TS)[0].as_py())
            except pa.ArrowInvalid:
                parsed.append(None)
        ts = pc.take(pa.array(parsed, TS), encoded.indices)
    invalid = pc.and_(pc.is_valid(values), pc.is_null(ts))
    return ts, invalid


# --------------------------------------------------------------------------- results


@dataclass
class NormaliseResult:
    dataset: str
    day: date
    run_id: str
    records: int
    rows: int
    quarantined: int
    out_of_window: int = 0
    unknown_enum_values: dict[str, int] = field(default_factory=dict)
    manifest: Manifest | None = None
    quarantine_manifest: Manifest | None = None


@dataclass
class _Normalised:
    rows: pa.Table
    quarantine: pa.Table
    records: int
    out_of_window: int = 0
    unknown_enum_values: dict[str, int] = field(default_factory=dict)


class _Quarantine:
    def __init__(self, dataset: str, day: date, run_id: str) -> None:
        self.dataset, self.day, self.run_id = dataset, day, run_id
        self.reasons: list[str] = []
        self.raws: list[str] = []
        self.times: list[datetime] = []

    def add(self, reason: str, raw: str, at: datetime) -> None:
        self.reasons.append(reason)
        self.raws.append(raw)
        self.times.append(at)

    def __len__(self) -> int:
        return len(self.reasons)

    def table(self) -> pa.Table:
        n = len(self.reasons)
        return pa.table(
            {
                "dataset": pa.array([self.dataset] * n, pa.string()),
                "quarantine_date": pa.array([self.day] * n, pa.date32()),
                "reason": pa.array(self.reasons, pa.string()),
                "raw_record": pa.array(self.raws, pa.string()),
                "run_id": pa.array([self.run_id] * n, pa.string()),
                "quarantined_at": pa.array(self.times, TS),
            },
            schema=QUARANTINE,
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _canonical(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _is_uuid(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _body(resp: RawResponse, key: str) -> tuple[Any, str | None]:
    """Decode a response body; return ``(document, problem)``."""
    if not 200 <= resp.status < 300:
        return None, f"HTTP status {resp.status}"
    try:
        doc = json.loads(resp.text)
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"
    if not isinstance(doc, dict):
        return None, f"body is a {type(doc).__name__}, expected an object"
    if not isinstance(doc.get(key), list):
        return None, f"body has no {key!r} array"
    return doc, None


# --------------------------------------------------------------------------- workloads


class _BadRecord(ValueError):
    pass


_STR, _INT, _FLOAT, _BOOL, _TIME = "str", "int", "float", "bool", "ts"

# API field -> (column, kind)
_SCALARS: dict[str, tuple[str, str]] = {
    "name": ("name", _STR),
    "type": ("type", _STR),
    "category": ("category", _STR),
    "phase": ("phase", _STR),
    "k8sPhase": ("k8s_phase", _STR),
    "phaseMessage": ("phase_message", _STR),
    "phaseReason": ("phase_reason", _STR),
    "source": ("source", _STR),
    "sourceApi": ("source_api", _STR),
    "tenantId": ("tenant_id", _INT),
    "clusterId": ("cluster_id", _STR),
    "projectId": ("project_id", _STR),
    "projectName": ("project_name", _STR),
    "departmentId": ("department_id", _STR),
    "departmentName": ("department_name", _STR),
    "namespace": ("namespace", _STR),
    "submittedBy": ("submitted_by", _STR),
    "priority": ("priority", _INT),
    "priorityClassName": ("priority_class_name", _STR),
    "preemptible": ("preemptible", _BOOL),
    "distributedFramework": ("distributed_framework", _STR),
    "runningPods": ("running_pods", _INT),
    "createdAt": ("created_at", _TIME),
    "updatedAt": ("updated_at", _TIME),
    "phaseUpdatedAt": ("phase_updated_at", _TIME),
    "k8sPhaseUpdatedAt": ("k8s_phase_updated_at", _TIME),
    "completedAt": ("completed_at", _TIME),
    "deletedAt": ("deleted_at", _TIME),
    "guaranteedRuntimeEndsAt": ("guaranteed_runtime_ends_at", _TIME),
    "idleGpus": ("idle_gpus", _INT),
    "idleAllocatedGpus": ("idle_allocated_gpus", _FLOAT),
    "totalPendingTimeSeconds": ("total_pending_time_seconds", _INT),
    "totalRunningTimeSeconds": ("total_running_time_seconds", _INT),
    "aiApplicationId": ("ai_application_id", _STR),
    "aiApplicationName": ("ai_application_name", _STR),
    "command": ("command", _STR),
    "arguments": ("arguments", _STR),
}
_STRING_LISTS = {
    "requestedNodePools": "requested_node_pools",
    "currentNodePools": "current_node_pools",
    "images": "images",
}
_JSON_FIELDS = {
    "conditions": "conditions_json",
    "actionsSupport": "actions_support_json",
    "topology": "topology_json",
    "additionalFields": "additional_fields_json",
    "environmentVariables": "environment_variables_json",
    "datasources": "datasources_json",
    "environments": "environments_json",
    "externalConnections": "external_connections_json",
    "urls": "urls_json",
}
_REQUESTED_PODS = {k: f"requested_pods_{k}" for k in ("number", "min", "max", "parallelism")}
_REQUESTED_PODS["completions"] = "requested_pods_completions"
_RESOURCE_OBJECTS = {
    "workloadRequestedResources": "requested",
    "podsRequestedResources": "pods_requested",
}
_HANDLED = {
    "id",
    *_SCALARS,
    *_STRING_LISTS,
    *_JSON_FIELDS,
    "requestedPods",
    *_RESOURCE_OBJECTS,
    "allocatedResources",
}
# Columns holding quantity strings until the vectorised pass.
_QUANTITY_COLUMNS = [
    f"{p}_{r}_{w}_bytes"
    for p in _RESOURCE_OBJECTS.values()
    for r in ("gpu_memory", "cpu_memory")
    for w in ("request", "limit")
] + ["allocated_gpu_memory_bytes", "allocated_cpu_memory_bytes"]
_RESOURCE_COLUMN = {
    "gpu": "gpu",
    "gpuMemory": "gpu_memory",
    "cpu": "cpu",
    "cpuMemory": "cpu_memory",
}
_TIME_COLUMNS = [col for col, kind in _SCALARS.values() if kind == _TIME]
_ENUMS = {
    "phase": "Phase",
    "source": "Source",
    "source_api": "SourceApi",
    "phase_reason": "PhaseReason",
    "requested_gpu_request_type": "GpuRequestType",
    "pods_requested_gpu_request_type": "GpuRequestType",
}
_INT64 = (-(2**63), 2**63 - 1)


def _typed(value: Any, kind: str, where: str) -> Any:
    if value is None:
        return None
    if kind in (_STR, _TIME):
        if isinstance(value, str):
            return value
    elif kind == _INT:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64[0] <= value <= _INT64[1]:
                return value
            raise _BadRecord(f"{where}: integer out of range")
    elif kind == _FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
            raise _BadRecord(f"{where}: number is not finite")
    elif kind == _BOOL and isinstance(value, bool):
        return value
    expected = {_STR: "string", _TIME: "date-time string", _INT: "integer", _FLOAT: "number"}
    raise _BadRecord(
        f"{where}: expected {expected.get(kind, 'boolean')}, got {type(value).__name__}"
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadRecord(f"{where}: expected object, got {type(value).__name__}")
    return value


def _flatten_workload(rec: Any) -> dict[str, Any]:
    """One workload object -> column values (timestamps and quantities still as strings)."""
    if not isinstance(rec, dict):
        raise _BadRecord(f"workload is a {type(rec).__name__}, expected an object")
    if "id" not in rec or rec["id"] is None:
        raise _BadRecord("missing required field id")
    if not _is_uuid(rec["id"]):
        raise _BadRecord("id is not a uuid")
    row: dict[str, Any] = {"workload_id": rec["id"]}
    extra: dict[str, Any] = {k: v for k, v in rec.items() if k not in _HANDLED}
    for api, (col, kind) in _SCALARS.items():
        row[col] = _typed(rec.get(api), kind, api)
    for api, col in _STRING_LISTS.items():
        value = rec.get(api)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(x, str) for x in value)
        ):
            raise _BadRecord(f"{api}: expected array of strings")
        row[col] = value
    for api, col in _JSON_FIELDS.items():
        row[col] = _canonical(rec.get(api))
    pods = _object(rec.get("requestedPods"), "requestedPods")
    for key, col in _REQUESTED_PODS.items():
        row[col] = _typed(pods.get(key), _INT, f"requestedPods.{key}")
    extra.update({f"requestedPods.{k}": v for k, v in pods.items() if k not in _REQUESTED_PODS})
    for api, prefix in _RESOURCE_OBJECTS.items():
        res = _object(rec.get(api), api)
        row[f"{prefix}_gpu_request_type"] = _typed(res.get("gpuRequestType"), _STR, api)
        for name, kind, unit in (
            ("gpu", _FLOAT, ""),
            ("gpuMemory", _STR, "_bytes"),
            ("cpu", _FLOAT, "_cores"),
            ("cpuMemory", _STR, "_bytes"),
        ):
            sub = _object(res.get(name), f"{api}.{name}")
            for which in ("request", "limit"):
                row[f"{prefix}_{_RESOURCE_COLUMN[name]}_{which}{unit}"] = _typed(
                    sub.get(which), kind, f"{api}.{name}.{which}"
                )
            extra.update(
                {f"{api}.{name}.{k}": v for k, v in sub.items() if k not in ("request", "limit")}
            )
        row[f"{prefix}_extended_resources_json"] = _canonical(res.get("extendedResources"))
        known = ("gpuRequestType", "gpu", "gpuMemory", "cpu", "cpuMemory", "extendedResources")
        extra.update({f"{api}.{k}": v for k, v in res.items() if k not in known})
    alloc = _object(rec.get("allocatedResources"), "allocatedResources")
    row["allocated_gpu"] = _typed(alloc.get("gpu"), _FLOAT, "allocatedResources.gpu")
    row["allocated_gpu_memory_bytes"] = _typed(
        alloc.get("gpuMemory"), _STR, "allocatedResources.gpuMemory"
    )
    row["allocated_cpu_cores"] = _typed(alloc.get("cpu"), _FLOAT, "allocatedResources.cpu")
    row["allocated_cpu_memory_bytes"] = _typed(
        alloc.get("cpuMemory"), _STR, "allocatedResources.cpuMemory"
    )
    row["allocated_extended_resources_json"] = _canonical(alloc.get("extendedResources"))
    known_alloc = ("gpu", "gpuMemory", "cpu", "cpuMemory", "extendedResources")
    extra.update({f"allocatedResources.{k}": v for k, v in alloc.items() if k not in known_alloc})
    row["extra_fields_json"] = _canonical(extra) if extra else None
    return row


def _enum_sets() -> dict[str, frozenset[str]]:
    return {col: frozenset(enum_values(schema)) for col, schema in _ENUMS.items()}


def normalise_workloads(
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    snapshot_at: datetime | None = None,
    *,
    dataset: str = "workload_snapshots",
) -> tuple[pa.Table, pa.Table]:
    """Pages of ``GET /api/v1/workloads`` -> (rows, quarantine)."""
    res = _normalise_workloads(responses, day, run_id, snapshot_at, dataset)
    return res.rows, res.quarantine


def _normalise_workloads(
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    snapshot_at: datetime | None,
    dataset: str,
) -> _Normalised:
    quarantine = _Quarantine(dataset, day, run_id)
    rows: list[dict[str, Any]] = []
    sources: list[tuple[Any, datetime]] = []  # (record, received_at) per row
    records = 0
    first_received: datetime | None = None
    for resp in responses:
        received = observed_at(resp)
        first_received = received if first_received is None else min(first_received, received)
        doc, problem = _body(resp, "workloads")
        if problem is not None:
            records += 1
            quarantine.add(f"unparsable workloads page: {problem}", resp.text, received)
            continue
        for rec in doc["workloads"]:
            records += 1
            try:
                rows.append(_flatten_workload(rec))
                sources.append((rec, received))
            except _BadRecord as exc:
                quarantine.add(str(exc), _dumps(rec), received)
    snap = (
        _utc(snapshot_at) if snapshot_at else first_received or datetime.combine(day, time(), UTC)
    )

    columns: dict[str, list[Any]] = {name: [] for name in WORKLOAD_SNAPSHOTS.names}
    for row in rows:
        for name in WORKLOAD_SNAPSHOTS.names:
            columns[name].append(row.get(name))
    n = len(rows)
    columns["snapshot_date"] = [day] * n
    columns["snapshot_at"] = [snap] * n
    columns["run_id"] = [run_id] * n
    arrays: dict[str, pa.Array] = {}
    problems: list[list[str]] = [[] for _ in range(n)]
    for f in WORKLOAD_SNAPSHOTS:
        if f.name in _QUANTITY_COLUMNS:
            parsed, bad = parse_quantity_array(pa.array(columns[f.name], pa.string()))
            arrays[f.name] = parsed
            for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
                problems[i].append(f"{f.name}: unparsable quantity {columns[f.name][i]!r}")
        elif f.name in _TIME_COLUMNS:
            parsed, bad = parse_timestamps(pa.array(columns[f.name], pa.string()))
            arrays[f.name] = parsed
            for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
                problems[i].append(f"{f.name}: unparsable timestamp {columns[f.name][i]!r}")
        else:
            arrays[f.name] = pa.array(columns[f.name], f.type)
    table = pa.table(arrays, schema=WORKLOAD_SNAPSHOTS)

    keep = np.ones(n, dtype=bool)
    for pos, p in enumerate(problems):
        if p:
            keep[pos] = False
            quarantine.add("; ".join(p), _dumps(sources[pos][0]), sources[pos][1])

    # Duplicate ids: keep the latest updatedAt (then the last received).
    by_id: dict[str, list[int]] = {}
    for ok in np.flatnonzero(keep):
        by_id.setdefault(rows[ok]["workload_id"], []).append(int(ok))
    updated = table["updated_at"].to_pylist()
    for wid, idx in by_id.items():
        if len(idx) < 2:
            continue
        min_ts = datetime.min.replace(tzinfo=UTC)
        winner = max(idx, key=lambda j: (updated[j] or min_ts, j))
        kept = _canonical(sources[winner][0])
        for j in idx:
            if j == winner:
                continue
            keep[j] = False
            same = _canonical(sources[j][0]) == kept
            what = "identical copy" if same else "different content"
            quarantine.add(
                f"duplicate workload id {wid} in one snapshot ({what}; another copy kept)",
                _dumps(sources[j][0]),
                sources[j][1],
            )
    table = table.filter(pa.array(keep))

    unknown: Counter[str] = Counter()
    for col, allowed in _enum_sets().items():
        vc = pc.value_counts(table[col].drop_null()) if table.num_rows else []
        for item in vc:
            value = item["values"].as_py()
            if value not in allowed:
                unknown[f"{col}={value}"] += item["counts"].as_py()
    if unknown:
        log.warning("%s %s: unknown enum values kept as sent: %s", dataset, day, dict(unknown))
    return _Normalised(table, quarantine.table(), records, 0, dict(unknown))


# --------------------------------------------------------------------------- metrics


def _step_seconds(params: dict[str, str]) -> int:
    try:
        start = _utc(datetime.fromisoformat(params["start"].replace("Z", "+00:00")))
        end = _utc(datetime.fromisoformat(params["end"].replace("Z", "+00:00")))
    except (KeyError, ValueError, AttributeError) as exc:
        raise _BadRecord(f"request parameters start/end missing or invalid: {exc}") from exc
    raw_n = params.get("numberOfSamples")
    try:
        samples = 20 if raw_n is None or raw_n == "" else int(raw_n)
    except ValueError as exc:
        raise _BadRecord(f"numberOfSamples is not an integer: {raw_n!r}") from exc
    if samples <= 0:
        raise _BadRecord(f"numberOfSamples={samples}: sample step unknown")
    if end <= start:
        raise _BadRecord("request window end is not after start")
    return max(1, round((end - start).total_seconds() / samples))


def normalise_metrics(
    responses: Iterable[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    """Responses of ``GET /api/v1/workloads/{id}/metrics`` -> (long rows, quarantine)."""
    res = _normalise_metrics(responses, day, run_id)
    return res.rows, res.quarantine


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


def _dense_ranks(names: Sequence[str]) -> np.ndarray:
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.fromiter((rank[n] for n in names), dtype=np.int64, count=len(names))


def _normalise_metrics(responses: Iterable[RawResponse], day: date, run_id: str) -> _Normalised:
    quarantine = _Quarantine("workload_metrics", day, run_id)
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
            if not _is_uuid(wid):
                raise _BadRecord(f"workloadId path parameter is not a uuid: {wid!r}")
            step = _step_seconds(resp.params)
            if not 200 <= resp.status < 300:
                raise _BadRecord(f"HTTP status {resp.status}")
        except _BadRecord as exc:
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
        return _dumps(decoded[src]["measurements"][mi]["values"][vi])

    for r in samples.rejects:
        records += 1
        where = f"workload {wids[r.source]}" + (f", {r.metric_type}" if r.metric_type else "")
        quarantine.add(f"{r.reason} ({where})", _dumps(r.item), received[r.source])
    t = samples.table
    records += t.num_rows
    if t.num_rows == 0:
        return _Normalised(WORKLOAD_METRICS.empty_table(), quarantine.table(), records)

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
    value_ok = (value_code == OK) & np.isfinite(value)
    bad = ~ts_ok | (in_window & ~value_ok)
    pos = t["pos"].to_numpy()
    source = t["source"].to_numpy()
    mtypes = t["metric_type"].combine_chunks().dictionary.to_pylist()
    mtype_idx = t["metric_type"].combine_chunks().indices.to_numpy()
    for i in np.flatnonzero(bad).tolist():
        if ts_code[i] != OK:
            why = _TS_REASON[int(ts_code[i])]
        elif value_code[i] != OK:
            why = _VALUE_REASON[int(value_code[i])]
        else:
            why = "value is not finite"
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
            "step_seconds": pa.array(steps, pa.int32()).take(src_kept),
            "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
        }
    )
    return _Normalised(rows.cast(WORKLOAD_METRICS), quarantine.table(), records, out_of_window)


# --------------------------------------------------------------------------- telemetry


def normalise_telemetry(
    responses: Iterable[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    """Responses of ``GET /api/v1/workloads/telemetry`` -> (rows, quarantine)."""
    res = _normalise_telemetry(responses, day, run_id)
    return res.rows, res.quarantine


def _normalise_telemetry(responses: Iterable[RawResponse], day: date, run_id: str) -> _Normalised:
    quarantine = _Quarantine("telemetry", day, run_id)
    cols: dict[str, list[Any]] = {name: [] for name in TELEMETRY.names}
    raws: list[tuple[Any, datetime]] = []
    records = 0
    for resp in responses:
        at = observed_at(resp)
        doc, problem = _body(resp, "values")
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
                    raise _BadRecord("telemetry value is not an object")
                value = item.get("value")
                if not isinstance(value, str):
                    raise _BadRecord("value missing or not a string")
                try:
                    number = float(value)
                except ValueError as exc:
                    raise _BadRecord(f"value is not numeric: {value!r}") from exc
                if not math.isfinite(number):
                    raise _BadRecord(f"value is not finite: {value!r}")
                groups = item.get("groups") or []
                if not isinstance(groups, list) or len(groups) > 2:
                    raise _BadRecord("groups must be an array of at most 2 items")
                flat: list[str | None] = []
                for g in groups:
                    if not isinstance(g, dict):
                        raise _BadRecord("group is not an object")
                    for key in ("key", "value", "name"):
                        flat.append(_typed(g.get(key), _STR, f"groups.{key}"))
                flat += [None] * (6 - len(flat))
            except _BadRecord as exc:
                quarantine.add(str(exc), _dumps(item), at)
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
            _dumps(raws[bad_pos][0]),
            raws[bad_pos][1],
        )
    # Duplicate keys: keep the first received.
    seen: set[tuple[Any, ...]] = set()
    key_cols = [c for c in DATASETS["telemetry"].primary_key if c != "snapshot_date"]
    keys: list[tuple[Any, ...]] = (
        list(zip(*(table[c].to_pylist() for c in key_cols), strict=True)) if n else []
    )
    for i, pk in enumerate(keys):
        if not keep[i]:
            continue
        if pk in seen:
            keep[i] = False
            quarantine.add(
                "duplicate telemetry value (first received kept)", _dumps(raws[i][0]), raws[i][1]
            )
        seen.add(pk)
    return _Normalised(table.filter(pa.array(keep)), quarantine.table(), records)


# --------------------------------------------------------------------------- partitions


# The API operations whose responses become rows of each dataset.
DATASET_OPERATIONS: dict[str, frozenset[str]] = {
    "workload_snapshots": frozenset({"get_workloads"}),
    "deleted_workloads": frozenset({"get_workloads"}),
    "workload_metrics": frozenset({"get_workload_metrics"}),
    "telemetry": frozenset({"get_workloads_telemetry"}),
}


def observed_at(resp: RawResponse) -> datetime:
    """When the control plane answered: its ``Date`` header, else when the answer arrived.

    Using the server's clock makes a re-run against the same control-plane state give the
    same snapshot times.
    """
    header = resp.meta.get("server_date")
    if isinstance(header, str):
        try:
            return _utc(parsedate_to_datetime(header))
        except (TypeError, ValueError):
            pass
    return _utc(resp.received_at)


def _normalise(
    dataset: str, responses: Sequence[RawResponse], day: date, run_id: str
) -> _Normalised:
    if dataset in ("workload_snapshots", "deleted_workloads"):
        return _normalise_workloads(responses, day, run_id, None, dataset)
    if dataset == "workload_metrics":
        return _normalise_metrics(responses, day, run_id)
    if dataset == "telemetry":
        return _normalise_telemetry(responses, day, run_id)
    raise ValueError(f"no normaliser for dataset {dataset!r}")


def normalise_partition(
    paths: DataPaths, dataset: str, day: date, run_id: str | None = None
) -> NormaliseResult:
    """Normalise one raw run (the latest by default) into the lake partition of ``day``.

    Also writes the quarantine partition ``quarantine/dataset=<dataset>/quarantine_date=<day>``
    (possibly empty, so a re-run replaces stale quarantine rows). Safe to repeat: the same raw
    run gives byte-identical files.
    """
    landing = RawLanding(paths.raw)
    run = run_id if run_id is not None else landing.latest_run(dataset, day)
    wanted = DATASET_OPERATIONS[dataset]
    # Other responses of the run (e.g. the count asked for completeness) stay in raw only.
    responses = [r for r in landing.read(dataset, day, run) if r.operation in wanted]
    res = _normalise(dataset, responses, day, run)
    manifest = write_partition(paths.lake, dataset, res.rows, day, run)
    q_manifest = write_partition(
        paths.lake, "quarantine", res.quarantine, day, run, extra_keys={"dataset": dataset}
    )
    result = NormaliseResult(
        dataset=dataset,
        day=day,
        run_id=run,
        records=res.records,
        rows=res.rows.num_rows,
        quarantined=res.quarantine.num_rows,
        out_of_window=res.out_of_window,
        unknown_enum_values=res.unknown_enum_values,
        manifest=manifest,
        quarantine_manifest=q_manifest,
    )
    accounted = result.rows + result.quarantined + result.out_of_window
    if accounted != result.records:  # a bug, never bad input
        raise AssertionError(
            f"{dataset} {day}: {accounted} rows accounted for, {result.records} received"
        )
    log.info(
        "normalised %s %s run %s: %d rows, %d quarantined, %d outside the day",
        dataset,
        day,
        run,
        result.rows,
        result.quarantined,
        result.out_of_window,
    )
    return result
