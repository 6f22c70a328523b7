"""The endpoint handlers of the simulated control plane (``Simulator``).

Choices where the contract leaves room (the contract wins wherever it is explicit):

* ``POST /api/v1/token`` lists only 400/500/503, so wrong credentials are answered with
  400 ``Invalid client credentials`` (not 401). Grant types other than
  ``client_credentials`` and the deprecated ``app_token`` are 400. Body keys are matched to
  the TokenRequest fields ignoring case, and tokens are signed JWTs (see ``auth``).
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
* A metrics request takes at most ten ``metricType`` values (``params.MAX_METRIC_TYPES``);
  more are 400 with an Error body naming the limit.

The choices about metric values and timestamps are in ``responses``, those about
telemetry in ``telemetry``.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response

from workloads_etl.openapi import sort_fields
from workloads_etl.simulator import filters
from workloads_etl.simulator.auth import Credentials, TokenStore
from workloads_etl.simulator.cluster import Cluster
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import (
    FaultConfig,
    FaultState,
    RequestFaultKey,
    corrupt_record,
    malformed_kind,
    unit_draw,
)
from workloads_etl.simulator.params import (
    DEFAULT_LIMIT,
    DEFAULT_SAMPLES,
    MAX_LIMIT,
    MAX_SAMPLES,
    bool_param,
    datetime_param,
    enum_set,
    int_param,
    metric_types_param,
    query_list,
    sample_instants,
)
from workloads_etl.simulator.responses import (
    ApiError,
    JSONResponse,
    Stamps,
    format_timestamps,
    iso_z,
    measurement_json,
)
from workloads_etl.simulator.telemetry import (
    CURRENT_NODEPOOL,
    GROUP_COLUMNS,
    current_nodepool,
    telemetry_values,
)

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


def pod_ids(workload_id: str, pods: int) -> list[str]:
    base = uuid.UUID(workload_id)
    return [str(uuid.uuid5(base, f"pod-{i}")) for i in range(max(1, pods))]


def pod_gpu_devices(gpus_per_pod: float) -> int:
    """GPU devices a pod holds: whole GPUs rounded up (a fraction shares one device)."""
    return math.ceil(gpus_per_pod) if gpus_per_pod > 0 else 0


@lru_cache(maxsize=64)
def _sampling(start: datetime, end: datetime, samples: int, form: str) -> tuple[np.ndarray, Stamps]:
    """The sample instants of a metrics window and their timestamps as written; a listing
    of many workloads over the same window asks for them again and again."""
    instants = sample_instants(start, end, samples)
    instants.flags.writeable = False
    return instants, format_timestamps(instants, form)


def _fault_key(request: Request) -> RequestFaultKey | None:
    key = request.scope.get("state", {}).get("fault_key")
    return key if isinstance(key, RequestFaultKey) else None


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
        self.fault_state = FaultState(record=config.admin)
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
        index_column = self.table(at).column("index")
        if 0 <= index < len(index_column) and index_column[index].as_py() == index:
            return int(index)  # the model's snapshot: row == index
        if not np.isin(index, index_column.to_numpy()):  # not yet created at `at`
            raise ApiError(404, "Resource id not found.")
        return int(index)

    def workload_record(self, index: int, at: datetime) -> dict[str, Any]:
        record = self.cluster.workload_json(index, at)
        kind = malformed_kind(self.faults, str(record.get("id")))
        return corrupt_record(record, kind) if kind else record

    def _selection(self, request: Request, at: datetime) -> tuple[pa.Table, np.ndarray]:
        deleted = bool_param(request, "deleted")
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
        offset = int_param(request, "offset", 0, 0, 2**31 - 1)
        limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        sort_order = request.query_params.get("sortOrder") or "asc"
        if sort_order not in ("asc", "desc"):
            raise ApiError(400, f"Parameter sortOrder must be asc or desc, got {sort_order[:20]!r}")
        sort_by = request.query_params.get("sortBy") or None
        if sort_by is not None and sort_by not in sort_fields():
            raise ApiError(400, f"Invalid sortBy {sort_by[:60]!r}", ", ".join(sort_fields()))
        at = self.now()
        table, positions = self._selection(request, at)
        ordered = filters.sort_positions(table, positions, sort_by, sort_order == "desc")
        start = max(0, offset + self._list_shift(request, offset, limit, len(ordered)))
        page = ordered[start : start + limit]
        indexes = table.column("index").take(pa.array(page, type=pa.int64())).to_pylist()
        body: dict[str, Any] = {"workloads": [self.workload_record(i, at) for i in indexes]}
        if start + limit < len(ordered):
            body["next"] = offset + limit
        return JSONResponse(body)

    def _list_shift(self, request: Request, offset: int, limit: int, total: int) -> int:
        """Where the page at ``offset`` starts relative to ``offset`` under list drift.

        ``list_drift``: rows the list has 'grown' before ``offset`` since the listing began
        (moves the page back, so it repeats rows of the one before). It depends on the
        listing (the query apart from ``offset``) and the offset only, non-decreasing in
        ``offset``, so the repeats are the same however often the listing is read.

        ``list_skip``: rows before ``offset`` that went away (moves the page on, so rows
        between it and the one before are never listed; the count still has them). It
        depends on the listing, the offset and the attempt of this very page request, so a
        listing read again skips other rows, or none.

        Both add up one draw per page boundary before ``offset``: with the rate's chance,
        1 to ``limit // 5`` rows.
        """
        if offset <= 0 or not (self.faults.list_drift or self.faults.list_skip):
            return 0
        listing = "&".join(
            sorted(f"{k}={v}" for k, v in request.query_params.multi_items() if k != "offset")
        )
        pages = min(offset, total + limit) // limit
        step = max(1, limit // 5)
        seed = self.faults.seed
        key = _fault_key(request)

        def rows(rate: float, name: str, *salt: object) -> int:
            shift = 0
            for page in range(1, pages + 1):
                if unit_draw(seed, name, listing, page, *salt) < rate:
                    shift += 1 + int(unit_draw(seed, f"{name}_size", listing, page, *salt) * step)
            return shift

        shift = 0
        if self.faults.list_drift:
            drift = min(rows(self.faults.list_drift, "drift"), offset)
            shift -= drift
            if key is not None:
                self.fault_state.note(key, "list_drift", str(drift) if drift else None)
        if self.faults.list_skip:
            attempt = key.attempt if key is not None else 0
            skip = rows(self.faults.list_skip, "skip", attempt)
            shift += skip
            if key is not None:
                self.fault_state.note(key, "list_skip", str(skip) if skip else None)
        return shift

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
        if telemetry_type not in enum_set("WorkloadTelemetryType"):
            raise ApiError(400, f"Unknown telemetryType {telemetry_type[:60]!r}")
        group_by = query_list(request, "groupBy") or []
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
                "PENDING_TIME_DISTRIBUTION values are grouped by their pending-time bucket "
                "first, and a telemetry value carries at most two groups"
                if pending
                else None,
            )
        phases = query_list(request, "filterByPhases")
        if phases:
            bad = [p for p in phases if p not in enum_set("Phase")]
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
        types = metric_types_param(request, "WorkloadMetricType")
        return await self._metrics(request, types, None)

    async def pod_metrics(self, request: Request) -> Response:
        self.authorize(request)
        types = metric_types_param(request, "PodMetricType")
        return await self._metrics(request, types, request.path_params["podId"])

    async def _metrics(self, request: Request, types: list[str], pod_id: str | None) -> Response:
        start = datetime_param(request, "start")
        end = datetime_param(request, "end")
        if end < start:
            raise ApiError(400, "Parameter end must not be before start")
        samples = int_param(request, "numberOfSamples", DEFAULT_SAMPLES, 0, MAX_SAMPLES)
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
        if key is not None and len(types) >= 2 and partial:
            if key.draw(self.faults.seed, "partial") < partial:
                keep = [
                    t
                    for t in types
                    if unit_draw(self.faults.seed, "partial_keep", key.identity, t) < 0.5
                ]
                if len(keep) == len(types):
                    keep = keep[:-1]
                types, status = keep, 207
            self.fault_state.note(key, "partial", "207" if status == 207 else None)

        instants, stamps = _sampling(start, end, samples, self.faults.metrics_timestamp_format)
        parts: list[str] = []
        if not len(instants):
            parts = [measurement_json(metric, None, [], []) for metric in types]
        elif pod_id is None:
            batch = self.cluster.metrics_batch(index, types, instants)
            for metric, series in zip(types, batch, strict=True):
                for labels, values in series:
                    parts.append(measurement_json(metric, labels, values, stamps))
                if not series:
                    parts.append(measurement_json(metric, None, [], []))
        else:
            sources = list(dict.fromkeys(s[0] for t in types if (s := POD_METRIC_SOURCES.get(t))))
            computed = dict(
                zip(sources, self.cluster.metrics_batch(index, sources, instants), strict=True)
            )
            for metric in types:
                parts.extend(self._pod_series(metric, computed, stamps, pods, gpus, pod_id))
        body = '{"measurements":[' + ",".join(parts) + "]}"
        return JSONResponse(body.encode(), status_code=status)

    def _pod_series(
        self,
        metric: str,
        computed: dict[str, list[tuple[dict[str, str] | None, np.ndarray]]],
        stamps: Stamps,
        pods: int,
        gpus: int,
        pod_id: str,
    ) -> list[str]:
        source = POD_METRIC_SOURCES.get(metric)
        if source is None:  # advanced per-GPU counters the model does not produce
            return [measurement_json(metric, None, [], [])]
        workload_metric, share, per_gpu = source
        if per_gpu and not gpus:  # a CPU-only pod has no GPU to report on
            return [measurement_json(metric, None, [], [])]
        series = computed[workload_metric]
        out: list[str] = []
        for labels, values in series:
            pod_values = values / pods if share == "split" else values
            base = {**(labels or {}), "pod": pod_id}
            if per_gpu:
                gpu_values = pod_values / gpus if share == "split" else pod_values
                for g in range(gpus):
                    out.append(
                        measurement_json(metric, {**base, "gpu": str(g)}, gpu_values, stamps)
                    )
            else:
                out.append(measurement_json(metric, base, pod_values, stamps))
        return out or [measurement_json(metric, None, [], [])]
