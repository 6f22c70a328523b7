"""Query parameters of the simulated control plane: parsing and validation.

Invalid input is answered with 400 and an Error body (``ApiError``), also where the
contract lists no 400. A metrics request takes at most ``MAX_METRIC_TYPES`` metric types
(counted as given, repeats included), as the real control plane, whose clients batch them
by 10 "to avoid API limit". A metrics window ``[start, end)`` with ``numberOfSamples`` is
sampled at evenly spaced instants (``sample_instants``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
from starlette.requests import Request

from workloads_etl.openapi import enum_values
from workloads_etl.simulator import filters
from workloads_etl.simulator.responses import ApiError

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_SAMPLES = 1000
DEFAULT_SAMPLES = 20
MAX_METRIC_TYPES = 10


def sample_instants(start: datetime, end: datetime, n: int) -> np.ndarray:
    """``start + i * (end - start) / n`` for ``i`` in ``0..n-1``, rounded to the microsecond."""
    s = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "us")
    span = int((np.datetime64(end.astimezone(UTC).replace(tzinfo=None), "us") - s).astype(int))
    if n <= 0 or span <= 0:
        return np.empty(0, dtype="datetime64[us]")
    offsets = (2 * np.arange(n, dtype=np.int64) * span + n) // (2 * n)  # nearest microsecond
    return s + offsets.astype("timedelta64[us]")


@lru_cache(maxsize=8)
def enum_set(name: str) -> frozenset[str]:
    return frozenset(enum_values(name))


def query_list(request: Request, name: str) -> list[str] | None:
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    items = [item.strip() for value in raw for item in value.split(",")]
    return [item for item in items if item]


def int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int:
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


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"Parameter {name} must be true or false, got {raw[:40]!r}")


def datetime_param(request: Request, name: str) -> datetime:
    raw = request.query_params.get(name)
    if not raw:
        raise ApiError(400, f"Required parameter is missing: {name}")
    try:
        return filters.parse_datetime(raw)
    except filters.FilterError:
        raise ApiError(400, f"Parameter {name} must be an ISO 8601 date-time") from None


def metric_types_param(request: Request, enum_name: str) -> list[str]:
    types = query_list(request, "metricType")
    if not types:
        raise ApiError(400, "Required parameter is missing: metricType")
    allowed = enum_set(enum_name)
    unknown = [t for t in types if t not in allowed]
    if unknown:
        raise ApiError(
            400,
            f"Unknown metricType {', '.join(u[:60] for u in unknown)}",
            details=f"allowed: {', '.join(sorted(allowed))}",
        )
    if len(types) > MAX_METRIC_TYPES:
        raise ApiError(
            400,
            f"Too many metric types: at most {MAX_METRIC_TYPES} metricType values per "
            f"request, got {len(types)}",
        )
    return list(dict.fromkeys(types))
