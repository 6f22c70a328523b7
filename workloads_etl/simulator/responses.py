"""Response bodies of the simulated control plane: JSON, the Error body, values, timestamps.

* Metric values are the shortest decimal strings that round-trip the model's float64
  exactly (``repr``), integers without a fraction. Timestamps are ISO 8601 with ``Z``
  (``2024-12-20T14:30:00Z``, with fractional seconds only when needed) or, with the
  ``metrics_timestamp_format=space`` setting, ``2023-06-06 12:09:18.211``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.responses import Response


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


def measurement_json(
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
