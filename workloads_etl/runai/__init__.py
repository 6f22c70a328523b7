"""Async client of the NVIDIA Run:ai workloads API (httpx; no orchestration imports).

The rooms, in the order a request passes them: :mod:`.settings` (validated connection
settings), :mod:`.client` (one method per operation: paging, metrics windows, telemetry),
:mod:`.session` (HTTP, tokens from :mod:`.auth`, concurrency, retries as :mod:`.retry`
decides), :mod:`.errors` (the documented exception tree); the answers' formats in
:mod:`.values` (timestamps, numbers, HTTP dates), :mod:`.measurements` (metrics bodies) and
:mod:`.models` (typed answers and the raw response record).
"""

from workloads_etl.runai import errors
from workloads_etl.runai.client import RunaiClient
from workloads_etl.runai.filters import FilterBy
from workloads_etl.runai.measurements import ParsedMeasurements, merge_windows, parse_measurements
from workloads_etl.runai.models import MetricsResult, RawResponse, TelemetryResponse, Workload
from workloads_etl.runai.retry import parse_retry_after
from workloads_etl.runai.session import Recorder
from workloads_etl.runai.settings import RunaiSettings
from workloads_etl.runai.windows import plan_windows

__all__ = [
    "FilterBy",
    "MetricsResult",
    "ParsedMeasurements",
    "RawResponse",
    "Recorder",
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
