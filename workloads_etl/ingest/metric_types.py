"""The metric types the pipeline fetches for every workload, declared once.

Each has the column it becomes in the warehouse's per-sample model
(``intermediate.int_workload_metric_samples``); the dbt runner passes this mapping to dbt as
the var ``metric_columns``, so the extraction, the sources' accepted values and the pivot all
follow this one list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricType:
    name: str  # the API's WorkloadMetricType
    column: str  # the column of int_workload_metric_samples


METRIC_TYPES: tuple[MetricType, ...] = (
    MetricType("GPU_ALLOCATION", "gpu_allocation"),
    MetricType("GPU_UTILIZATION", "gpu_utilisation_pct"),
    MetricType("GPU_MEMORY_USAGE_BYTES", "gpu_memory_usage_bytes"),
    MetricType("GPU_MEMORY_REQUEST_BYTES", "gpu_memory_request_bytes"),
    MetricType("CPU_REQUEST_CORES", "cpu_request_cores"),
    MetricType("CPU_USAGE_CORES", "cpu_usage_cores"),
    MetricType("CPU_MEMORY_REQUEST_BYTES", "cpu_memory_request_bytes"),
    MetricType("CPU_MEMORY_USAGE_BYTES", "cpu_memory_usage_bytes"),
)


def metric_type_names() -> tuple[str, ...]:
    return tuple(m.name for m in METRIC_TYPES)


def metric_columns() -> dict[str, str]:
    """``{metric type: column}``, the dbt var ``metric_columns``."""
    return {m.name: m.column for m in METRIC_TYPES}
