"""The simulated Run:ai control plane: a Starlette app serving the workloads API slice.

Choices where the contract leaves room (the contract wins wherever it is explicit):

* ``POST /api/v1/token`` lists only 400/500/503, so wrong credentials are answered with
  400 ``Invalid client credentials`` (not 401). Grant types other than
  ``client_credentials`` and the deprecated ``app_token`` are 400.
* ``GET /api/v1/workloads`` and ``/count`` list no 400, yet invalid input (limit out of
  1..500, malformed ``filterBy``, unknown ``sortBy``) is still answered with 400 and an
  Error body rather than silently ignored.
* A workload id that is unknown, not yet created at the cluster's ``now``, or not a UUID is
  404 ``Resource id not found.`` (``get_workload`` lists no 400). Deleted workloads stay
  gettable by id (with ``deletedAt`` set) and keep serving metrics.
* Pod ids are ``uuid5(workload id, "pod-<i>")`` for ``i`` in ``0..pods-1``; the detailed
  workload lists them in ``additionalFields.podIds``. A pod's usage metrics are the
  workload's divided evenly among its pods; utilisation-like metrics are the workload's.
  Pod count and GPUs per pod are the workload's fixed layout (its requested pods and
  per-pod GPU request), whatever its phase, so a past window always reads the same. A pod
  holds ``ceil(gpus per pod)`` GPU devices (a fractional request shares one); ``*_PER_GPU``
  series split usage evenly over them (label ``gpu`` = ``0..n-1``) and are empty for a
  CPU-only pod.
* Metrics have samples only before the cluster's ``now``: a window reaching into the
  future is answered with the samples up to now.
* Metric values are the shortest decimal strings that round-trip the model's float64
  exactly (``repr``), integers without a fraction. Timestamps are ISO 8601 with ``Z``
  (``2024-12-20T14:30:00Z``, with fractional seconds only when needed) or, with the
  ``metrics_timestamp_format=space`` setting, ``2023-06-06 12:09:18.211``.
* Telemetry's ``CurrentNodepools`` group and ``nodepoolName`` filter use the node pool a
  workload currently runs in, as its ``currentNodePools`` says. Workloads that are not
  running (pending, finished) run in no pool: grouped by ``CurrentNodepools`` they form
  one group with value ``""`` (so groups still add up to the ungrouped total; for
  ``GPU_ALLOCATION`` that group is 0), and ``nodepoolName`` never selects them.
* ``PENDING_TIME_DISTRIBUTION`` groups pending workloads into the buckets of
  :data:`PENDING_BUCKETS` (group key ``PendingTime``). The response allows at most two
  groups per value, so this type accepts at most one ``groupBy`` field.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workloads_etl.contract import enum_values, load_spec
from workloads_etl.simulator import filters
from workloads_etl.simulator.auth import AuthError, Credentials, TokenStore
from workloads_etl.simulator.cluster import Cluster
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import (
    DroppedConnection,
    FaultConfig,
    FaultMiddleware,
    RequestFaultKey,
    corrupt_record,
    malformed_kind,
    unit_draw,
)

log = logging.getLogger(__name__)

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_SAMPLES = 1000
DEFAULT_SAMPLES = 20
PENDING_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-5m", 300.0),
    ("5m-1h", 3600.0),
    ("1h-1d", 86400.0),
    (">1d", float("inf")),
)
CURRENT_NODEPOOL = "currentNodepool"  # derived per request: see current_nodepool()
GROUP_COLUMNS = {
    "ClusterId": "clusterId",
    "DepartmentId": "departmentId",
    "ProjectId": "projectId",
    "Type": "type",
    "CurrentNodepools": CURRENT_NODEPOOL,
    "Phase": "phase",
    "Category": "category",
}
GROUP_NAME_COLUMNS = {"DepartmentId": "departmentName", "ProjectId": "projectName"}
# Pod metric type -> (workload metric type, per-pod share: "split" or "same", per GPU)
POD_METRIC_SOURCES: dict[str, tuple[str, str, bool]] = {
    "GPU_UTILIZATION": ("GPU_UTILIZATION", "same", False),
    "GPU_UTILIZATION_PER_GPU": ("GPU_UTILIZATION", "same", True),
    "GPU_MEMORY_USAGE_BYTES": ("GPU_MEMORY_USAGE_BYTES", "split", False),
    "GPU_MEMORY_USAGE_BYTES_PER_GPU": ("GPU_MEMORY_USAGE_BYTES", "split", True),
    "CPU_USAGE_CORES": ("CPU_USAGE_CORES", "split", False),
    "CPU_MEMORY_USAGE_BYTES": ("CPU_MEMORY_USAGE_BYTES", "split", False),
    "NIM_NUM_REQUESTS_RUNNING": ("NIM_NUM_REQUESTS_RUNNING", "split", False),
    "NIM_NUM_REQUESTS_WAITING": ("NIM_NUM_REQUESTS_WAITING", "split", False),
    "NIM_NUM_REQUEST_MAX": ("NIM_NUM_REQUEST_MAX", "split", False),
    "NIM_REQUEST_SUCCESS_TOTAL": ("NIM_REQUEST_SUCCESS_TOTAL", "split", False),
    "NIM_REQUEST_FAILURE_TOTAL": ("NIM_REQUEST_FAILURE_TOTAL", "split", False),
    "NIM_GPU_CACHE_USAGE_PERC": ("NIM_GPU_CACHE_USAGE_PERC", "same", False),
    "NIM_TIME_TO_FIRST_TOKEN_SECONDS": ("NIM_TIME_TO_FIRST_TOKEN_SECONDS", "same", False),
    "NIM_E2E_REQUEST_LATENCY_SECONDS": ("NIM_E2E_REQUEST_LATENCY_SECONDS", "same", False),
    "NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES": (
        "NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES",
        "same",
        False,
    ),
    "NIM_E2E_REQUEST_LATENCY_SECONDS_PERCENTILES": (
        "NIM_E2E_REQUEST_LATENCY_SECONDS_PERCENTILES",
        "same",
        False,
    ),
    "NVLINK_BANDWIDTH_TOTAL": ("NVLINK_BANDWIDTH_TOTAL", "split", False),
    "NVLINK_BANDWIDTH_TOTAL_PER_GPU": ("NVLINK_BANDWIDTH_TOTAL", "split", True),
}


class ApiError(Exception):
    """An error answered with the spec's Error body."""

    def __init__(self, status: int, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(
    status: int,
    message: str,
    details: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


# ----------------------------------------------------------------------------- helpers


def iso_z(dt: datetime) -> str:
    """``2024-12-20T14:30:00Z`` (fraction only when non-zero, in milliseconds or finer)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if dt.microsecond % 1000 == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_timestamps(ts: np.ndarray, form: str) -> list[str]:
    """Format datetime64[us] sample instants as the metrics endpoint writes them."""
    if len(ts) == 0:
        return []
    us = ts.astype("datetime64[us]")
    if form == "space":
        text = np.datetime_as_string(us, unit="ms")
        return [t.replace("T", " ") for t in text.tolist()]
    micro = us.astype(np.int64) % 1_000_000
    if not micro.any():
        text = np.datetime_as_string(us, unit="s")
    elif not (micro % 1000).any():
        text = np.datetime_as_string(us, unit="ms")
    else:
        text = np.datetime_as_string(us, unit="us")
    return [t + "Z" for t in text.tolist()]


def format_value(v: float) -> str:
    """Shortest round-tripping decimal; integral values without ``.0``."""
    if v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def sample_instants(start: datetime, end: datetime, n: int) -> np.ndarray:
    """``start + i * (end - start) / n`` for ``i`` in ``0..n-1``, rounded to the microsecond."""
    s = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "us")
    span = int((np.datetime64(end.astimezone(UTC).replace(tzinfo=None), "us") - s).astype(int))
    if n <= 0 or span <= 0:
        return np.empty(0, dtype="datetime64[us]")
    offsets = (2 * np.arange(n, dtype=np.int64) * span + n) // (2 * n)  # nearest microsecond
    return s + offsets.astype("timedelta64[us]")


def pod_ids(workload_id: str, pods: int) -> list[str]:
    base = uuid.UUID(workload_id)
    return [str(uuid.uuid5(base, f"pod-{i}")) for i in range(max(1, pods))]


def pod_gpu_devices(gpus_per_pod: float) -> int:
    """GPU devices a pod holds: whole GPUs rounded up (a fraction shares one device)."""
    return math.ceil(gpus_per_pod) if gpus_per_pod > 0 else 0


@lru_cache(maxsize=8)
def _enum(name: str) -> frozenset[str]:
    return frozenset(enum_values(name))


def _query_list(request: Request, name: str) -> list[str] | None:
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    items = [item.strip() for value in raw for item in value.split(",")]
    return [item for item in items if item]


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, f"Required parameter is missing: {name}")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Parameter {name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"Parameter {name} must be between {lo} and {hi}, got {value}")
    return value


def _bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"Parameter {name} must be true or false, got {raw[:40]!r}")


def _datetime_param(request: Request, name: str) -> datetime:
    raw = request.query_params.get(name)
    if not raw:
        raise ApiError(400, f"Required parameter is missing: {name}")
    try:
        return filters.parse_datetime(raw)
    except filters.FilterError:
        raise ApiError(400, f"Parameter {name} must be an ISO 8601 date-time") from None


def _metric_types(request: Request, enum_name: str) -> list[str]:
    types = _query_list(request, "metricType")
    if not types:
        raise ApiError(400, "Required parameter is missing: metricType")
    allowed = _enum(enum_name)
    unknown = [t for t in types if t not in allowed]
    if unknown:
        raise ApiError(
            400,
            f"Unknown metricType {', '.join(u[:60] for u in unknown)}",
            details=f"allowed: {', '.join(sorted(allowed))}",
        )
    return list(dict.fromkeys(types))


def _fault_key(request: Request) -> RequestFaultKey | None:
    key = request.scope.get("state", {}).get("fault_key")
    return key if isinstance(key, RequestFaultKey) else None


# ----------------------------------------------------------------------------- state


def snapshot_table(snapshot: Any) -> pa.Table:
    """Accept the model's snapshot as a pyarrow Table or a mapping of column arrays."""
    if isinstance(snapshot, pa.Table):
        return snapshot
    for attr in ("table", "columns"):
        inner = getattr(snapshot, attr, None)
        if isinstance(inner, pa.Table):
            return inner
        if isinstance(inner, dict):
            return pa.table(inner)
    if isinstance(snapshot, dict):
        return pa.table(snapshot)
    raise TypeError(f"unsupported snapshot type {type(snapshot).__name__}")


class Simulator:
    """Request handlers bound to one cluster, token store and fault configuration."""

    def __init__(self, config: SimulatorConfig, cluster: Cluster) -> None:
        self.config = config
        self.cluster = cluster
        faults = config.faults if isinstance(config.faults, FaultConfig) else FaultConfig()
        self.faults = faults
        ttl = faults.token_ttl if faults.token_ttl is not None else config.token_ttl_seconds
        self.tokens = TokenStore(Credentials(config.client_id, config.client_secret), ttl)

    # -- common

    def authorize(self, request: Request) -> None:
        self.tokens.check(request.headers.get("authorization"))

    def now(self) -> datetime:
        return self.cluster.now()

    def table(self, at: datetime) -> pa.Table:
        """The snapshot at ``at`` as a table (the model caches it per whole second)."""
        return snapshot_table(self.cluster.snapshot(at))

    def _row_of(self, workload_id: str, at: datetime) -> int:
        try:
            uuid.UUID(workload_id)
        except ValueError:
            raise ApiError(404, "Resource id not found.") from None
        index = self.cluster.workload_index(workload_id)
        if index is None:
            raise ApiError(404, "Resource id not found.")
        index_column = self.table(at).column("index").to_numpy()
        if not np.isin(index, index_column):  # known to the model, not yet created at `at`
            raise ApiError(404, "Resource id not found.")
        return int(index)

    def workload_record(self, index: int, at: datetime) -> dict[str, Any]:
        record = self.cluster.workload_json(index, at)
        kind = malformed_kind(self.faults, str(record.get("id")))
        return corrupt_record(record, kind) if kind else record

    def _selection(self, request: Request, at: datetime) -> tuple[pa.Table, np.ndarray]:
        deleted = _bool_param(request, "deleted")
        table = self.table(at)
        clauses = filters.parse_filter_by(request.query_params.getlist("filterBy") or None)
        base = table.column("deleted").to_numpy(zero_copy_only=False).astype(bool)
        if not deleted:
            base = ~base
        positions = filters.select(table, clauses, request.query_params.get("search"), base)
        return table, positions

    # -- endpoints

    async def token(self, request: Request) -> Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Request body must be JSON (TokenRequest)") from None
        return JSONResponse(self.tokens.grant(body))

    async def list_workloads(self, request: Request) -> Response:
        self.authorize(request)
        offset = _int_param(request, "offset", 0, 0, 2**31 - 1)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        sort_order = request.query_params.get("sortOrder") or "asc"
        if sort_order not in ("asc", "desc"):
            raise ApiError(400, f"Parameter sortOrder must be asc or desc, got {sort_order[:20]!r}")
        sort_by = request.query_params.get("sortBy") or None
        if sort_by is not None and sort_by not in filters.sortable_fields():
            raise ApiError(
                400, f"Invalid sortBy {sort_by[:60]!r}", ", ".join(filters.sortable_fields())
            )
        at = self.now()
        table, positions = self._selection(request, at)
        ordered = filters.sort_positions(table, positions, sort_by, sort_order == "desc")
        start = max(0, offset - self._drift(request, offset, limit, len(ordered)))
        page = ordered[start : start + limit]
        indexes = table.column("index").take(pa.array(page, type=pa.int64())).to_pylist()
        body: dict[str, Any] = {"workloads": [self.workload_record(i, at) for i in indexes]}
        if start + limit < len(ordered):
            body["next"] = offset + limit
        return JSONResponse(body)

    def _drift(self, request: Request, offset: int, limit: int, total: int) -> int:
        """Rows the list has 'grown' ahead of ``offset`` since the listing began.

        Non-decreasing in ``offset`` for one listing (same query apart from offset), so pages
        overlap and repeat rows but never skip any, as if workloads had been inserted ahead
        of the cursor between page requests.
        """
        rate = self.faults.list_drift
        if not rate or offset <= 0:
            return 0
        listing = "&".join(
            sorted(f"{k}={v}" for k, v in request.query_params.multi_items() if k != "offset")
        )
        seed = self.faults.seed
        step = max(1, limit // 5)
        drift = 0
        for page in range(1, min(offset, total + limit) // limit + 1):
            if unit_draw(seed, "drift", listing, page) < rate:
                drift += 1 + int(unit_draw(seed, "drift_size", listing, page) * step)
        return min(drift, offset)

    async def count_workloads(self, request: Request) -> Response:
        self.authorize(request)
        _, positions = self._selection(request, self.now())
        return JSONResponse({"count": len(positions)})

    async def get_workload(self, request: Request) -> Response:
        self.authorize(request)
        at = self.now()
        index = self._row_of(request.path_params["workloadId"], at)
        record = self.workload_record(index, at)
        record.setdefault("pendingSchedulingMessages", None)
        extra = dict(record.get("additionalFields") or {})
        pods, _ = self.cluster.pod_layout(index)
        extra["podIds"] = pod_ids(request.path_params["workloadId"], pods)
        record["additionalFields"] = extra
        return JSONResponse(record)

    async def telemetry(self, request: Request) -> Response:
        self.authorize(request)
        telemetry_type = request.query_params.get("telemetryType")
        if not telemetry_type:
            raise ApiError(400, "Required parameter is missing: telemetryType")
        if telemetry_type not in _enum("WorkloadTelemetryType"):
            raise ApiError(400, f"Unknown telemetryType {telemetry_type[:60]!r}")
        group_by = _query_list(request, "groupBy") or []
        unknown = [g for g in group_by if g not in GROUP_COLUMNS]
        if unknown:
            raise ApiError(400, f"Unknown groupBy {', '.join(u[:40] for u in unknown)}")
        if len(set(group_by)) != len(group_by):
            raise ApiError(400, "groupBy fields must be distinct")
        pending = telemetry_type == "PENDING_TIME_DISTRIBUTION"
        if len(group_by) > (1 if pending else 2):
            raise ApiError(
                400,
                "PENDING_TIME_DISTRIBUTION accepts at most one groupBy field"
                if pending
                else "groupBy accepts at most two fields",
            )
        phases = _query_list(request, "filterByPhases")
        if phases:
            bad = [p for p in phases if p not in _enum("Phase")]
            if bad:
                raise ApiError(400, f"Unknown phase {', '.join(b[:40] for b in bad)}")
        cluster_id = request.query_params.get("clusterId")
        if cluster_id:
            try:
                uuid.UUID(cluster_id)
            except ValueError:
                raise ApiError(400, "Parameter clusterId must be a UUID") from None

        at = self.now()
        table = self.table(at)
        table = table.append_column(CURRENT_NODEPOOL, current_nodepool(table))
        mask = ~table.column("deleted").to_numpy(zero_copy_only=False).astype(bool)
        eq_filters = (
            ("clusterId", cluster_id),
            (CURRENT_NODEPOOL, request.query_params.get("nodepoolName")),
            ("departmentId", request.query_params.get("departmentId")),
        )
        clauses = [filters.Clause(col, "==", val) for col, val in eq_filters if val]
        if phases:
            mask &= np.isin(table.column("phase").to_numpy(zero_copy_only=False), phases)
        positions = filters.select(table, clauses, None, mask)
        sub = table.take(pa.array(positions, type=pa.int64()))
        values = telemetry_values(sub, telemetry_type, group_by, at, self.cluster_names())
        return JSONResponse({"type": telemetry_type, "timestamp": iso_z(at), "values": values})

    def cluster_names(self) -> dict[str, str]:
        return {str(c.id): str(c.name) for c in self.cluster.clusters}

    async def workload_metrics(self, request: Request) -> Response:
        self.authorize(request)
        types = _metric_types(request, "WorkloadMetricType")
        return await self._metrics(request, types, None)

    async def pod_metrics(self, request: Request) -> Response:
        self.authorize(request)
        types = _metric_types(request, "PodMetricType")
        return await self._metrics(request, types, request.path_params["podId"])

    async def _metrics(self, request: Request, types: list[str], pod_id: str | None) -> Response:
        start = _datetime_param(request, "start")
        end = _datetime_param(request, "end")
        if end < start:
            raise ApiError(400, "Parameter end must not be before start")
        samples = _int_param(request, "numberOfSamples", DEFAULT_SAMPLES, 0, MAX_SAMPLES)
        workload_id = request.path_params["workloadId"]
        at = self.now()
        index = self._row_of(workload_id, at)
        pods = 1
        gpus = 1
        if pod_id is not None:  # the workload's pod layout, not its state at `at`
            model_pods, gpus_per_pod = self.cluster.pod_layout(index)
            ids = pod_ids(workload_id, model_pods)
            if pod_id not in ids:
                raise ApiError(404, "Resource id not found.", details="unknown pod id")
            pods, gpus = len(ids), pod_gpu_devices(gpus_per_pod)

        status = 200
        key = _fault_key(request)
        partial = self.faults.partial_rate
        if key is not None and len(types) >= 2 and key.draw(self.faults.seed, "partial") < partial:
            keep = [
                t
                for t in types
                if unit_draw(self.faults.seed, "partial_keep", key.identity, t) < 0.5
            ]
            if len(keep) == len(types):
                keep = keep[:-1]
            types, status = keep, 207

        instants = sample_instants(start, end, samples)
        stamps = format_timestamps(instants, self.faults.metrics_timestamp_format)
        parts: list[str] = []
        for metric in types:
            if not len(instants):
                parts.append(_measurement_json(metric, None, [], []))
                continue
            if pod_id is None:
                series = self.cluster.metrics(index, metric, instants)
                for labels, values in series:
                    parts.append(_measurement_json(metric, labels, values, stamps))
                if not series:
                    parts.append(_measurement_json(metric, None, [], []))
            else:
                parts.extend(self._pod_series(index, metric, instants, stamps, pods, gpus, pod_id))
        body = '{"measurements":[' + ",".join(parts) + "]}"
        return JSONResponse(body.encode(), status_code=status)

    def _pod_series(
        self,
        index: int,
        metric: str,
        instants: np.ndarray,
        stamps: list[str],
        pods: int,
        gpus: int,
        pod_id: str,
    ) -> list[str]:
        source = POD_METRIC_SOURCES.get(metric)
        if source is None:  # advanced per-GPU counters the model does not produce
            return [_measurement_json(metric, None, [], [])]
        workload_metric, share, per_gpu = source
        if per_gpu and not gpus:  # a CPU-only pod has no GPU to report on
            return [_measurement_json(metric, None, [], [])]
        series = self.cluster.metrics(index, workload_metric, instants)
        out: list[str] = []
        for labels, values in series:
            pod_values = values / pods if share == "split" else values
            base = {**(labels or {}), "pod": pod_id}
            if per_gpu:
                gpu_values = pod_values / gpus if share == "split" else pod_values
                for g in range(gpus):
                    out.append(
                        _measurement_json(metric, {**base, "gpu": str(g)}, gpu_values, stamps)
                    )
            else:
                out.append(_measurement_json(metric, base, pod_values, stamps))
        return out or [_measurement_json(metric, None, [], [])]


def _measurement_json(
    metric: str, labels: dict[str, str] | None, values: Any, stamps: Sequence[str]
) -> str:
    arr = np.asarray(values, dtype=np.float64)
    items: list[str] = []
    if len(arr):
        ok = np.isfinite(arr)
        for v, ts, present in zip(arr.tolist(), stamps, ok.tolist(), strict=True):
            if present:
                items.append(f'{{"value":"{format_value(v)}","timestamp":"{ts}"}}')
    label_text = "null" if labels is None else json.dumps(labels, separators=(",", ":"))
    return f'{{"type":{json.dumps(metric)},"labels":{label_text},"values":[{",".join(items)}]}}'


def current_nodepool(table: pa.Table) -> pa.Array:
    """The node pool each snapshot row currently runs in, ``""`` when it is not running.

    A running workload runs in exactly one pool (its ``currentNodePools`` has one entry);
    pending and finished ones run nowhere (``currentNodePools: []``).
    """
    running = pc.equal(table.column("phase"), "Running").combine_chunks()
    pool = table.column("nodepool").combine_chunks()
    return pc.if_else(running, pool, pa.scalar("", type=pool.type))


def telemetry_values(
    table: pa.Table,
    telemetry_type: str,
    group_by: list[str],
    at: datetime,
    cluster_names: dict[str, str],
) -> list[dict[str, Any]]:
    """Aggregate the filtered snapshot rows into TelemetryResponse ``values``.

    ``CurrentNodepools`` groups by the ``currentNodepool`` column the caller adds (see
    :func:`current_nodepool`).
    """
    keys: list[str] = []
    if telemetry_type == "PENDING_TIME_DISTRIBUTION":
        phase = table.column("phase").to_numpy(zero_copy_only=False)
        table = table.take(pa.array(np.flatnonzero(phase == "Pending"), type=pa.int64()))
        updated = table.column("phaseUpdatedAt").cast(pa.timestamp("us", tz="UTC"))
        now_us = np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")
        stamps = updated.to_numpy().astype("datetime64[us]")
        age = np.nan_to_num((now_us - stamps) / np.timedelta64(1, "s"), nan=0.0)
        edges = np.array([limit for _, limit in PENDING_BUCKETS[:-1]])
        labels = np.array([name for name, _ in PENDING_BUCKETS], dtype=object)
        work = pa.table({"PendingTime": labels[np.searchsorted(edges, age, side="right")]})
        keys.append("PendingTime")
    else:
        work = pa.table({"_rows": np.arange(table.num_rows)})
    if telemetry_type == "GPU_ALLOCATION":
        gpus = table.column("allocatedGPU").cast(pa.float64()).fill_null(0.0)
        work = work.append_column("_w", gpus)
    else:
        work = work.append_column("_w", pa.array(np.ones(table.num_rows)))
    names: dict[str, str] = {}
    for g in group_by:
        work = work.append_column(g, pc.cast(table.column(GROUP_COLUMNS[g]), pa.string()))
        keys.append(g)
        if g in GROUP_NAME_COLUMNS:
            names[g] = f"_name_{g}"
            work = work.append_column(names[g], table.column(GROUP_NAME_COLUMNS[g]))
    if not keys:
        return [{"value": format_value(float(pc.sum(work.column("_w")).as_py() or 0.0))}]
    grouped = work.group_by([*keys, *names.values()]).aggregate([("_w", "sum")]).to_pylist()
    totals: dict[tuple[Any, ...], float] = {}
    labels_of: dict[tuple[str, Any], str] = {
        ("ClusterId", cid): name for cid, name in cluster_names.items()
    }
    for row in grouped:
        combo = tuple(row[k] for k in keys)
        totals[combo] = totals.get(combo, 0.0) + float(row["_w_sum"])
        for g, n in names.items():
            labels_of[(g, row[g])] = row[n]
    if "PendingTime" in keys:  # every bucket is reported, also when empty
        rests = {combo[1:] for combo in totals} if group_by else {()}
        for bucket, _ in PENDING_BUCKETS:
            for rest in rests:
                totals.setdefault((bucket, *rest), 0.0)
    order = {name: i for i, (name, _) in enumerate(PENDING_BUCKETS)}

    def sort_key(combo: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            (order.get(v, 0), "") if k == "PendingTime" else (0, "" if v is None else str(v))
            for k, v in zip(keys, combo, strict=True)
        )

    out: list[dict[str, Any]] = []
    for combo in sorted(totals, key=sort_key):
        groups = []
        for k, v in zip(keys, combo, strict=True):
            value = "" if v is None else str(v)
            name = labels_of.get((k, v))
            groups.append({"key": k, "value": value, "name": name if name else value})
        out.append({"value": format_value(totals[combo]), "groups": groups})
    return out


# ----------------------------------------------------------------------------- app


def create_app(config: SimulatorConfig, cluster: Cluster | None = None) -> Starlette:
    """The ASGI app; ``app.state.cluster`` is the served model, ``app.state.simulator``."""
    cluster = cluster if cluster is not None else Cluster(config)
    load_spec()  # fail fast when the contract cannot be found
    sim = Simulator(config, cluster)

    routes = [
        Route("/healthz", lambda request: JSONResponse({"status": "ok"}), methods=["GET"]),
        Route("/api/v1/token", sim.token, methods=["POST"]),
        Route("/api/v1/workloads", sim.list_workloads, methods=["GET"]),
        Route("/api/v1/workloads/count", sim.count_workloads, methods=["GET"]),
        Route("/api/v1/workloads/telemetry", sim.telemetry, methods=["GET"]),
        Route("/api/v1/workloads/{workloadId}", sim.get_workload, methods=["GET"]),
        Route("/api/v1/workloads/{workloadId}/metrics", sim.workload_metrics, methods=["GET"]),
        Route(
            "/api/v1/workloads/{workloadId}/pods/{podId}/metrics",
            sim.pod_metrics,
            methods=["GET"],
        ),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.details)

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, headers=headers)

    async def filter_error(request: Request, exc: Exception) -> Response:
        return error_response(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "Resource not found.", 405: "Method not allowed."}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(exc.status_code, message, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, DroppedConnection):
            log.exception("unhandled error serving %s", request.url.path)
        return error_response(500, "Something went wrong.")

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            AuthError: auth_error,
            filters.FilterError: filter_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.cluster = cluster
    app.state.simulator = sim
    app.state.config = config
    app.add_middleware(FaultMiddleware, config=sim.faults, clock=cluster.now)
    app.add_middleware(ClusterDateMiddleware, cluster=cluster)
    return app


class ClusterDateMiddleware:
    """Every response's ``Date`` header tells the cluster's clock (frozen with ``--now``), as a
    real control plane's tells its own; servers must not add a wall-clock one of their own."""

    def __init__(self, app: ASGIApp, cluster: Cluster) -> None:
        self.app = app
        self.cluster = cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        date = format_datetime(self.cluster.now(), usegmt=True).encode("latin-1")

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, send_with_date)
