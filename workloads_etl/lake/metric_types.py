"""The metric types the pipeline fetches for every workload, declared once.

Every ``WorkloadMetricType`` of the API is here, with the column it becomes in the
warehouse's per-sample model (``intermediate.int_workload_metric_samples``; labelled series
such as the NIM percentiles have none and are read by their own models) and the workloads
it applies to: ``all``, or ``inference`` for the NIM_* types of inference workloads. The
dbt runner passes the columns to dbt as the var ``metric_columns``, so the extraction, the
sources' accepted values and the pivot all follow this one list.

The set fetched can be narrowed (``WORKLOADS_ETL_METRIC_TYPES``), but never below
:data:`REQUIRED`: the types the cost and utilisation marts are computed from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from workloads_etl.lake import bounds
from workloads_etl.openapi import enum_values

ALL = "all"
INFERENCE = "inference"
# The workload types the NIM_* metrics apply to (the list's `type`).
INFERENCE_WORKLOAD_TYPES = ("inference",)


@dataclass(frozen=True)
class MetricType:
    name: str  # the API's WorkloadMetricType
    column: str | None  # column of int_workload_metric_samples; None: a labelled series
    kind: str  # the physical quantity (workloads_etl.lake.bounds) its values must respect
    scope: str = ALL  # the workloads it is fetched for: all, or inference ones


METRIC_TYPES: tuple[MetricType, ...] = (
    MetricType("GPU_ALLOCATION", "gpu_allocation", bounds.GPUS),
    MetricType("GPU_UTILIZATION", "gpu_utilisation_pct", bounds.PERCENT),
    MetricType("GPU_MEMORY_USAGE_BYTES", "gpu_memory_usage_bytes", bounds.BYTES),
    MetricType("GPU_MEMORY_REQUEST_BYTES", "gpu_memory_request_bytes", bounds.BYTES),
    MetricType("CPU_REQUEST_CORES", "cpu_request_cores", bounds.CORES),
    MetricType("CPU_LIMIT_CORES", "cpu_limit_cores", bounds.CORES),
    MetricType("CPU_USAGE_CORES", "cpu_usage_cores", bounds.CORES),
    MetricType("CPU_MEMORY_REQUEST_BYTES", "cpu_memory_request_bytes", bounds.BYTES),
    MetricType("CPU_MEMORY_LIMIT_BYTES", "cpu_memory_limit_bytes", bounds.BYTES),
    MetricType("CPU_MEMORY_USAGE_BYTES", "cpu_memory_usage_bytes", bounds.BYTES),
    MetricType("POD_COUNT", "pod_count", bounds.COUNT),
    MetricType("RUNNING_POD_COUNT", "running_pod_count", bounds.COUNT),
    MetricType(
        "NVLINK_BANDWIDTH_TOTAL", "nvlink_bandwidth_bytes_per_second", bounds.BYTES_PER_SECOND
    ),
    MetricType("NIM_NUM_REQUESTS_RUNNING", "nim_requests_running", bounds.COUNT, INFERENCE),
    MetricType("NIM_NUM_REQUESTS_WAITING", "nim_requests_waiting", bounds.COUNT, INFERENCE),
    MetricType("NIM_NUM_REQUEST_MAX", "nim_request_max", bounds.COUNT, INFERENCE),
    MetricType("NIM_REQUEST_SUCCESS_TOTAL", "nim_request_success_total", bounds.COUNT, INFERENCE),
    MetricType("NIM_REQUEST_FAILURE_TOTAL", "nim_request_failure_total", bounds.COUNT, INFERENCE),
    MetricType("NIM_GPU_CACHE_USAGE_PERC", "nim_gpu_cache_usage", bounds.PERCENT, INFERENCE),
    MetricType("NIM_TIME_TO_FIRST_TOKEN_SECONDS", "nim_ttft_seconds", bounds.SECONDS, INFERENCE),
    MetricType(
        "NIM_E2E_REQUEST_LATENCY_SECONDS", "nim_e2e_latency_seconds", bounds.SECONDS, INFERENCE
    ),
    MetricType("NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES", None, bounds.SECONDS, INFERENCE),
    MetricType("NIM_E2E_REQUEST_LATENCY_SECONDS_PERCENTILES", None, bounds.SECONDS, INFERENCE),
)

# What the cost, utilisation and held-resources rules are computed from.
REQUIRED = frozenset(
    {
        "GPU_ALLOCATION",
        "GPU_UTILIZATION",
        "CPU_REQUEST_CORES",
        "CPU_USAGE_CORES",
        "CPU_MEMORY_REQUEST_BYTES",
        "CPU_MEMORY_USAGE_BYTES",
        "RUNNING_POD_COUNT",
    }
)
_BY_NAME = {m.name: m for m in METRIC_TYPES}


def metric_kinds() -> dict[str, str]:
    """``{metric type: kind of quantity}``, for the bounds its values are checked against."""
    return {m.name: m.kind for m in METRIC_TYPES}


def metric_type_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def metric_columns() -> dict[str, str]:
    """``{metric type: column}`` of the unlabelled series, the dbt var ``metric_columns``."""
    return {m.name: m.column for m in METRIC_TYPES if m.column is not None}


def check_selection(names: Iterable[str]) -> tuple[str, ...]:
    """A configured set of types to fetch: known to the API and this list, and covering
    :data:`REQUIRED`; returned in declaration order. Raises ``ValueError`` naming the
    problem."""
    chosen = set(names)
    unknown = sorted(chosen - set(_BY_NAME))
    if unknown:
        raise ValueError(f"unknown metric types {', '.join(unknown)}")
    missing = sorted(REQUIRED - chosen)
    if missing:
        raise ValueError(f"the marts need {', '.join(missing)}; they cannot be left out")
    return tuple(m.name for m in METRIC_TYPES if m.name in chosen)


def types_for(workload_type: str | None, selection: Iterable[str]) -> tuple[str, ...]:
    """The selected types that apply to a workload of ``workload_type``."""
    inference = (workload_type or "").lower() in INFERENCE_WORKLOAD_TYPES
    return tuple(name for name in selection if _BY_NAME[name].scope == ALL or inference)


def _check_against_the_spec() -> None:
    spec = set(enum_values("WorkloadMetricType"))
    missing = spec - set(_BY_NAME)
    extra = set(_BY_NAME) - spec
    if missing or extra:  # pragma: no cover - the contract changed
        raise RuntimeError(f"metric types differ from the API's: missing {missing}, extra {extra}")


_check_against_the_spec()
