"""Normalise raw API responses into the Arrow schemas of :mod:`workloads_etl.lake.schemas`.

Every record received ends up as a row, as a quarantine row with a reason, or (only an
identical repeat of a workload already made a row) dropped and counted; a bad record never
stops a partition. :class:`NormaliseResult` counts per partition:

- ``records``: for workloads (snapshots and deleted) one item of ``workloads`` (an unparsable
  page counts as one record); for metrics one point of ``values`` (an unparsable response or
  measurement counts as one); for telemetry one item of ``values`` (an unparsable response
  counts as one).
- ``rows``: rows written. ``rejected``: records with no row, each with a quarantine row.
  ``duplicates_dropped``: identical repeats of a workload (workloads only). ``out_of_window``:
  metric points of another day's partition (metrics only).
- ``field_issues``: rows kept with one or more fields set to null (workloads only), each with
  one quarantine row. ``quarantined``: rows of the quarantine partition.

Always ``rows + rejected + duplicates_dropped + out_of_window == records`` and
``quarantined == rejected + field_issues``; :func:`normalise_partition` asserts both. A
quarantine row of a field issue has a reason ending in ``(row kept, field set to null)`` or
``(row kept, fields set to null)`` (:data:`FIELD_ISSUE_MARK` finds both); any other quarantine
row is a rejected record.

Workload records: rejected whole or row kept. A workload record is rejected (no row) only when
it cannot be a row: it is not a JSON object, its ``id`` is missing, null or not a uuid (the
page holding it is unparsable, or it is an older copy of a workload id, see below). Every other
problem is a field issue: the row is kept, the offending column(s) are null, and one quarantine
row per record lists every problem, e.g. ``allocated_gpu_memory_bytes: unparsable quantity
'12 gigs' (row kept, field set to null)``. Field issues are:

- an unparsable Kubernetes quantity (``*_bytes`` columns);
- an unparsable timestamp in any timestamp field, ``createdAt`` and ``updatedAt`` included;
- a value of the wrong JSON type for a scalar (string, integer, number, boolean), an integer
  outside int64, a non-finite number, or a string list that is not an array of strings;
- a nested object (``requestedPods``, ``workloadRequestedResources``, ``allocatedResources``,
  their ``gpu``/``cpu``/... parts) that is not an object: all its columns are null.

So a workload with one bad field is still listed, its metrics fetched and charged; the
quarantine row (with the whole record as received) says what was lost.

Decisions on the contract:

- Required fields other than ``id`` that are absent become nulls (older control planes omit
  some).
- Offset paging over a changing list repeats workloads, and both passes of a listing are
  recorded. Within one run an identical repeat of a workload (same JSON content, keys in any
  order) is dropped and counted in ``duplicates_dropped``: it is neither a row nor quarantined.
  Copies of one workload id with different content: the copy with the latest ``updatedAt``
  (then the latest received) is the row; every other copy is rejected and quarantined with a
  reason saying so. Rejected records (no usable ``id``) are never treated as repeats: each is
  quarantined. Repeats of a metric point (same primary key) are quarantined as rejected
  (identical or not); the first received is the row.
- Unknown enum values (``phase``, ``source``, ``sourceApi``, ``phaseReason``,
  ``gpuRequestType``) keep the row with the value as sent (newer control planes add values)
  and are counted in :attr:`NormaliseResult.unknown_enum_values` (also in the logs);
  they are not quarantined.
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
    """Counts of one normalised partition; see the module docstring for the accounting.

    ``rows + rejected + duplicates_dropped + out_of_window == records`` and
    ``quarantined == rejected + field_issues``.
    """

    dataset: str
    day: date
    run_id: str
    records: int  # records received (see the module docstring for what one record is)
    rows: int  # rows written to the lake partition
    rejected: int  # records with no row (each has a quarantine row)
    quarantined: int  # rows written to the quarantine partition
    field_issues: int = 0  # rows kept with bad fields set to null (each has a quarantine row)
    duplicates_dropped: int = 0  # identical repeats of a workload: no row, not quarantined
    out_of_window: int = 0  # metric points that belong to another day
    unknown_enum_values: dict[str, int] = field(default_factory=dict)
    manifest: Manifest | None = None
    quarantine_manifest: Manifest | None = None


@dataclass
class Normalised:
    """What one dataset's responses normalise to, before anything is written."""

    rows: pa.Table
    quarantine: pa.Table
    records: int
    rejected: int
    out_of_window: int = 0
    unknown_enum_values: dict[str, int] = field(default_factory=dict)
    field_issues: int = 0
    duplicates_dropped: int = 0


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
    """A record for ``raw_record``: compact JSON, keys in the order received."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _dumps_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _canonical(value: Any) -> str | None:
    return None if value is None else _dumps_canonical(value)


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


# Ends the reason of a quarantine row whose record kept its row (a field issue); with more
# than one field nulled it reads "(row kept, fields set to null)". See the module docstring.
FIELD_ISSUE_MARK = "(row kept, field"
FIELD_ISSUE_SUFFIX = " (row kept, field set to null)"


class _Fields:
    """Field-level checks of one record: a bad value becomes null and its problem is noted."""

    def __init__(self) -> None:
        # (problem, whether it nulls several columns: a whole nested object)
        self.problems: list[tuple[str, bool]] = []

    def typed(self, value: Any, kind: str, where: str) -> Any:
        try:
            return _typed(value, kind, where)
        except _BadRecord as exc:
            self.problems.append((str(exc), False))
            return None

    def object(self, value: Any, where: str) -> dict[str, Any]:
        try:
            return _object(value, where)
        except _BadRecord as exc:
            self.problems.append((str(exc), True))
            return {}

    def strings(self, value: Any, where: str) -> list[str] | None:
        if value is None or (isinstance(value, list) and all(isinstance(x, str) for x in value)):
            return value
        self.problems.append((f"{where}: expected array of strings", False))
        return None


def _flatten_workload(rec: Any) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """One workload object -> (column values, field problems).

    Timestamps and quantities are still strings here. Raises :class:`_BadRecord` only when
    the record cannot be a row at all (not an object, no usable ``id``); a bad value of any
    other field becomes null and is described in the returned problems.
    """
    if not isinstance(rec, dict):
        raise _BadRecord(f"workload is a {type(rec).__name__}, expected an object")
    if "id" not in rec or rec["id"] is None:
        raise _BadRecord("missing required field id")
    if not _is_uuid(rec["id"]):
        raise _BadRecord("id is not a uuid")
    f = _Fields()
    row: dict[str, Any] = {"workload_id": rec["id"]}
    extra: dict[str, Any] = {k: v for k, v in rec.items() if k not in _HANDLED}
    for api, (col, kind) in _SCALARS.items():
        row[col] = f.typed(rec.get(api), kind, api)
    for api, col in _STRING_LISTS.items():
        row[col] = f.strings(rec.get(api), api)
    for api, col in _JSON_FIELDS.items():
        row[col] = _canonical(rec.get(api))
    pods = f.object(rec.get("requestedPods"), "requestedPods")
    for key, col in _REQUESTED_PODS.items():
        row[col] = f.typed(pods.get(key), _INT, f"requestedPods.{key}")
    extra.update({f"requestedPods.{k}": v for k, v in pods.items() if k not in _REQUESTED_PODS})
    for api, prefix in _RESOURCE_OBJECTS.items():
        res = f.object(rec.get(api), api)
        row[f"{prefix}_gpu_request_type"] = f.typed(
            res.get("gpuRequestType"), _STR, f"{api}.gpuRequestType"
        )
        for name, kind, unit in (
            ("gpu", _FLOAT, ""),
            ("gpuMemory", _STR, "_bytes"),
            ("cpu", _FLOAT, "_cores"),
            ("cpuMemory", _STR, "_bytes"),
        ):
            sub = f.object(res.get(name), f"{api}.{name}")
            for which in ("request", "limit"):
                row[f"{prefix}_{_RESOURCE_COLUMN[name]}_{which}{unit}"] = f.typed(
                    sub.get(which), kind, f"{api}.{name}.{which}"
                )
            extra.update(
                {f"{api}.{name}.{k}": v for k, v in sub.items() if k not in ("request", "limit")}
            )
        row[f"{prefix}_extended_resources_json"] = _canonical(res.get("extendedResources"))
        known = ("gpuRequestType", "gpu", "gpuMemory", "cpu", "cpuMemory", "extendedResources")
        extra.update({f"{api}.{k}": v for k, v in res.items() if k not in known})
    alloc = f.object(rec.get("allocatedResources"), "allocatedResources")
    row["allocated_gpu"] = f.typed(alloc.get("gpu"), _FLOAT, "allocatedResources.gpu")
    row["allocated_gpu_memory_bytes"] = f.typed(
        alloc.get("gpuMemory"), _STR, "allocatedResources.gpuMemory"
    )
    row["allocated_cpu_cores"] = f.typed(alloc.get("cpu"), _FLOAT, "allocatedResources.cpu")
    row["allocated_cpu_memory_bytes"] = f.typed(
        alloc.get("cpuMemory"), _STR, "allocatedResources.cpuMemory"
    )
    row["allocated_extended_resources_json"] = _canonical(alloc.get("extendedResources"))
    known_alloc = ("gpu", "gpuMemory", "cpu", "cpuMemory", "extendedResources")
    extra.update({f"allocatedResources.{k}": v for k, v in alloc.items() if k not in known_alloc})
    row["extra_fields_json"] = _canonical(extra) if extra else None
    return row, f.problems


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
) -> Normalised:
    quarantine = _Quarantine(dataset, day, run_id)
    rows: list[dict[str, Any]] = []
    problems: list[list[tuple[str, bool]]] = []  # per row: (problem, several fields nulled)
    sources: list[tuple[Any, datetime]] = []  # (record, received_at) per row
    seen: set[str] = set()  # canonical JSON of every record made a row
    records = rejected = dropped = 0
    first_received: datetime | None = None
    for resp in responses:
        received = observed_at(resp)
        first_received = received if first_received is None else min(first_received, received)
        doc, problem = _body(resp, "workloads")
        if problem is not None:
            records += 1
            rejected += 1
            quarantine.add(f"unparsable workloads page: {problem}", resp.text, received)
            continue
        for rec in doc["workloads"]:
            records += 1
            try:
                row, issues = _flatten_workload(rec)
            except _BadRecord as exc:
                rejected += 1
                quarantine.add(str(exc), _dumps(rec), received)
                continue
            canonical = _dumps_canonical(rec)
            if canonical in seen:  # a page repeated by offset paging over a changing list
                dropped += 1
                continue
            seen.add(canonical)
            rows.append(row)
            problems.append(issues)
            sources.append((rec, received))
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
    for f in WORKLOAD_SNAPSHOTS:
        if f.name in _QUANTITY_COLUMNS:
            parsed, bad = parse_quantity_array(pa.array(columns[f.name], pa.string()))
            what = "quantity"
        elif f.name in _TIME_COLUMNS:
            parsed, bad = parse_timestamps(pa.array(columns[f.name], pa.string()))
            what = "timestamp"
        else:
            arrays[f.name] = pa.array(columns[f.name], f.type)
            continue
        arrays[f.name] = parsed  # unparsable values are null already
        for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
            problems[i].append((f"{f.name}: unparsable {what} {columns[f.name][i]!r}", False))
    table = pa.table(arrays, schema=WORKLOAD_SNAPSHOTS)

    # Copies of one id with different content: keep the latest updatedAt, then the latest
    # received; the other copies have no row.
    keep = np.ones(n, dtype=bool)
    by_id: dict[str, list[int]] = {}
    for j, row in enumerate(rows):
        by_id.setdefault(row["workload_id"], []).append(j)
    updated = table["updated_at"].to_pylist()
    min_ts = datetime.min.replace(tzinfo=UTC)
    for wid, idx in by_id.items():
        if len(idx) < 2:
            continue
        winner = max(idx, key=lambda j: (updated[j] or min_ts, sources[j][1], j))
        for j in idx:
            if j != winner:
                keep[j] = False
                rejected += 1
                quarantine.add(
                    f"duplicate workload id {wid} in one snapshot "
                    "(different content; the copy with the latest updatedAt kept)",
                    _dumps(sources[j][0]),
                    sources[j][1],
                )

    field_issues = 0
    for j in np.flatnonzero(keep).tolist():
        if problems[j]:
            field_issues += 1
            several = len(problems[j]) > 1 or problems[j][0][1]
            quarantine.add(
                "; ".join(text for text, _ in problems[j])
                + (" (row kept, fields set to null)" if several else FIELD_ISSUE_SUFFIX),
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
    return Normalised(
        table,
        quarantine.table(),
        records,
        rejected,
        unknown_enum_values=dict(unknown),
        field_issues=field_issues,
        duplicates_dropped=dropped,
    )


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


def _normalise_metrics(responses: Iterable[RawResponse], day: date, run_id: str) -> Normalised:
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
    return Normalised(
        rows.cast(WORKLOAD_METRICS), quarantine.table(), records, len(quarantine), out_of_window
    )


# --------------------------------------------------------------------------- telemetry


def normalise_telemetry(
    responses: Iterable[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    """Responses of ``GET /api/v1/workloads/telemetry`` -> (rows, quarantine)."""
    res = _normalise_telemetry(responses, day, run_id)
    return res.rows, res.quarantine


def _normalise_telemetry(responses: Iterable[RawResponse], day: date, run_id: str) -> Normalised:
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
    return Normalised(table.filter(pa.array(keep)), quarantine.table(), records, len(quarantine))


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


def normalise_responses(
    dataset: str, responses: Sequence[RawResponse], day: date, run_id: str
) -> Normalised:
    """Normalise the responses of one raw run of ``dataset`` (rows, quarantine and counts)."""
    if dataset in ("workload_snapshots", "deleted_workloads"):
        return _normalise_workloads(responses, day, run_id, None, dataset)
    if dataset == "workload_metrics":
        return _normalise_metrics(responses, day, run_id)
    if dataset == "telemetry":
        return _normalise_telemetry(responses, day, run_id)
    raise ValueError(f"no normaliser for dataset {dataset!r}")


def _check_accounting(r: NormaliseResult) -> None:
    """Every record is a row, rejected, a dropped identical repeat or another day's point."""
    accounted = r.rows + r.rejected + r.duplicates_dropped + r.out_of_window
    if accounted != r.records:  # a bug, never bad input
        raise AssertionError(
            f"{r.dataset} {r.day}: {accounted} records accounted for "
            f"({r.rows} rows + {r.rejected} rejected + {r.duplicates_dropped} duplicates "
            f"dropped + {r.out_of_window} outside the day), {r.records} received"
        )
    if r.quarantined != r.rejected + r.field_issues:  # a bug, never bad input
        raise AssertionError(
            f"{r.dataset} {r.day}: {r.quarantined} quarantine rows, expected "
            f"{r.rejected} rejected + {r.field_issues} field issues"
        )


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
    res = normalise_responses(dataset, responses, day, run)
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
        rejected=res.rejected,
        quarantined=res.quarantine.num_rows,
        field_issues=res.field_issues,
        duplicates_dropped=res.duplicates_dropped,
        out_of_window=res.out_of_window,
        unknown_enum_values=res.unknown_enum_values,
        manifest=manifest,
        quarantine_manifest=q_manifest,
    )
    _check_accounting(result)
    log.info(
        "normalised %s %s run %s: %d records: %d rows (%d with fields set to null), "
        "%d rejected, %d identical repeats dropped, %d outside the day",
        dataset,
        day,
        run,
        result.records,
        result.rows,
        result.field_issues,
        result.rejected,
        result.duplicates_dropped,
        result.out_of_window,
    )
    return result
