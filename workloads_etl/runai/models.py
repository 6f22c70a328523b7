"""Typed values exchanged with the Run:ai control plane. Field names follow the API spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RawResponse:
    """One successful response exactly as received, for the raw landing zone.

    ``text`` is the response body, byte for byte (decoded as UTF-8); ``params`` are the
    query parameters as sent (explode:false arrays already comma-joined); ``path_params``
    carries e.g. ``{"workloadId": "..."}``.
    """

    operation: str  # the spec's operationId, e.g. "get_workloads", "get_workload_metrics"
    method: str
    path: str
    params: dict[str, str]
    path_params: dict[str, str]
    status: int
    received_at: datetime  # UTC
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"page": 3}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "path_params": self.path_params,
            "status": self.status,
            "received_at": self.received_at.isoformat(),
            "text": self.text,
            "meta": self.meta,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> RawResponse:
        return cls(
            operation=d["operation"],
            method=d["method"],
            path=d["path"],
            params=dict(d.get("params") or {}),
            path_params=dict(d.get("path_params") or {}),
            status=int(d["status"]),
            received_at=datetime.fromisoformat(d["received_at"]),
            text=d["text"],
            meta=dict(d.get("meta") or {}),
        )
