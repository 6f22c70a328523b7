"""Async client of the NVIDIA Run:ai workloads API (httpx; no orchestration imports)."""

from workloads_etl.runai import errors
from workloads_etl.runai.client import RunaiClient, parse_retry_after, plan_windows
from workloads_etl.runai.filters import FilterBy
from workloads_etl.runai.metrics import ParsedMeasurements, merge_windows, parse_measurements
from workloads_etl.runai.models import MetricsResult, RawResponse, TelemetryResponse, Workload
from workloads_etl.runai.settings import RunaiSettings

__all__ = [
    "FilterBy",
    "MetricsResult",
    "ParsedMeasurements",
    "RawResponse",
    "RunaiClient",
    "RunaiSettings",
    "TelemetryResponse",
    "Workload",
    "errors",
    "merge_windows",
    "parse_measurements",
    "parse_retry_after",
    "plan_windows",
]
